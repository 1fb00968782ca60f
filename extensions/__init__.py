"""What Rasa loads by dotted path from config.yml and endpoints.yml: the tracker store, the lock store,
the one-step rules policy, and the speedups that remove per-turn work from Rasa 3.6."""
