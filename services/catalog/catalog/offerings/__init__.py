"""Offerings: what a business sells, as immutable versions once published."""
