"""A RabbitMQ node of a scenario's own, so the scenario may stop and start it.

The shared broker must never be stopped: this starts a second node on the same
machine (its own node name, AMQP and distribution ports, data, logs and plugins
file, in a temporary directory) with the installed ``rabbitmq-server``, and drives it
with ``rabbitmqctl -n <node>``: ``stop_app`` / ``start_app`` (the broker down, the
Erlang node still up), ``close_all_connections``, and ``stop`` at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import infra
from tests.support.stack import free_port

# The packaged scripts run the server (and rabbitmqctl) as this user when started
# by root, so it must own the node's directory; rabbitmqctl then finds the
# server's Erlang cookie in that user's home.
PACKAGE_USER = "rabbitmq"


class PrivateBrokerError(RuntimeError):
    pass


class PrivateBroker:
    """One RabbitMQ node on free ports, with no plugins (no management listener)."""

    def __init__(self, prefix: str = "clientele-reliability") -> None:
        self.node = f"{infra.unique_name(prefix)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.base: Path | None = None
        self._server = shutil.which("rabbitmq-server")
        self._ctl = shutil.which("rabbitmqctl")

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def log_file(self) -> Path | None:
        return self.base / "log" / f"{self.node}.log" if self.base else None

    def _environment(self) -> dict[str, str]:
        assert self.base is not None
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            # Else NODE_PORT + 20000, which may be taken (the shared node's is 25672).
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            # The machine's rabbitmq.conf names the shared node's listener: ours has one
            # of its own instead.
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
        }

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """``rabbitmqctl -n <node> ...``; raises with its output when it fails."""
        assert self._ctl is not None
        done = subprocess.run(  # noqa: S603 (argv: the installed tool, our own arguments)
            [self._ctl, "-n", self.node, *args],
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise PrivateBrokerError(
                f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-2000:]}"
            )
        return done.stdout

    def start(self, timeout: float = 120) -> PrivateBroker:
        if self._server is None or self._ctl is None:
            raise PrivateBrokerError("rabbitmq-server and rabbitmqctl must be on PATH")
        self.base = Path(tempfile.mkdtemp(prefix="reliability-rabbitmq-"))
        try:
            for sub in ("mnesia", "log"):
                (self.base / sub).mkdir()
            (self.base / "enabled_plugins").write_text("[].\n")
            (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
            self._hand_to_package_user()
            subprocess.run(  # noqa: S603 (argv: the installed server, our own flag)
                [self._server, "-detached"],
                env=self._environment(),
                capture_output=True,
                timeout=60,
                check=True,
            )
            self._await_startup(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _hand_to_package_user(self) -> None:
        assert self.base is not None
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam(PACKAGE_USER)
        except KeyError:
            return
        for path in [self.base, *self.base.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)

    def _await_startup(self, timeout: float) -> None:
        # await_startup fails at once until the node has registered with epmd.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "30", timeout=60)
                return
            except PrivateBrokerError as exc:
                if time.monotonic() > deadline:
                    log = self.log_file.read_text(errors="replace") if self.log_file else ""
                    raise PrivateBrokerError(
                        f"{self.node} did not start in {timeout:g} s: {exc}\n{log[-3000:]}"
                    ) from exc
                time.sleep(1)

    def stop_app(self) -> None:
        """The broker stops (every connection closed, the listener gone); the node stays."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def close_all_connections(self, reason: str = "reliability scenario") -> None:
        self.ctl("close_all_connections", reason)

    def consumers(self) -> list[dict[str, Any]]:
        """Every consumer on the node: its queue, prefetch (the channel's QoS), whether
        it acks and is active."""
        listed = self.ctl(
            "list_consumers",
            "--quiet",
            "--formatter",
            "json",
            "queue_name",
            "prefetch_count",
            "ack_required",
            "active",
        )
        return list(json.loads(listed or "[]"))

    def stop(self, keep_log_in: Path | None = None) -> None:
        """Stop the node (SIGKILL by its pid if rabbitmqctl cannot) and delete its files;
        its log is copied to ``keep_log_in`` first, if given."""
        if self.base is None:
            return
        pid_file = self.base / "node.pid"
        try:
            self.ctl("stop", timeout=60)
        except (PrivateBrokerError, subprocess.TimeoutExpired):
            if pid_file.exists():
                with contextlib.suppress(ValueError, ProcessLookupError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        if keep_log_in is not None and self.log_file and self.log_file.exists():
            shutil.copy(self.log_file, keep_log_in / "rabbitmq-node.log")
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
