"""Purchases: what a paid order gives its buyer (credits, group places, access), and the
buyer's view of it."""
