"""Staff accounts for the web console: users with a role, argon2 passwords, cookie sessions."""
