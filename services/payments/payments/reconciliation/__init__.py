"""Reconciliation: open orders whose PaymentIntent is old are re-read from Stripe."""
