"""Event contracts, one module per producing service."""

from kit.contracts import clients
from kit.contracts.base import Event, event_class, registered_names

__all__ = ["Event", "clients", "event_class", "registered_names"]
