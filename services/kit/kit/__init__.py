"""Clientele service kit: what every service shares."""
