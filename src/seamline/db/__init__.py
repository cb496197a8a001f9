"""Engine, session scope, column types and migrations glue."""
