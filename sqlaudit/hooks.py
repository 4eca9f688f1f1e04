"""Pass the acting user to the database, once per transaction.

:func:`register_hooks` listens on every SQLAlchemy :class:`~sqlalchemy.engine.Engine`
(ORM sessions, Core connections and ``text()`` alike). Just before the first
statement of each transaction it resolves the acting user (an enclosing
:func:`sqlaudit.context.audit_context`, else ``get_user_id_callback``) and
stamps it into the transaction:

* PostgreSQL: ``set_config('sqlaudit.user_id', :user_id, true)``, a
  transaction-local setting that ends with the transaction (raw SQL can do
  the same with ``SET LOCAL sqlaudit.user_id = '42'``, which is what psycopg 3
  connections send, in the same message as their BEGIN);
* SQLite: a row in a per-connection TEMP table, written inside the
  transaction and deleted before COMMIT;
* MariaDB / MySQL: the session's user variables ``@sqlaudit_user_id``,
  ``@sqlaudit_reason``, ``@sqlaudit_context`` (and ``@sqlaudit_transaction_id``),
  set with bind parameters. They live as long as the session, not the
  transaction, so they are set to NULL again before every COMMIT and ROLLBACK
  the hook sees (raw ``COMMIT``/``ROLLBACK`` text included) and when a
  connection that was stamped goes back to the pool. A session whose server
  autocommits (the driver's switch, or a raw ``SET autocommit = 1``) is not
  stamped, and its variables are cleared, as under SQLAlchemy's AUTOCOMMIT.

Because the stamp lives inside the transaction, a rollback takes it away,
it never reaches another pooled checkout, and other threads never see it.
Transaction control sent as SQL text (a raw ``COMMIT``, ``ROLLBACK TO
SAVEPOINT``...) makes the next statement stamp again; a stamp that fails takes
the transaction's earlier stamp away; on SQLite the context row is deleted
before every commit the hook sees and when a connection returns to the pool.
"""

from __future__ import annotations

import logging
import re
import secrets
from functools import lru_cache
from contextvars import ContextVar
from typing import Any, Callable, Optional

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import Pool

from . import _templates
from .context import Actor, _callback_user_id, _context_actor, _user_id_text
from .dialects import is_mysql, sqlite as sqlite_sql
from .exceptions import SQLAuditStampError

__all__ = ["register_hooks", "unregister_hooks", "hooks_registered"]

log = logging.getLogger("sqlaudit")

