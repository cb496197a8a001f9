"""The channel registry: every place a brand sells or talks (web, app, store, marketplace, …)."""
