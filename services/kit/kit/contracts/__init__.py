"""Event contracts, one module per producing service."""

from kit.contracts import catalog, clients
from kit.contracts.base import Event, event_class, registered_names

__all__ = ["Event", "catalog", "clients", "event_class", "registered_names"]
