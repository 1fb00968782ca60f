"""External systems, one small module each: the Telegram Bot API and Redis (shared keys).

The domain (`bot/`) never imports an SDK; channels and operations reach these systems through here."""
