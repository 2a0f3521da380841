"""Clients service: identity (accounts, businesses, sessions, JWKS) and the client book."""
