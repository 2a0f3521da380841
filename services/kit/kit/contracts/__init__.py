"""Event contracts, one module per producing service."""

from kit.contracts import catalog, clients, notifications, payments
from kit.contracts.base import Event, event_class, registered_names

__all__ = [
    "Event",
    "catalog",
    "clients",
    "event_class",
    "notifications",
    "payments",
    "registered_names",
]
