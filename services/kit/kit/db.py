"""Database helpers shared by services: engines, sessions, types, dialect bits.

PostgreSQL (asyncpg) in tests and production, SQLite (aiosqlite) for local
runs; the same code works on both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import DateTime, MetaData, Table, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import Insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.logging import get_logger

log = get_logger(__name__)
T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        _prepare_sqlite_file(url)
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        _make_sqlite_transactional(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        # Parameters can hold tokens and email bodies: keep them out of error text and logs.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Let SQLAlchemy own BEGIN so SAVEPOINTs work on SQLite (per SQLAlchemy's docs)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_postgres(session_or_engine: AsyncSession | AsyncEngine) -> bool:
    bind = session_or_engine.bind if isinstance(session_or_engine, AsyncSession) else None
    engine = bind if bind is not None else session_or_engine
    return str(engine.dialect.name) == "postgresql"  # type: ignore[union-attr]


def _dialect_insert(dialect_name: str, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (PostgreSQL, SQLite)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported dialect {dialect_name}")


def insert_ignoring_conflicts(
    dialect_name: str,
    table: Table,
    index_elements: Sequence[str] | None = None,
    index_where: Any = None,
) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING for the current dialect.

    ``index_where`` names a partial unique index by its predicate.
    """
    statement: Insert = _dialect_insert(dialect_name, table).on_conflict_do_nothing(
        index_elements=index_elements, index_where=index_where
    )
    return statement


async def upsert(
    session: AsyncSession,
    table: Table,
    values: dict[str, Any],
    keys: Sequence[str],
    changes: Callable[[Any], dict[str, Any]],
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET changes(excluded), on either dialect.

    ``changes`` receives the would-be-inserted row (``excluded``) and returns
    the columns to update; read models use it with :func:`newer_fact`.
    """
    statement = _dialect_insert(str(session.get_bind().dialect.name), table).values(**values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=changes(statement.excluded))
    )


def newer_fact(stored_at: Any, incoming_at: Any) -> Any:
    """SQL condition: the incoming fact wins when nothing is stored yet or it is not older.

    Read models keep the ``occurred_at`` of the event behind each fact, so events
    applied in any order, any number of times, leave the same rows.
    """
    return (stored_at.is_(None)) | (stored_at <= incoming_at)


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    InterfaceError,
)


def is_connection_error(exc: BaseException) -> bool:
    """True when the error says the database is unreachable, not that a query is wrong."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    cause = exc.__cause__ or exc.__context__
    name = type(exc).__name__
    if name in {"ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError"}:
        return True
    return cause is not None and cause is not exc and is_connection_error(cause)


# Pauses before running again a unit of work whose connection died under it (a backend
# terminated, the server restarting): 3.1 s in all, longer than a fast restart takes.
DISCONNECT_RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6)


def is_disconnect(exc: BaseException) -> bool:
    """The connection died or could not be made; not a timeout (that took its time)."""
    return is_connection_error(exc) and not isinstance(exc, TimeoutError)


def _root_cause(exc: BaseException) -> str:
    """The driver's own error under SQLAlchemy's wrapper (whose text holds the SQL)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


async def retrying_on_disconnect(work: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run ``work`` again while its database connection dies under it. Only for work
    that is safe to run twice (whole transactions that only read, or idempotent writes):
    the last try may have committed before its connection died."""
    for delay in DISCONNECT_RETRY_DELAYS:
        try:
            return await work()
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            log.warning(
                "database_disconnect_retried",
                work=what,
                retry_in_s=delay,
                error=_root_cause(exc),
            )
        await asyncio.sleep(delay)
    return await work()


class RetryReadsOnDisconnect:
    """A GET or HEAD whose database connection died under it (a terminated backend, a
    restarting server) is answered by running it again on a fresh connection, not by a
    500: reads change nothing. Only while nothing of the answer has been sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"GET", "HEAD"}:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        answered = False

        async def recording_receive() -> Message:
            message = await receive()
            received.append(message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        for delay in (*DISCONNECT_RETRY_DELAYS, None):
            replay = iter(list(received))

            async def again_receive(replay: Any = replay) -> Message:
                return next(replay, None) or await recording_receive()

            try:
                await self.app(scope, again_receive, tracking_send)
                return
            except Exception as exc:
                if answered or delay is None or not is_disconnect(exc):
                    raise
                log.warning(
                    "read_retried_after_disconnect",
                    path=scope["path"],
                    retry_in_s=delay,
                    error=_root_cause(exc),
                )
            await asyncio.sleep(delay)


async def database_reachable(engine: AsyncEngine, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed when the endpoint returns.

    Use with ``Depends(db_session, scope="function")`` so the commit happens
    before the response is sent: a failed commit becomes a 5xx, never a
    2xx for a change that was not stored.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        yield session
