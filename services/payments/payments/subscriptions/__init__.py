"""Subscriptions and payment plans: one Stripe Subscription per order."""