_STATE = "sqlaudit_actor"  # key in Connection.info: (Actor, from_context) once stamped
_TXID = "sqlaudit_transaction_id"  # SQLite: this transaction's id, kept across re-stamps
_STAMP_TRIGGER = "sqlaudit_stamp_trigger"  # SQLite: name of this connection's TEMP trigger
_STAMP_COMMAND = "sqlaudit_stamp_command"  # psycopg: ((user, reason, encoding), quoted set_actor_local)
_SCHEMA_VERSION = "sqlaudit_schema_version"  # SQLite: main schema the TEMP trigger was made for
_MYSQL_STAMPED = "sqlaudit_mysql_stamped"  # MariaDB: the session's @sqlaudit_* variables may be set
_MYSQL_RAW = "sqlaudit_mysql_raw"  # MariaDB: the application set @sqlaudit_* itself (raw SQL)
#: Dialects whose transactions the hook stamps.
_STAMPED_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")
#: Transaction control sent as SQL text (by SQLAlchemy for savepoints, or by the
#: application through exec_driver_sql / text()), after any leading comments.
#: Group 1 is the keyword; group 2 is set for ROLLBACK ... TO (a savepoint),
#: group 3 for PREPARE TRANSACTION (which ends the transaction).
_CONTROL_RE = re.compile(
    r"(?:\s|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/)*"  # '#': MariaDB's comment
    # not MariaDB's anonymous block BEGIN NOT ATOMIC ... END, a statement that writes
    r"(BEGIN(?!\s+NOT\s+ATOMIC\b)|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE)\b"
    r"(?:(?<=ROLLBACK)(?:\s+(?:WORK|TRANSACTION))?(\s+TO)\b"
    r"|(?<=PREPARE)(\s+TRANSACTION)\b)?",
    re.IGNORECASE | re.DOTALL,
)
#: First characters a statement matched by _CONTROL_RE can start with.
_CONTROL_START = frozenset("BSCERAPbscerap/-# \t\r\n")
#: MariaDB / MySQL statements that commit the open transaction before they run
#: (DDL, account statements, LOCK TABLES ...); TEMPORARY tables commit nothing.
_SQL_GAP = r"(?:\s|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*(?!!|M!).*?\*/)"
_IMPLICIT_COMMIT_RE = re.compile(
    _SQL_GAP + r"*"
    r"(?:(?:CREATE|DROP)(?!" + _SQL_GAP + r"+(?:OR" + _SQL_GAP + r"+REPLACE" + _SQL_GAP
    + r"+)?TEMPORARY\b)|ALTER|RENAME|TRUNCATE|GRANT|REVOKE|LOCK|UNLOCK"
    # ANALYZE, OPTIMIZE, REPAIR, CHECK of TABLE(s) only: MariaDB's ANALYZE UPDATE (and
    # ANALYZE of any statement) runs that statement, a write to stamp
    r"|(?:ANALYZE|OPTIMIZE|REPAIR)\s+(?:(?:NO_WRITE_TO_BINLOG|LOCAL)\s+)?TABLES?"
    r"|CHECK\s+TABLES?|RESET|SET\s+PASSWORD|BACKUP\s+STAGE"
    r"|FLUSH|INSTALL|UNINSTALL|CACHE\s+INDEX|LOAD\s+INDEX)\b",
    re.IGNORECASE | re.DOTALL)
#: A reference to one of the @sqlaudit_* user variables in any spelling the server
#: accepts: their names are case-insensitive and may be quoted (@`x`, @'x', @"x").
_MYSQL_VARIABLE_RE = re.compile(r"@[`'\"]?sqlaudit_", re.IGNORECASE)
_SQLITE_READS = ("SELECT", "PRAGMA", "EXPLAIN")
_PQ_IDLE = 0  # libpq PQTRANS_IDLE
_PQ_COMMAND_OK = 1  # libpq PGRES_COMMAND_OK
_busy: ContextVar[bool] = ContextVar("sqlaudit_stamping", default=False)
_warned_autocommit = False


@lru_cache(maxsize=None)
def _sql(dialect_name: str, name: str) -> str:
    (statement,) = _templates.render(dialect_name, name)
    return statement


def _compiled(dialect: Dialect, sql: str) -> Any:
    cache = dialect.__dict__.setdefault("_sqlaudit_compiled", {})
    compiled = cache.get(sql)
    if compiled is None:
        compiled = cache[sql] = text(sql).compile(dialect=dialect)
    return compiled


def _execute(cursor: Any, dialect: Dialect, sql: str, params: dict[str, Any]) -> None:
    compiled = _compiled(dialect, sql)
    values = compiled.construct_params(params)
    if compiled.positional:
        cursor.execute(compiled.string, [values[k] for k in compiled.positiontup])
    else:
        cursor.execute(compiled.string, values)


def _stamp_postgresql(cursor: Any, dialect: Dialect, actor: Actor, conn: Connection) -> bool:
    params = {"user_id": actor.user_id or "", "reason": actor.reason or "",
              "context": actor.context or ""}
    if dialect.driver == "psycopg" and _stamp_with_begin(conn, params):
        return True
    _execute(cursor, dialect, _sql("postgresql", "set_actor"), params)
    return True


