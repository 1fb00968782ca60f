"""The SOM assistant's domain: knowledge base, dialogue, settings and command line.

Nothing here imports Rasa's server: `actions/` and `channels/` adapt it to Rasa.
"""
