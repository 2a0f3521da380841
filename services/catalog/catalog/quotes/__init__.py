"""Quotes: the price of one offering for this viewer, with a discount code applied."""
