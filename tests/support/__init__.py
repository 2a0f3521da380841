"""Shared test support: real services, fresh databases, processes, mail."""
