"""What Rasa loads by dotted path (config.yml, endpoints.yml): the tracker store, the lock store, the
one-step rules policy and the NLU components; the patches for what has no extension point; and the
Rasa server's entry point that installs them (`serve`)."""