def _stamp_with_begin(conn: Connection, params: dict[str, str]) -> bool:
    """psycopg 3: send the stamp in the same round trip as the transaction's BEGIN.

    psycopg starts a transaction with a separate BEGIN before the first
    statement; when the connection is idle we send that BEGIN (with the
    connection's own isolation options) and the stamp together, as one
    simple-protocol message, so stamping costs no extra round trip. The stamp
    is ``SET LOCAL`` (the same transaction-local setting as ``set_config(...,
    true)``, cheaper for the server), so the values are quoted by psycopg
    (``sql.Literal``, libpq's escaping) instead of bound; the quoted
    command is kept per connection while the same user and reason come back
    (the common case on a pooled connection). Returns False where this
    does not apply (async, pipeline or autocommit mode, a transaction already
    open, an older psycopg), and the caller uses the portable path.
    """
    driver_conn: Any = conn.connection.driver_connection
    begin = getattr(driver_conn, "_get_tx_start_command", None)
    pgconn = getattr(driver_conn, "pgconn", None)
    if (
        begin is None
        or pgconn is None
        or getattr(driver_conn, "_pipeline", None) is not None
        or driver_conn.autocommit
        or pgconn.transaction_status != _PQ_IDLE
        or not hasattr(driver_conn, "lock")
        or hasattr(driver_conn, "__aenter__")
    ):
        return False
    key = (params["user_id"], params["reason"], params["context"], driver_conn.info.encoding)
    cached = conn.info.get(_STAMP_COMMAND)
    if cached is not None and cached[0] == key:
        command = cached[1]
    else:
        command = _quoted_set_actor(driver_conn, params)
        conn.info[_STAMP_COMMAND] = (key, command)
    with driver_conn.lock:
        result = pgconn.exec_(begin() + b"; " + command)
    if result.status != _PQ_COMMAND_OK:
        raise SQLAuditStampError(f"sqlaudit could not stamp the acting user: {result.error_message!r}")
    return True


def _quoted_set_actor(driver_conn: Any, params: dict[str, str]) -> bytes:
    """set_actor_local (SET LOCAL) with the values quoted by psycopg, encoded for the connection."""
    from psycopg import sql as psycopg_sql

    command = _set_actor_local()
    for key, value in params.items():  # psycopg refuses NUL in text: no value holds a marker
        command = command.replace(f"\0{key}\0", psycopg_sql.Literal(value).as_string(driver_conn), 1)
    return command.encode(driver_conn.info.encoding)


@lru_cache(maxsize=None)
def _set_actor_local() -> str:
    """set_actor_local.sql as one message, with NUL-delimited markers for the values
    (rendered once: the hook fills it in whenever a connection's user changes)."""
    return "; ".join(_templates.render(
        "postgresql", "set_actor_local", user_id="\0user_id\0", reason="\0reason\0",
        context="\0context\0"))


def _stamp_sqlite(cursor: Any, dialect: Dialect, actor: Actor, conn: Connection) -> bool:
    """Write the user into this connection's TEMP context; False if there is no audit table.

    The statement touches only the TEMP database, so it never takes a lock on
    the main database file (a read lock there would turn the transaction's
    first write into an immediate "database is locked" under concurrency).
    """
    txid = conn.info.get(_TXID)
    if txid is None:
        txid = conn.info[_TXID] = secrets.randbits(62)
    params = {"user_id": actor.user_id, "reason": actor.reason, "context": actor.context,
              "transaction_id": txid,
              "stamp_trigger": conn.info.get(_STAMP_TRIGGER, "")}
    if not getattr(conn.connection.dbapi_connection, "in_transaction", True):
        # Outside a transaction a read of the main schema version holds no lock.
        # A changed version means the audit table may have been re-created by
        # another connection, which leaves this connection's TEMP trigger stale.
        cursor.execute("PRAGMA schema_version")
        version = cursor.fetchone()[0]
        if version != conn.info.get(_SCHEMA_VERSION):
            if not _create_sqlite_context(cursor, conn):
                return False
            conn.info[_SCHEMA_VERSION] = version
            params["stamp_trigger"] = conn.info[_STAMP_TRIGGER]
    for attempt in (1, 2):
        try:
            _execute(cursor, dialect, _sql("sqlite", "set_actor"), params)
            if cursor.rowcount != 0:
                return True
        except dialect.loaded_dbapi.OperationalError as exc:
            if "sqlaudit_context" not in str(exc) or attempt == 2:
                raise
        if not _create_sqlite_context(cursor, conn):
            return False  # no audit table in this database (yet): nothing to stamp
        params["stamp_trigger"] = conn.info[_STAMP_TRIGGER]
    return False


