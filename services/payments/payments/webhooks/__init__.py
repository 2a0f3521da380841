"""Stripe webhooks: intake (verify, store, answer) and processing (the worker)."""
