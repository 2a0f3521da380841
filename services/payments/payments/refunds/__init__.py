"""Refunds: money given back on a paid order, by a coach or in Stripe's dashboard."""
