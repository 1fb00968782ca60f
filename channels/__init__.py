"""Rasa input/output channels and server-side adapters: thin wrappers around `bot/`."""
