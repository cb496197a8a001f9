"""Carts on every channel, share codes, cart merge, saved lists."""