def _stamp_mysql(cursor: Any, dialect: Dialect, actor: Actor, conn: Connection) -> bool:
    """Set the session's @sqlaudit_* user variables for this transaction (bind parameters).

    A transaction id is drawn once per transaction, as on SQLite (MariaDB has no
    cheap transaction id that the triggers could read without extra privileges).
    """
    txid = conn.info.get(_TXID)
    if txid is None:
        txid = conn.info[_TXID] = secrets.randbits(62)
    conn.info[_MYSQL_STAMPED] = True
    _execute(cursor, dialect, _sql("mysql", "set_actor"),
             {"user_id": actor.user_id, "reason": actor.reason, "context": actor.context,
              "transaction_id": txid})
    return True


def _clear_mysql(cursor: Any, conn: Connection) -> None:
    """Set this MariaDB session's @sqlaudit_* variables to NULL, if they may be set."""
    if conn.info.get(_MYSQL_STAMPED):
        cursor.execute(_sql("mysql", "clear_actor"))
        conn.info.pop(_MYSQL_STAMPED, None)


def _clear_mysql_now(conn: Connection) -> None:
    """:func:`_clear_mysql` on a cursor of its own (at COMMIT and ROLLBACK). A session whose
    variables cannot be cleared is invalidated: it is never used again. A session the
    server has ended is left to the COMMIT or ROLLBACK that follows, which fails the
    same way: SQLAlchemy then raises its OperationalError (``connection_invalidated``)
    and discards the connection, as on the other dialects."""
    if conn.invalidated or not conn.info.get(_MYSQL_STAMPED):
        return
    dbapi: Any = None
    try:
        dbapi = conn.connection.dbapi_connection  # checked out: never None here
        cursor = dbapi.cursor()
        try:
            _clear_mysql(cursor, conn)
        finally:
            cursor.close()
    except Exception as exc:
        lost: Any = exc  # the driver's error, as SQLAlchemy's is_disconnect takes it
        if dbapi is not None and conn.dialect.is_disconnect(lost, dbapi, None):
            return  # the session, and its variables, are gone with the connection
        log.warning("sqlaudit could not clear the MariaDB user variables; discarding the "
                    "connection", exc_info=True)
        conn.invalidate()


def _create_sqlite_context(cursor: Any, conn: Connection) -> bool:
    """(Re)create the TEMP context objects; False when the audit table is missing."""
    old = conn.info.get(_STAMP_TRIGGER) or "sqlaudit_stamp"
    new = f"sqlaudit_stamp_{secrets.token_hex(4)}"
    cursor.execute("SELECT 1 FROM pragma_table_info('sqlaudit_log', 'main') WHERE name = 'context'")
    with_context = cursor.fetchone() is not None
    for sql in sqlite_sql.context_statements(new, old, with_context):
        try:
            cursor.execute(sql)
        except Exception as exc:
            if "no such table" in str(exc):
                return False
            raise
    conn.info[_STAMP_TRIGGER] = new
    return True


def _forget_sqlite_context(connection: Connection) -> None:
    """Drop this connection's TEMP stamp trigger before it creates the audit table.

    A TEMP trigger left on a table another connection dropped cannot be
    removed once this connection re-creates the table (SQLite keeps a ghost
    entry), so it is removed first; the next transaction re-creates it.
    """
    if connection.dialect.name == "sqlite":
        name = connection.info.pop(_STAMP_TRIGGER, None)
        if name:
            quote = sqlite_sql.rendering_quote()
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS temp.{quote(name)}")
        connection.info.pop(_STATE, None)


