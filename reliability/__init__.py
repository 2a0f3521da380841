"""``make reliability``: the slow reliability suite of issue 8 (see docs/reliability.md).

Each scenario starts the whole system on PostgreSQL and RabbitMQ, with RabbitMQ and
every database reached through TCP proxies of ours, injects faults (SIGKILL by pid,
the SMTP sink answering 421, proxies cut), and ends with the ledger check: wait until
nothing is in flight, then count per purchase what was lost, duplicated or unexpected.
"""
