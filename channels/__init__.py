"""Rasa input/output channels and the advisor console: thin wrappers around `bot/`.

Rasa loads them by dotted path from credentials.yml. Importing this package changes nothing in Rasa;
the server process is prepared by `extensions.serve`.
"""
