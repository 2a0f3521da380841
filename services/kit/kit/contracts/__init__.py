"""Event contracts, one module per producing service."""

from kit.contracts import catalog, clients, payments
from kit.contracts.base import Event, event_class, registered_names

__all__ = ["Event", "catalog", "clients", "event_class", "payments", "registered_names"]
