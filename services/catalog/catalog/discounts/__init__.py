"""Discount codes a business hands out, applied by quotes."""
