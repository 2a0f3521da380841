"""Orders: one purchase of one offering, from the quote to paid (or failed)."""
