"""The payments service: orders, Stripe, webhooks and reconciliation."""
