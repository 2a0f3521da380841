"""Messaging: broker topology, transactional outbox, idempotent inbox."""

from kit.messaging.broker import Broker, BrokerUnavailable, Topology, declare_service_queue
from kit.messaging.inbox import Consumer, InvalidMessage, inbox_table
from kit.messaging.outbox import Outbox, OutboxRelay, outbox_table

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Consumer",
    "InvalidMessage",
    "Outbox",
    "OutboxRelay",
    "Topology",
    "declare_service_queue",
    "inbox_table",
    "outbox_table",
]
