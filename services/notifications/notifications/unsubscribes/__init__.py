"""Unsubscribing from a business's promotional emails, by a signed link."""
