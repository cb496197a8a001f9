"""The staff console (server-rendered). For now: the landing page a new user opens."""
