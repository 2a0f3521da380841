"""The client book: clients of a business, their timeline, archive and restore."""
