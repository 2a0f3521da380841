"""A PostgreSQL server of a scenario's own, for faults the shared one must never see
(a restart, every connection terminated): initdb into a temporary directory, started
on a free port with ``pg_ctl``, removed at the end.

PostgreSQL refuses to run as root, so when we are root every server command runs as
the ``postgres`` user (``runuser``) on a directory handed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from reliability.scenarios import Context
from tests.support import infra
from tests.support.stack import ROOT, free_port

SERVER_USER = "postgres"


def server_bindir() -> Path:
    """Where initdb and pg_ctl are: ``pg_config --bindir``, else a Debian-style
    versioned directory (the newest), else PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)  # noqa: S603
        bindir = Path(found.stdout.strip())
        if found.returncode == 0 and (bindir / "pg_ctl").exists():
            return bindir
    versioned = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if versioned:
        return Path(versioned[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise RuntimeError("no PostgreSQL server binaries (pg_ctl, initdb) found")


class PrivatePostgres:
    """``start()`` gives an admin URL (asyncpg driver, user postgres, trust);
    ``restart()`` is ``pg_ctl restart -m fast``; ``stop()`` stops it and removes
    every file it had."""

    def __init__(self, max_connections: int = 300) -> None:
        self.bindir = server_bindir()
        self.max_connections = max_connections
        self.port = 0
        self.root: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """The admin URL as asyncpg itself takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def version(self) -> str:
        argv = [str(self.bindir / "pg_ctl"), "--version"]
        found = subprocess.run(argv, capture_output=True, text=True)  # noqa: S603
        return found.stdout.split()[2]  # "pg_ctl (PostgreSQL) 15.20 ..."

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        argv = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        # Our own argv (server binaries found above, our paths), never a shell.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                + self.server_log()[-3000:]
            )

    def server_log(self) -> str:
        log = self.root / "server.log" if self.root else None
        return log.read_text(errors="replace") if log and log.exists() else ""

    def start(self) -> str:
        self.root = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(self.root, user.pw_uid, user.pw_gid)
            self._run(
                "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8"
            )
            self.port = free_port()
            options = " ".join(
                f"-c {setting}"
                for setting in (
                    "listen_addresses=127.0.0.1",
                    f"port={self.port}",
                    f"unix_socket_directories={self.root}",
                    f"max_connections={self.max_connections}",
                    "fsync=off",  # a throwaway server: durability across a crash is not tested
                    "full_page_writes=off",
                )
            )
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
                "-w",
                "start",
            )
        except BaseException:
            self.stop()
            raise
        return self.admin_url

    def restart(self) -> None:
        """Every connection closed, the server down and up again (waits until it is)."""
        # -l again, or the new server would write to (and hold open) our output pipe.
        log = str(self.root / "server.log") if self.root else ""
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


@contextlib.asynccontextmanager
async def own_server(
    ctx: Context, max_connections: int = 300
) -> AsyncIterator[tuple[Context, PrivatePostgres]]:
    """A context like ``ctx`` whose systems keep their databases on a server of their
    own (migrated templates made there), and that server; both gone at the end."""
    server = PrivatePostgres(max_connections=max_connections)
    await asyncio.to_thread(server.start)
    try:
        templates = infra.MigratedTemplates(server.admin_url, ROOT)
        yield Context(server.admin_url, ctx.amqp_url, templates, ctx.seed), server
    finally:
        await asyncio.to_thread(server.stop)
