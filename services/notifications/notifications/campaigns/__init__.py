"""Promotional campaigns: a coach writes one email and sends it to an audience."""
