"""API keys (secret, publishable, event write) and the scopes each route requires."""
