"""Rasa SDK custom actions: thin adapters from Rasa's tracker to the domain logic in `bot/`."""