def _server_autocommits(conn: Connection) -> bool:
    """True when the MariaDB session has autocommit on, as the server said in the status
    flags of its last reply (SERVER_STATUS_AUTOCOMMIT), which the driver keeps: no round
    trip. PyMySQL, mysqlclient, aiomysql and asyncmy expose it as ``get_autocommit()``,
    MariaDB Connector/Python as the ``autocommit`` attribute. A driver that exposes
    neither is taken at SQLAlchemy's word."""
    driver: Any = conn.connection.driver_connection
    get = getattr(driver, "get_autocommit", None)
    if get is not None:
        return bool(get())
    flag = getattr(driver, "autocommit", None)
    return flag if isinstance(flag, bool) else False


def _is_autocommit(conn: Connection) -> bool:
    check = getattr(conn, "_is_autocommit_isolation", None)
    return bool(check()) if check is not None else False


def _before_cursor_execute(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if _busy.get():
        return
    mysql = is_mysql(conn.dialect.name)
    _stamp_before(conn, cursor, statement, mysql)
    if mysql and "@" in statement and _MYSQL_VARIABLE_RE.search(statement):
        # the application sets a variable itself (raw SQL): it holds for this checkout
        # (also in AUTOCOMMIT) and is cleared at checkin, never reaching another one
        conn.info[_MYSQL_RAW] = True


def _stamp_before(conn: Connection, cursor: Any, statement: str, mysql: bool) -> None:
    """Stamp the acting user before ``statement``, or forget or clear a stamp."""
    # the first character rules out most statements before the regex runs (hot path)
    control = _CONTROL_RE.match(statement) if statement[:1] in _CONTROL_START else None
    if control is not None:
        # Transaction control needs no user (and a savepoint rollback that is about to
        # run would undo a stamp made now), but it may end or rewind the stamp.
        _transaction_control(conn, cursor, control)
        return
    if mysql and _IMPLICIT_COMMIT_RE.match(statement):
        # it commits the open transaction first: the writes after it are another
        # transaction, stamped again with a new transaction id
        conn.info.pop(_STATE, None)
        conn.info.pop(_TXID, None)
        return
    if mysql and _server_autocommits(conn):
        # Autocommit switched on behind SQLAlchemy's back (in the driver, or by a raw
        # SET autocommit = 1): every statement commits by itself, so no user may be
        # stamped for "the transaction", and one stamped earlier must not stay.
        _warn_autocommit()
        _clear_mysql(cursor, conn)
        conn.info.pop(_STATE, None)
        conn.info.pop(_TXID, None)
        return
    state: Optional[tuple[Actor, Optional[Actor]]] = conn.info.get(_STATE)
    override = _context_actor()
    if state is not None and override == state[1]:
        return  # stamped for this transaction under the same audit_context (or none)
    dialect = conn.dialect
    if dialect.name not in _STAMPED_DIALECTS:
        return
    if dialect.name == "sqlite" and statement.lstrip()[:7].upper().startswith(_SQLITE_READS):
        # On SQLite, reads wait for the first write: a stamp would open the transaction
        # early and hold a read lock that turns the later write into an immediate
        # "database is locked".
        return
    if _is_autocommit(conn):
        _warn_autocommit()
        if dialect.name == "sqlite":
            _clear_sqlite_context(cursor, conn)  # a context row must never reach this write
        elif mysql:
            _clear_mysql(cursor, conn)  # nor a user set by an earlier transaction
        return
    token = _busy.set(True)
    try:
        actor = _resolve(override)
        stamp = (_stamp_postgresql if dialect.name == "postgresql"
                 else _stamp_mysql if mysql else _stamp_sqlite)
        conn.info.pop(_STATE, None)
        try:
            stamped = stamp(cursor, dialect, actor, conn)
        except Exception:
            # The user in force could not be stamped: take away the previous stamp of
            # this transaction so the write runs without a user (or fails where a user
            # is required), never under the previous one; if even that fails, the
            # application's statement fails with the stamp's error.
            if not _clear_stamp(cursor, dialect, conn):
                raise
            log.warning("sqlaudit could not record the acting user", exc_info=True)
            return
        if stamped:
            conn.info[_STATE] = (actor, override)
    finally:
        _busy.reset(token)


def _transaction_control(conn: Connection, cursor: Any, control: "re.Match[str]") -> None:
    """Forget (and on SQLite remove) a stamp that raw transaction control ends or rewinds.

    COMMIT, END, ROLLBACK, ABORT and PREPARE TRANSACTION end the transaction: the
    next write is in a new one and is stamped again; on SQLite the context row is
    deleted before a COMMIT or END runs, so it is never committed. ROLLBACK TO a
    savepoint may undo the stamp: the next write is stamped again, in the same
    transaction. RELEASE keeps the stamp on PostgreSQL; on SQLite releasing the
    outermost savepoint commits, so the row is deleted first and the next write is
    stamped again. BEGIN and START re-stamp too. SAVEPOINT changes nothing.
    On MariaDB the session's variables are set to NULL before a COMMIT, a
    ROLLBACK (not to a savepoint), a BEGIN or a START TRANSACTION (each ends the
    open transaction) runs.
    """
    if conn.invalidated or conn.dialect.name not in _STAMPED_DIALECTS:
        return
    keyword = control.group(1).upper()
    if keyword == "SAVEPOINT" or (keyword == "PREPARE" and control.group(3) is None):
        return
    if is_mysql(conn.dialect.name):
        if keyword in ("COMMIT", "BEGIN", "START") or (
                keyword == "ROLLBACK" and control.group(2) is None):
            _clear_mysql(cursor, conn)
        elif keyword == "RELEASE":
            return
    sqlite = conn.dialect.name == "sqlite"
    if sqlite and keyword in ("COMMIT", "END", "RELEASE"):
        _clear_sqlite_context(cursor, conn)
    elif not sqlite and keyword == "RELEASE":
        return
    conn.info.pop(_STATE, None)
    if keyword in ("COMMIT", "END", "ABORT", "PREPARE") or (
            keyword == "ROLLBACK" and control.group(2) is None) or (
            keyword in ("BEGIN", "START") and is_mysql(conn.dialect.name)):  # they commit there
        conn.info.pop(_TXID, None)


def _clear_stamp(cursor: Any, dialect: Dialect, conn: Connection) -> bool:
    """Take this transaction's stamp away; False if that failed too."""
    try:
        if dialect.name == "postgresql":
            _execute(cursor, dialect, _sql("postgresql", "set_actor"),
                     {"user_id": "", "reason": "", "context": ""})
        elif is_mysql(dialect.name):
            conn.info[_MYSQL_STAMPED] = True  # the failed SET may have set some of them
            _clear_mysql(cursor, conn)
        else:
            _clear_sqlite_context(cursor, conn)
    except Exception:
        log.debug("sqlaudit could not clear the stamp after a failed stamp", exc_info=True)
        return False
    return True


def _clear_sqlite_context(cursor: Any, conn: Connection) -> None:
    """Delete the context row of this SQLite connection, if it has the TEMP objects."""
    if conn.info.get(_STAMP_TRIGGER):
        cursor.execute(_sql("sqlite", "clear_actor"))


def _resolve(override: Optional[Actor]) -> Actor:
    """The actor to stamp: the ``audit_context``'s, with the callback's user when the
    context names none."""
    if override is not None and not override.inherits_user:
        return override
    user = _callback_user()
    if override is None:
        return Actor(user)
    return Actor(user, override.reason, override.context)


def _callback_user() -> Optional[str]:
    """The callback's user. A callback that raises records the change without a user
    (logged); one that returns a value that is not a user id fails the write
    (TypeError or ValueError, raised here)."""
    try:
        value = _callback_user_id()
    except Exception:
        log.error("get_user_id_callback raised; recording the change without a user",
                  exc_info=True)
        return None
    return _user_id_text(value, from_callback=True)


def _warn_autocommit() -> None:
    global _warned_autocommit
    if not _warned_autocommit:
        _warned_autocommit = True
        log.warning(
            "sqlaudit: a connection runs in AUTOCOMMIT mode; its writes are audited "
            "without a user because a transaction-local user cannot outlive one statement."
        )


def _reset_savepoint(conn: Connection, *args: Any) -> None:
    """After ROLLBACK TO SAVEPOINT the next statement stamps again (same transaction id)."""
    if not conn.invalidated:
        conn.info.pop(_STATE, None)


def _reset(conn: Connection, *args: Any) -> None:
    if not conn.invalidated:  # an invalidated connection has no info to clean
        conn.info.pop(_STATE, None)
        conn.info.pop(_TXID, None)


def _rollback(conn: Connection) -> None:
    """Before ROLLBACK: forget the stamp; on MariaDB also clear the session's variables."""
    _reset(conn)
    if not conn.invalidated and is_mysql(conn.dialect.name):
        _clear_mysql_now(conn)


def _begin(conn: Connection) -> None:
    """A new transaction: forget the last one's stamp. On PostgreSQL, inside an
    ``audit_context``, stamp at once (psycopg 3: in the same message as the
    BEGIN, as the first statement would), so that statements sent straight
    through the driver, such as ``COPY ... FROM STDIN`` on the DBAPI
    connection, carry the user too."""
    _reset(conn)
    override = _context_actor()
    if override is None or conn.invalidated or conn.dialect.name != "postgresql":
        return
    if _busy.get() or _is_autocommit(conn):
        return
    token = _busy.set(True)
    try:
        # a checked-out connection always has its DBAPI connection (None only once detached)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            actor = _resolve(override)
            if _stamp_postgresql(cursor, conn.dialect, actor, conn):
                conn.info[_STATE] = (actor, override)
        finally:
            cursor.close()
    except Exception:
        # the first statement tries again, as it always did
        log.debug("sqlaudit could not stamp the user at BEGIN", exc_info=True)
    finally:
        _busy.reset(token)


def _commit(conn: Connection) -> None:
    if conn.invalidated:
        return
    conn.info.pop(_STATE, None)
    if is_mysql(conn.dialect.name):
        conn.info.pop(_TXID, None)
        _clear_mysql_now(conn)  # before the COMMIT: the event runs ahead of it
        return
    # _TXID is set by every stamp of this transaction, and kept when a savepoint
    # rollback undid the latest one: the row may be there even without _STATE
    stamped = conn.info.pop(_TXID, None) is not None
    if not stamped or conn.dialect.name != "sqlite" or not conn.info.get(_STAMP_TRIGGER):
        return
    try:
        dbapi: Any = conn.connection.dbapi_connection  # checked out: never None here
        dbapi.cursor().execute(_sql("sqlite", "clear_actor"))
    except Exception:
        log.warning("sqlaudit could not clear the SQLite user context", exc_info=True)


def _checkin(dbapi_connection: Any, record: Any) -> None:
    """A SQLite connection goes back to the pool without a context row, a MariaDB
    session without @sqlaudit_* variables.

    Every path sqlaudit sees deletes the row before its transaction commits; this
    catches a commit made behind SQLAlchemy's back (the DBAPI connection's own
    ``commit()``), so the next AUTOCOMMIT or ``raw_connection()`` write on this
    connection cannot be credited to the user of an earlier transaction. A
    connection whose row cannot be removed is discarded from the pool. On MariaDB
    the variables of a session that was stamped (and not cleared since, as every
    COMMIT and ROLLBACK SQLAlchemy sees does), or whose variables the application
    set itself with raw SQL, are set to NULL.
    """
    if dbapi_connection is not None and (record.info.get(_MYSQL_STAMPED)
                                         or record.info.get(_MYSQL_RAW)):
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(_sql("mysql", "clear_actor"))
            finally:
                cursor.close()
            record.info.pop(_MYSQL_STAMPED, None)
            record.info.pop(_MYSQL_RAW, None)
        except Exception:
            log.warning("sqlaudit could not clear the MariaDB user variables; discarding "
                        "the connection", exc_info=True)
            record.invalidate()
        return
    if dbapi_connection is None or not record.info.get(_STAMP_TRIGGER):
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_sql("sqlite", "has_actor"))
            if cursor.fetchone() is not None:
                cursor.execute(_sql("sqlite", "clear_actor"))
                dbapi_connection.commit()
        finally:
            cursor.close()
    except Exception:
        log.warning("sqlaudit could not clear the SQLite user context; discarding the "
                    "connection", exc_info=True)
        record.invalidate()


