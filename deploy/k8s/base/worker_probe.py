"""Exec probes for the workers, which serve no HTTP (see kit.runtime.Worker).

Mounted into every worker pod from the ``worker-probe`` ConfigMap and run with
the image's Python, standard library only:

    python worker_probe.py live clients.worker
        the worker process (``python -m clients.worker``) exists and is neither a
        zombie nor stopped. It cannot see a hung event loop: that needs a
        heartbeat from kit.runtime, which has none yet.
    python worker_probe.py ready clients.worker
        the broker named by AMQP_URL accepts TCP connections (the worker cannot
        consume or relay without it).

Exit status 0 means healthy.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
from pathlib import Path

DEAD_STATES = {"Z", "X", "x", "T", "t"}


def worker_alive(module: str, proc: Path = Path("/proc")) -> bool:
    own = {str(os.getpid()), str(os.getppid())}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or entry.name in own:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if module.encode() in argv:
            state = stat.rsplit(")", 1)[1].split()[0]
            return state not in DEAD_STATES
    return False


def broker_reachable(url: str, timeout: float = 3.0) -> bool:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout).close()
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"live", "ready"}:
        print("usage: worker_probe.py live|ready <module>", file=sys.stderr)
        return 2
    if argv[1] == "live":
        ok = worker_alive(argv[2])
        reason = f"no running process for {argv[2]}"
    else:
        ok = broker_reachable(os.environ.get("AMQP_URL", "amqp://localhost:5672/"))
        reason = "broker unreachable"
    if not ok:
        print(reason, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
