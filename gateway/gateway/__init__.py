"""Gateway: the only public entry (API routing, web UI, sessions, CSRF, rate limits)."""
