"""Reactions to channel events (none yet: the registry is read by other domains directly)."""
