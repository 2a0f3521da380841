"""The only module that talks to Stripe (see gateway.py)."""