# Event name and listener; the listeners' signatures differ per event.
_LISTENERS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("begin", _begin),
    ("begin_twophase", _reset),  # XA on MariaDB: a new transaction, a new transaction id
    ("before_cursor_execute", _before_cursor_execute),
    ("commit", _commit),
    ("rollback", _rollback),
    ("rollback_savepoint", _reset_savepoint),
)
_POOL_LISTENERS: tuple[tuple[str, Callable[..., None]], ...] = (("checkin", _checkin),)


_WRITES = ("INSERT", "UPDATE", "DELETE", "MERGE")
_missing_hooks_warned = False


def _warn_without_hooks(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
    """Once: a write while a ``get_user_id_callback`` is configured but the hooks that pass
    its user to the database were never registered (the change is recorded without one)."""
    global _missing_hooks_warned
    if _missing_hooks_warned:
        return
    if statement.lstrip()[:6].upper().startswith(_WRITES):
        _missing_hooks_warned = True
        log.warning("sqlaudit: register_hooks() was not called; changes are recorded without "
                    "a user (call sqlaudit.register_hooks() once at startup)")


def _watch_for_missing_hooks() -> None:
    """Warn at the first write if a user callback is configured but hooks are not
    registered (done by ``set_config``). The listener exists only while the hooks are
    not registered (``register_hooks`` removes it) and costs one flag check per
    statement until it has warned."""
    if not hooks_registered() and not event.contains(Engine, "before_cursor_execute",
                                                     _warn_without_hooks):
        event.listen(Engine, "before_cursor_execute", _warn_without_hooks)


def register_hooks() -> None:
    """Start passing the acting user to the database for every Engine.

    Idempotent: a second call changes nothing. Without it the triggers still
    record every change, with ``changed_by`` NULL.
    """
    for name, fn in _LISTENERS:
        if not event.contains(Engine, name, fn):
            event.listen(Engine, name, fn)
    for name, fn in _POOL_LISTENERS:
        if not event.contains(Pool, name, fn):
            event.listen(Pool, name, fn)
    if event.contains(Engine, "before_cursor_execute", _warn_without_hooks):
        event.remove(Engine, "before_cursor_execute", _warn_without_hooks)
    log.debug("sqlaudit hooks registered")


def unregister_hooks() -> None:
    """Stop passing the acting user (the triggers keep recording changes)."""
    for name, fn in _LISTENERS:
        if event.contains(Engine, name, fn):
            event.remove(Engine, name, fn)
    for name, fn in _POOL_LISTENERS:
        if event.contains(Pool, name, fn):
            event.remove(Pool, name, fn)


def hooks_registered() -> bool:
    """True while :func:`register_hooks` is in effect."""
    return all(event.contains(Engine, name, fn) for name, fn in _LISTENERS)
