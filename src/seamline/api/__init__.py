"""The HTTP shell: app factory, problem documents, middleware, authentication dependencies."""
