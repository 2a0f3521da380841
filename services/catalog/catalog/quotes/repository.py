"""Quotes store nothing: they read offerings and discount codes through those domains'
repositories (see the service)."""
