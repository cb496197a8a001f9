"""Handler modules for tests, loadable into a separate process with ``SEAMLINE_PLUGINS``."""
