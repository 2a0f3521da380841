"""Invitations: emailed single-use links that make a person a client."""
