"""Tamper evidence for the audit log: a SHA-256 hash chain kept in ``sqlaudit_seal``.

The database owner or a superuser can always change ``sqlaudit_log`` (for
example with ``session_replication_role = replica`` on PostgreSQL, or by
dropping the guard triggers on SQLite or MariaDB). That cannot be prevented from inside
the database; this module makes it *detectable*:

* :func:`seal_audit_log` appends to the append-only ``sqlaudit_seal`` table one
  entry per chunk of up to :data:`CHUNK_ROWS` log rows not yet sealed, in id
  order. Each entry holds the digest of its rows and the digest of the entry
  before it, so the last entry's ``digest`` (the *head*, returned) commits to
  the whole history. Keep the head outside the database.
* :func:`verify_audit_log` recomputes everything and reports, without raising,
  every id range whose rows were altered, deleted or inserted out of order, a
  broken chain, and a mismatch with an externally kept head.
* :func:`sqlaudit.ddl.prune_audit_log` calls :func:`prune_sealed`, which seals
  and verifies the entries and the intervals it touches first, then records
  what it removes as a ``prune`` entry and starts a new epoch (untouched
  entries carried over, touched ones re-sealed), so the chain still verifies.

Nothing runs on the write path: sealing reads committed rows only, later.
See docs/integrity.md for the design, the canonical encoding and the threat model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar, Union

from sqlalchemy import JSON, ColumnElement, MetaData, Table, and_, case, event, insert, literal_column, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from . import _templates
from ._installed import default_schema
from .context import _context_actor
# SQLAuditIntegrityError lived here before it joined sqlaudit.exceptions; still importable
from .exceptions import SQLAuditArgumentTypeError, SQLAuditError, SQLAuditIntegrityError
from .schema import audit_table, log_schema, seal_table

__all__ = [
    "CHUNK_ROWS",
    "FORMAT_VERSION",
    "Problem",
    "SQLAuditIntegrityError",
    "VerifyResult",
    "seal_audit_log",
    "verify_audit_log",
    "HistoryGap",
    "find_history_gaps",
]

Bind = Union[Engine, Connection, Session]
_logger = logging.getLogger(__name__)

#: Version of the canonical encoding (rows and entries); stored in every entry.
FORMAT_VERSION = 1
#: Log rows per seal entry: a tampered row is located to within one entry's id range.
CHUNK_ROWS = 1000
#: ``previous_digest`` of the first entry.
GENESIS = "0" * 64
_FETCH = 20000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify_audit_log`.

    ``kind`` is ``altered`` (same number of rows, different content),
    ``deleted`` (fewer rows than sealed), ``inserted`` (more rows than sealed, or
    rows outside every sealed range below the sealed head), ``chain`` (a seal
    entry was altered, removed or reordered), ``head_mismatch`` (the chain does
    not contain the externally kept head) or ``pruned_after_head`` (a prune is
    recorded after the externally kept head, which cannot vouch for it: keep a
    new head after each prune). ``first_id``/``last_id`` bound the
    log ids concerned; ``seal_id`` is the ``sqlaudit_seal`` entry involved.
    """

    kind: str
    first_id: Optional[int]
    last_id: Optional[int]
    seal_id: Optional[int]
    message: str


@dataclass
class VerifyResult:
    """What :func:`verify_audit_log` found. ``ok`` is True only when nothing was."""

    problems: list[Problem] = field(default_factory=list)
    head: Optional[str] = None
    seals: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok


# --------------------------------------------------------------------------- encoding


def _number(literal: str) -> Any:
    """A JSON number with a fraction or exponent: a float when the float prints back as
    the same text (the C encoder's fast path), else an exact Decimal."""
    value = float(literal)
    return value if repr(value) == literal else Decimal(literal)


_DECODE = json.JSONDecoder(parse_float=_number).decode
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical_json(value: str) -> str:
    """JSON text -> one canonical text: keys sorted, no spaces, non-ASCII kept,
    numbers with a fraction or exponent kept exactly as stored (no float rounding)."""
    decoded = _DECODE(value)
    try:
        return _ENCODE(decoded)  # C encoder; refuses the Decimals of exact numbers
    except TypeError:
        return _encode_slow(decoded)


def _encode_slow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + _encode_slow(value[k]) for k in sorted(value)
        ) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode_slow(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _ONE_MICRO


def _generic(value: Any) -> Any:
    """Any value as a JSON-able element that keeps its type apart (NULL != '' != 0)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if isinstance(value, float):
        return {"real": value.hex()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"blob": bytes(value).hex()}
    if isinstance(value, datetime):
        return _micros(value)
    return {"text": str(value)}


def _json_element(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _canonical_json(value)
        except ValueError:
            return {"raw": value}
    return _generic(value)


def _ts_element(value: Any) -> Any:
    if isinstance(value, str):  # SQLite: UTC text as written by the triggers
        try:
            return _micros(datetime.fromisoformat(value))
        except ValueError:
            return {"raw": value}
    return _generic(value)


def _utf8(value: Any) -> str:
    return str(value.decode("utf-8", "surrogateescape"))


def _utf8_element(value: Any) -> Any:
    """MariaDB text read as its bytes (``CAST(... AS BINARY)``): the same str whatever
    the connection's character set (a latin1 or utf8mb3 connection would turn 4-byte
    characters into '?', so two different texts could read the same)."""
    return _utf8(value) if isinstance(value, (bytes, bytearray)) else _generic(value)


def _json8_element(value: Any) -> Any:
    return _json_element(_utf8(value) if isinstance(value, (bytes, bytearray)) else value)


def _unix_element(value: Any) -> Any:
    """MariaDB ``UNIX_TIMESTAMP(timestamp column)``: seconds as a DECIMAL, independent of
    the session's time_zone; as integer microseconds like every other timestamp."""
    if isinstance(value, Decimal):  # TIMESTAMP(1..6)
        return int(value.scaleb(6))
    if type(value) is int:  # TIMESTAMP: whole seconds
        return value * 1_000_000
    return _generic(value)


_ELEMENT = {"json": _json_element, "ts": _ts_element, "utf8": _utf8_element,
            "json8": _json8_element, "unix": _unix_element}


def _row_encoder(kinds: Sequence[str], positions: Sequence[int]) -> Callable[[Sequence[Any]], bytes]:
    """Encode the values at ``positions`` of a fetched row (kinds by position) as one line."""
    converters = [(p, _ELEMENT.get(kinds[p], _generic)) for p in positions]
    dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

    def encode(row: Sequence[Any]) -> bytes:
        return (dumps([conv(row[p]) for p, conv in converters]) + "\n").encode("ascii")

    return encode


def _entry_digest(entry: dict[str, Any]) -> str:
    body = [
        entry["format_version"], entry["kind"], entry["sealed_at_us"], entry["sealed_by"],
        entry["first_id"], entry["last_id"], entry["row_count"], entry["columns"],
        entry["detail"], entry["rows_digest"], entry["previous_digest"],
    ]
    line = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(line.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- database access


class _Log:
    """The log and seal tables of one connection, with the column list of the log."""

    def __init__(self, connection: Connection, log: Optional[Table] = None) -> None:
        self.connection = connection
        name = connection.dialect.name
        self.pg = name == "postgresql"
        self.my = name in _MYSQL
        self.sqlite = name == "sqlite"
        if not (self.pg or self.my or self.sqlite):
            from .exceptions import SQLAuditUnsupportedDialectError

            raise SQLAuditUnsupportedDialectError(
                f"sqlaudit.integrity supports PostgreSQL, SQLite and MariaDB, not {name}."
            )
        # named: no TEMP table stands in; the schema of the log given (a prune of
        # another schema's log), so its columns and seal table are the ones used
        if log is not None and log.schema:
            schema: str = log.schema
        elif self.my:
            current = log_schema(connection)  # the current database
            if current is None:
                raise SQLAuditError("no database is selected on this MariaDB connection; name "
                                    "the database of sqlaudit_log in the URL before sealing or "
                                    "verifying it.")
            schema = current
        else:
            schema = default_schema(connection) or "main"
        self.schema = schema
        metadata = MetaData(schema=schema)
        self.log = log if log is not None else audit_table(metadata)
        self.seal = seal_table(metadata)
        self.prep = connection.dialect.identifier_preparer
        self.columns, self.kinds = self._reflect()

    def qualified(self, table: Table) -> str:
        return str(self.prep.format_table(table))

    def _reflect(self) -> tuple[list[str], list[str]]:
        conn = self.connection
        if self.pg:
            rows = conn.execute(text(
                "SELECT a.attname, t.typname FROM pg_catalog.pg_attribute AS a "
                "JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid "
                "WHERE a.attrelid = to_regclass(:rel) AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum"), {"rel": self.qualified(audit_table(MetaData(schema=self.schema)))}).all()
            kinds = {"int2": "int", "int4": "int", "int8": "int", "text": "text", "varchar": "text",
                     "bpchar": "text", "bool": "bool", "timestamptz": "ts", "timestamp": "ts",
                     "date": "ts", "json": "json", "jsonb": "json"}
            pairs = [(str(n), kinds.get(str(t), "other")) for n, t in rows]
        elif self.my:
            pairs = [(str(n), _mysql_kind(str(n), str(t))) for n, t in conn.execute(text(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = :schema AND TABLE_NAME = 'sqlaudit_log' "
                "ORDER BY ORDINAL_POSITION"), {"schema": self.schema})]
        else:
            rows = conn.exec_driver_sql('PRAGMA main.table_info("sqlaudit_log")').all()
            pairs = []
            for _cid, name, declared, *_ in rows:
                declared = (declared or "").upper()
                kind = "json" if "JSON" in declared else (
                    "ts" if "DATE" in declared or "TIME" in declared else "raw")
                pairs.append((str(name), kind))
        if not pairs:
            raise SQLAuditError(
                "sqlaudit_log does not exist in this database; create it (metadata.create_all() "
                "or install_audit_triggers()) before sealing or verifying it.")
        names = [n for n, _ in pairs]
        if names[0] != "id":  # id always first: rows are keyed and ordered by it
            pairs.sort(key=lambda p: p[0] != "id")
        return [n for n, _ in pairs], [k for _, k in pairs]

    def expressions(self) -> list[Any]:
        out: list[Any] = []
        for name, kind in zip(self.columns, self.kinds):
            ref = self.prep.quote(name)
            if self.pg and kind == "ts":
                out.append(literal_column(f"(extract(epoch FROM {ref}) * 1000000)::bigint"))
            elif self.pg and kind in ("json", "other"):
                out.append(literal_column(f"{ref}::text"))
            elif kind in ("utf8", "json8"):  # MariaDB: the stored bytes, not the session's charset
                out.append(literal_column(f"CAST({ref} AS BINARY)"))
            elif kind == "unix":
                out.append(literal_column(f"UNIX_TIMESTAMP({ref})"))
            else:
                out.append(literal_column(ref))
        return out

    def rows(self, lower: int, upper: Optional[int], extra: Any = None) -> Iterator[Sequence[Any]]:
        """Log rows with lower < id <= upper (no upper bound when None), in id order."""
        id_col = self.log.c.id
        cond = id_col > lower if upper is None else and_(id_col > lower, id_col <= upper)
        columns = self.expressions()
        if extra is not None:
            columns.append(case((extra, 1), else_=0))
        stmt = select(*columns).select_from(self.log).where(cond).order_by(id_col)
        if self.my:
            yield from self._pages(stmt, lower)
            return
        raw = self.connection.connection.driver_connection if self.sqlite else None
        saved = getattr(raw, "text_factory", None)
        if raw is not None:  # SQLite text that is not UTF-8 (written by anyone) must not raise
            raw.text_factory = _lenient_text
        try:
            result = self.connection.execute(stmt.execution_options(yield_per=_FETCH))
            for partition in result.partitions():
                yield from partition
        finally:
            if raw is not None:
                raw.text_factory = saved

    def _pages(self, stmt: Any, lower: int) -> Iterator[Sequence[Any]]:
        """MariaDB: the rows of ``stmt`` in pages of _FETCH ids, each read whole. A
        streamed (unbuffered) result would forbid any other statement on the
        connection until it is read to the end; sealing appends entries as it reads.
        (Verification reads every page from one snapshot: REPEATABLE READ.)"""
        after = lower
        while True:
            page = self.connection.execute(stmt.where(self.log.c.id > after).limit(_FETCH)).all()
            yield from page
            if len(page) < _FETCH:
                return
            after = int(page[-1][0])

    def entries(self) -> list[dict[str, Any]]:
        s = self.seal.c
        sealed_at: ColumnElement[Any] = literal_column(
            "(extract(epoch FROM sealed_at) * 1000000)::bigint" if self.pg else "sealed_at")
        stmt = select(s.id, s.format_version, s.kind, sealed_at.label("sealed_at"), s.sealed_by,
                      s.first_id, s.last_id, s.row_count, s.columns, s.detail, s.rows_digest,
                      s.previous_digest, s.digest).order_by(s.id)
        entries = []
        raw = self.connection.execute(stmt if self.my else stmt.execution_options(yield_per=_FETCH))
        for row in raw:
            entry = dict(row._mapping)
            stamp = entry.pop("sealed_at")
            entry["sealed_at_us"] = stamp if isinstance(stamp, int) else _ts_element(
                stamp.isoformat() if isinstance(stamp, datetime) else stamp)
            entries.append(entry)
        return entries

    def has_seal_table(self) -> bool:
        if self.pg:
            found = self.connection.execute(text("SELECT to_regclass(:rel)"),
                                            {"rel": self.qualified(self.seal)}).scalar()
            return found is not None
        if self.my:
            return self.connection.execute(text(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = :schema "
                "AND TABLE_NAME = 'sqlaudit_seal'"), {"schema": self.schema}).first() is not None
        return self.connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlaudit_seal'"
        ).first() is not None

    def ensure_seal_table(self) -> None:
        if self.my:
            return self._ensure_mysql_seal_table()
        if self.has_seal_table():
            return
        self.seal.create(self.connection, checkfirst=True)
        dialect = "postgresql" if self.pg else "sqlite"
        values = {"seal_table": self.qualified(self.seal)}
        if self.pg:
            schema = self.prep.quote_schema(self.schema) + "." if self.schema else ""
            values["protect_function"] = schema + self.prep.quote("sqlaudit_seal_protect")
        from .ddl import _AuditDDL  # executes verbatim, '%' escaped for the driver

        for sql in _templates.render(dialect, "protect_seal", **values):
            self.connection.execute(_AuditDDL(sql))

    def _ensure_mysql_seal_table(self) -> None:
        """MariaDB: create the seal table, then its guards. Each DDL statement commits
        on its own there, so a failure in between could leave the table without its
        guards: the guards are checked at every seal and the missing ones created.
        (Both happen only on the first seal or after the guards were dropped.)"""
        if not self.has_seal_table():
            self.seal.create(self.connection, checkfirst=True)
        names = {"no_update_trigger": "sqlaudit_seal_no_update",
                 "no_delete_trigger": "sqlaudit_seal_no_delete"}
        present = self.connection.execute(text(
            "SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = :schema "
            "AND EVENT_OBJECT_TABLE = 'sqlaudit_seal' AND TRIGGER_NAME IN (:a, :b)"),
            {"schema": self.schema, "a": names["no_update_trigger"],
             "b": names["no_delete_trigger"]}).scalar()
        if present == len(names):
            return
        schema = self.prep.quote_schema(self.schema) + "."
        values = {k: schema + self.prep.quote(v) for k, v in names.items()}
        from .ddl import _AuditDDL  # executes verbatim, '%' escaped for the driver

        for sql in _templates.render("mysql", "protect_seal", seal_table=self.qualified(self.seal),
                                     **values):
            self.connection.execute(_AuditDDL(sql))

    def serialise(self) -> None:
        """Serialise sealing and pruning of this log before either asks whether it was
        ever sealed: a first seal must not seal rows an unsealed prune is removing
        (they would be reported as deleted). A transaction-scoped advisory lock on
        PostgreSQL (the seal table may not exist yet to be locked); on MariaDB a
        user-level lock of the session, released once this transaction has ended
        (see :func:`_take_mysql_lock`); SQLite has one writer at a time already (its
        callers hold the write transaction)."""
        if self.pg:
            from ._partitions import take_lock

            # the partition lock first, as every path that takes both does; both
            # keyed by the schema of the log this call works on
            take_lock(self.connection, self.schema)
            (sql,) = _templates.render("postgresql", "seal_lock")
            self.connection.execute(text(sql), {"schema": self.schema})
        elif self.my:
            _take_mysql_lock(self.connection, self.schema)

    def lock(self) -> None:
        """Serialise sealers and pruners (never blocks writers of the log)."""
        if self.pg:
            self.connection.exec_driver_sql(f"LOCK TABLE {self.qualified(self.seal)} IN EXCLUSIVE MODE")
        elif self.sqlite:  # opens the write transaction: SQLite has one writer at a time
            self.connection.exec_driver_sql('DELETE FROM "sqlaudit_seal" WHERE 0')

    def who(self) -> Optional[str]:
        if self.pg:
            return str(self.connection.execute(text("SELECT session_user")).scalar())
        if self.my:
            return str(self.connection.execute(text("SELECT USER()")).scalar())
        actor = _context_actor()
        return actor.user_id if actor is not None else None

    def horizon(self, head: int) -> int:
        """The highest id below which no transaction can still add a log row.

        PostgreSQL: ``s``, the sequence's last value, read first; then the
        transactions holding ROW EXCLUSIVE on ``sqlaudit_log`` (every inserter
        takes it before drawing an id, and keeps it until it ends). With none
        but ours, every id <= s is final. Otherwise only the contiguous run of
        committed ids after ``head`` is safe (an in-flight row is a gap there);
        the rest is sealed by a later call. SQLite: one writer, max(id). MariaDB:
        see :meth:`_mysql_horizon`.
        """
        conn = self.connection
        if self.my:
            return self._mysql_horizon(head)
        if not self.pg:
            return int(conn.execute(select(literal_column("max(id)")).select_from(self.log)).scalar() or 0)
        rel = self.qualified(self.log)
        last = conn.execute(text(
            "SELECT pg_sequence_last_value(CAST(pg_get_serial_sequence(:rel, 'id') AS regclass))"),
            {"rel": rel}).scalar()
        if last is None:
            last = conn.execute(select(literal_column("max(id)")).select_from(self.log)).scalar()
        last = int(last or 0)
        writers = conn.execute(text(
            "SELECT count(*) FROM pg_catalog.pg_locks WHERE relation = CAST(:rel AS regclass) "
            "AND mode = 'RowExclusiveLock' AND pid IS DISTINCT FROM pg_backend_pid()"),
            {"rel": rel}).scalar()
        if not writers:
            return last
        run = conn.execute(text(
            f"SELECT max(id) FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM {rel} "
            f"WHERE id > :head AND id <= :last) AS r WHERE id = :head + n"),
            {"head": head, "last": last}).scalar()
        return int(run) if run is not None else head

    def _mysql_horizon(self, head: int) -> int:
        """MariaDB (READ COMMITTED): ``m``, the highest committed id; then the run of
        consecutive committed ids after ``head``. If it reaches ``m``, every id up to
        ``m`` is final. Otherwise a locking read of the ids between the run and ``m``
        with NOWAIT tells whether a transaction in flight holds one of them (it fails
        on an uncommitted row at once): if none does, the missing ids were rolled
        back and ``m`` is the horizon; if one does, the run's end is (the rest is
        sealed by a later call). Never waits for a writer, never blocks one."""
        conn = self.connection
        top_sql, run_sql, probe_sql = _templates.render("mysql", "seal_horizon",
                                                        log=self.qualified(self.log))
        top = conn.execute(text(top_sql), {"head": head}).scalar()
        if top is None:
            return head
        top = int(top)
        run = conn.execute(text(run_sql), {"head": head, "last": top}).scalar()
        run = head if run is None else int(run)
        if run == top:
            return top
        if conn.execute(text("SELECT @@innodb_rollback_on_timeout")).scalar():
            return run  # a failed probe would roll the whole transaction back there
        try:
            conn.execute(text(probe_sql), {"low": run, "high": top}).scalar()
        except DBAPIError as exc:
            if _mysql_error(exc) not in _LOCK_BUSY:
                raise
            return run
        return top

    def append(self, entry: dict[str, Any], sealed_at: datetime) -> None:
        self.append_many([entry], sealed_at)

    def append_many(self, entries: Sequence[dict[str, Any]], sealed_at: datetime) -> None:
        """Insert ``entries`` in one statement (executemany for more than one)."""
        stamp = sealed_at if self.pg else sealed_at.replace(tzinfo=None)
        rows = [{**{k: v for k, v in e.items() if k != "sealed_at_us"}, "sealed_at": stamp}
                for e in entries]
        if len(rows) == 1:
            self.connection.execute(insert(self.seal).values(**rows[0]))
        elif rows:
            self.connection.execute(insert(self.seal), rows)


_MYSQL = ("mysql", "mariadb")
#: MariaDB's JSON is a LONGTEXT with a json_valid() check: sqlaudit's own JSON columns
#: are known by name (the catalog does not say), a MySQL JSON column by its type.
_JSON_COLUMNS = frozenset(c.name for c in audit_table(MetaData()).columns if isinstance(c.type, JSON))
_MYSQL_TEXT = frozenset(("char", "varchar", "tinytext", "text", "mediumtext", "longtext"))
_MYSQL_INT = frozenset(("tinyint", "smallint", "mediumint", "int", "bigint"))
#: MySQL error numbers of a lock that NOWAIT did not get (MariaDB; MySQL 8).
_LOCK_BUSY = frozenset((1205, 3572))
#: ``Connection.info`` key: (compiled RELEASE_LOCK, its parameters) of the seal lock this
#: MariaDB session holds.
_SEAL_LOCK = "sqlaudit_seal_lock"


def _mysql_kind(name: str, data_type: str) -> str:
    data_type = data_type.lower()
    if data_type == "json" or (name in _JSON_COLUMNS and data_type in _MYSQL_TEXT):
        return "json8"
    if data_type in _MYSQL_TEXT:
        return "utf8"
    if data_type in _MYSQL_INT:
        return "int"
    if data_type in ("datetime", "date"):  # no time zone: read as written
        return "ts"
    if data_type == "timestamp":  # shown in the session's time_zone: read as epoch seconds
        return "unix"
    return "other"


def _refuse_mysql(connection: Connection) -> None:
    """Sealing is built and tested on MariaDB; MySQL differs in what it uses (FOR SHARE
    NOWAIT, CREATE TRIGGER IF NOT EXISTS from 8.0.29, a binary JSON type)."""
    if not getattr(connection.dialect, "is_mariadb", False):
        from .exceptions import SQLAuditUnsupportedDialectError

        raise SQLAuditUnsupportedDialectError(
            "sealing and verifying the audit log are built for MariaDB, not MySQL (untested "
            "there; docs/mariadb.md); a prune of a log never sealed works on both.")


def _mysql_error(exc: DBAPIError) -> Optional[int]:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _take_mysql_lock(connection: Connection, schema: str) -> None:
    """Take the seal lock of ``schema`` for this MariaDB session (seal_lock.sql) unless
    it holds it already; it is released once the transaction has ended: at the next
    BEGIN on this connection, or when the connection goes back to the pool (never
    before the COMMIT, so the next sealer reads this one's entries)."""
    info = connection.info
    if _SEAL_LOCK in info:
        return
    name = "sqlaudit.seal." + hashlib.sha1(schema.encode("utf-8")).hexdigest()  # <= 64 chars
    (sql,) = _templates.render("mysql", "seal_lock")
    got = connection.execute(text(sql), {"name": name}).scalar()
    if got != 1:
        timeout = connection.execute(text("SELECT @@lock_wait_timeout")).scalar()
        raise SQLAuditError(
            f"another seal_audit_log() or prune_audit_log() of database {schema!r} held the "
            f"seal lock for longer than lock_wait_timeout ({timeout} s); nothing was done: "
            "retry when it has finished.")
    (unlock,) = _templates.render("mysql", "seal_unlock")
    info[_SEAL_LOCK] = (connection.dialect, unlock, {"name": name})
    if not event.contains(connection, "begin", _release_at_begin):
        event.listen(connection, "begin", _release_at_begin)
    pool = connection.engine.pool
    if not event.contains(pool, "checkin", _release_at_checkin):
        event.listen(pool, "checkin", _release_at_checkin)


def _release(dbapi_connection: Any, info: dict[Any, Any]) -> None:
    from .hooks import _execute

    held = info.pop(_SEAL_LOCK, None)
    if held is None or dbapi_connection is None:  # a closed session holds no lock
        return
    dialect, sql, params = held
    cursor = dbapi_connection.cursor()
    try:
        _execute(cursor, dialect, sql, params)
        cursor.fetchall()
    finally:
        cursor.close()


def _release_at_begin(connection: Connection) -> None:
    """A transaction begins: the one that took the seal lock has ended."""
    if _SEAL_LOCK in connection.info:
        _release(connection.connection.dbapi_connection, connection.info)


def _release_at_checkin(dbapi_connection: Any, record: Any) -> None:
    """The connection goes back to the pool (after its COMMIT or ROLLBACK)."""
    if _SEAL_LOCK not in record.info:
        return
    try:
        _release(dbapi_connection, record.info)
    except Exception:
        _logger.warning("sqlaudit could not release the MariaDB seal lock; discarding the "
                    "connection (its session's end releases it)", exc_info=True)
        record.invalidate()


def _lenient_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


_T = TypeVar("_T")


def _with_connection(bind: Bind, work: Callable[[Connection], _T],
                     isolation: Optional[str] = None, dialects: Sequence[str] = _MYSQL) -> _T:
    """Run ``work`` on ``bind``'s connection; given an Engine, in a transaction of its own,
    at ``isolation`` on ``dialects`` (READ COMMITTED to seal on MariaDB; REPEATABLE READ to
    verify on PostgreSQL and MariaDB: the entries and the rows from one snapshot)."""
    if isinstance(bind, Session):
        return work(bind.connection())
    if isinstance(bind, Connection):
        return work(bind)
    if isinstance(bind, Engine):
        if isolation is not None and bind.dialect.name in dialects:
            bind = bind.execution_options(isolation_level=isolation)
        with bind.begin() as connection:
            return work(connection)
    raise SQLAuditArgumentTypeError(f"expected an Engine, Connection or Session, got {bind!r}")


def _pinned(connection: Connection, kinds: Sequence[str]) -> Optional[dict[str, str]]:
    """On PostgreSQL, pin the settings that change the text of 'other' columns; return the old ones."""
    if connection.dialect.name != "postgresql" or "other" not in kinds:
        return None
    pins = {"extra_float_digits": "3", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
            "TimeZone": "UTC", "bytea_output": "hex"}
    old = {k: str(connection.execute(text("SELECT current_setting(:k)"), {"k": k}).scalar()) for k in pins}
    for k, v in pins.items():
        connection.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})
    return old


def _unpin(connection: Connection, old: Optional[dict[str, str]]) -> None:
    for k, v in (old or {}).items():
        connection.execute(text("SELECT set_config(:k, :v, true)"), {"k": k, "v": v})


# --------------------------------------------------------------------------- sealing


def _epoch_head(entries: Sequence[dict[str, Any]]) -> int:
    """Last id covered by the seals since the last prune (0 right after a prune or with none)."""
    if not entries or entries[-1]["kind"] != "seal":
        return 0
    return int(entries[-1]["last_id"])


class _Chain:
    """Builds entries onto the chain's current head."""

    def __init__(self, log: _Log, entries: Sequence[dict[str, Any]]) -> None:
        self.log = log
        self.head = entries[-1]["digest"] if entries else GENESIS
        self.sealed_at = datetime.now(timezone.utc)
        self.sealed_by = log.who()
        self.columns = json.dumps(log.columns, separators=(",", ":"))

    def add(self, kind: str, first_id: Optional[int], last_id: Optional[int], count: int,
            rows_digest: str, detail: Optional[str] = None, columns: Optional[str] = None,
            batch: Optional[list[dict[str, Any]]] = None) -> None:
        """Chain one entry; insert it now, or append it to ``batch`` (see :meth:`_Log.append_many`)."""
        entry = {
            "format_version": FORMAT_VERSION, "kind": kind, "sealed_at_us": _micros(self.sealed_at),
            "sealed_by": self.sealed_by, "first_id": first_id, "last_id": last_id,
            "row_count": count, "columns": self.columns if columns is None else columns,
            "detail": detail, "rows_digest": rows_digest, "previous_digest": self.head,
        }
        entry["digest"] = _entry_digest(entry)
        if batch is None:
            self.log.append(entry, self.sealed_at)
        else:
            batch.append(entry)
        self.head = entry["digest"]

    def seal_rows(self, rows: Iterable[Sequence[Any]], first_id: int, last_id: int) -> int:
        """Seal ``rows`` (ids in [first_id, last_id]) as chunks of CHUNK_ROWS; return the count."""
        encode = _row_encoder(self.log.kinds, range(len(self.log.columns)))
        sealed, start, count, digest = 0, first_id, 0, hashlib.sha256()
        for row in rows:
            digest.update(encode(row))
            count += 1
            if count == CHUNK_ROWS:
                self.add("seal", start, int(row[0]), count, digest.hexdigest())
                sealed += count
                start, count, digest = int(row[0]) + 1, 0, hashlib.sha256()
        if count:
            self.add("seal", start, last_id, count, digest.hexdigest())
            sealed += count
        return sealed


def _seal(connection: Connection, log: Optional[_Log] = None) -> tuple[_Log, str]:
    log = log or _Log(connection)
    if log.pg:
        isolation = connection.execute(text("SELECT current_setting('transaction_isolation')")).scalar()
        if isolation != "read committed":
            # An older snapshot could miss rows committed below the horizon.
            raise SQLAuditError(
                f"sealing needs a READ COMMITTED transaction, this one is {isolation}; pass an "
                "Engine, or a Connection with isolation_level='READ COMMITTED'."
            )
    elif log.my:
        _refuse_mysql(connection)
        isolation = connection.get_isolation_level()
        if isolation != "READ COMMITTED":
            # REPEATABLE READ keeps the snapshot of the transaction's first read, which
            # may predate the seal lock: it could miss seal entries and rows committed since.
            raise SQLAuditError(
                f"sealing on MariaDB needs a READ COMMITTED transaction, this one is {isolation}; "
                "pass an Engine, or a Connection with "
                "execution_options(isolation_level='READ COMMITTED')."
            )
    log.serialise()
    log.ensure_seal_table()
    log.lock()
    entries = log.entries()
    head = _epoch_head(entries)
    upper = log.horizon(head)
    chain = _Chain(log, entries)
    if upper > head:
        old = _pinned(connection, log.kinds)
        try:
            chain.seal_rows(log.rows(head, upper), head + 1, upper)
        finally:
            _unpin(connection, old)
    return log, chain.head


def seal_audit_log(bind: Bind) -> str:
    """Seal the committed ``sqlaudit_log`` rows not sealed yet; return the new head digest (hex).

    Appends to ``sqlaudit_seal`` (created on first use, append-only) one entry
    per :data:`CHUNK_ROWS` rows, each chained to the previous entry. Seals only
    up to an id below which no transaction can still be writing (see
    docs/integrity.md), so a row committed late is sealed by the next call,
    never skipped. With nothing new it appends nothing and returns the same
    head. Store the returned digest outside the database and pass it to
    :func:`verify_audit_log` to detect a rebuilt chain. Given an Engine it runs
    (and commits) in its own transaction, READ COMMITTED on MariaDB; given a
    Connection or Session, in theirs, which must be READ COMMITTED on PostgreSQL
    and MariaDB. On MariaDB the first call creates ``sqlaudit_seal``, which
    commits the transaction it runs in (DDL does there).
    """
    return str(_with_connection(bind, lambda conn: _seal(conn)[1], "READ COMMITTED"))


# --------------------------------------------------------------------------- verifying


def _well_formed(entry: dict[str, Any]) -> bool:
    ints = ("row_count", "format_version") + (("first_id", "last_id") if entry["kind"] != "prune" else ())
    texts = ("digest", "previous_digest", "rows_digest", "columns", "kind")
    return (all(type(entry[k]) is int for k in ints)
            and all(isinstance(entry[k], str) for k in texts)
            and type(entry["sealed_at_us"]) is int)


def _verify(connection: Connection, head: Optional[str], log: Optional[_Log] = None,
            rows: bool = True) -> VerifyResult:
    """Verify the chain of entries and, unless ``rows`` is False, the log rows."""
    log = log or _Log(connection)
    if log.my:
        _refuse_mysql(connection)
    result = VerifyResult()
    entries = log.entries() if log.has_seal_table() else []
    result.seals = len(entries)
    problems = result.problems
    # 1. the chain of entries
    previous, expected_first = GENESIS, 1
    epoch: list[dict[str, Any]] = []
    for entry in entries:
        where = f"seal entry {entry['id']}"
        if not _well_formed(entry):  # SQLite's dynamic typing lets anything into a column
            problems.append(Problem("chain", None, None, entry["id"],
                                    f"{where} was altered: its fields do not have their types"))
            previous = entry["digest"]
            continue
        if entry["previous_digest"] != previous:
            problems.append(Problem("chain", entry["first_id"], entry["last_id"], entry["id"],
                                    f"{where} does not follow the entry before it "
                                    "(an entry was removed, inserted or altered)"))
        if _entry_digest(entry) != entry["digest"]:
            problems.append(Problem("chain", entry["first_id"], entry["last_id"], entry["id"],
                                    f"{where} was altered: its digest does not match its content"))
        previous = entry["digest"]
        if entry["kind"] == "prune":
            epoch, expected_first = [], 1
        elif entry["kind"] == "seal":
            if entry["first_id"] != expected_first or entry["last_id"] < entry["first_id"]:
                problems.append(Problem("chain", entry["first_id"], entry["last_id"], entry["id"],
                                        f"{where} covers ids {entry['first_id']}..{entry['last_id']}, "
                                        f"expected to start at {expected_first}"))
            expected_first = int(entry["last_id"]) + 1
            epoch.append(entry)
        else:
            problems.append(Problem("chain", None, None, entry["id"],
                                    f"{where} has unknown kind {entry['kind']!r}"))
    result.head = previous if entries else None
    if head is not None:
        problems.extend(_after_head(entries, head))
    if not rows:
        return result
    # 2. the rows against the seals of the current epoch
    old = _pinned(connection, log.kinds)
    try:
        _check_rows(log, epoch, result)
    finally:
        _unpin(connection, old)
    return result


def _after_head(entries: Sequence[dict[str, Any]], head: str) -> list[Problem]:
    """What the head kept outside the database cannot vouch for: its absence from the chain,
    or a prune recorded after it.

    A ``prune`` entry is written by the table owner's role and its digests are unkeyed, so
    the owner can forge one (INSERT into ``sqlaudit_seal`` is allowed) and have the next seal
    start a fresh epoch over tampered rows. Only a head kept after a prune vouches for it.
    """
    position = next((i for i, e in enumerate(entries) if e["digest"] == head), None)
    if position is None:
        return [Problem("head_mismatch", None, None, None,
                        f"the chain does not contain the head {head!r} kept outside the "
                        "database: the seal table was rebuilt or truncated")]
    found = []
    for entry in entries[position + 1:]:
        if entry["kind"] != "prune":
            continue
        when = _EPOCH + timedelta(microseconds=int(entry["sealed_at_us"]))
        found.append(Problem(
            "pruned_after_head", entry["first_id"], entry["last_id"], entry["id"],
            f"seal entry {entry['id']} records a prune of {entry['row_count']} log rows "
            f"(ids {entry['first_id']}..{entry['last_id']}) by {entry['sealed_by']!r} at "
            f"{when.isoformat()}, after the head kept outside the database: that head cannot "
            "vouch for what a prune removed and re-sealed, and anyone who can write to "
            "sqlaudit_seal can forge one. If this prune is yours, verify with the head "
            "seal_audit_log() returned after it (keep a new head after every prune); if not, "
            "the log was tampered with."))
    return found


_Encoder = Callable[[Sequence[Any]], bytes]


def _entry_encoder(log: _Log, encoders: dict[str, _Encoder], columns_json: str, entry_id: int,
                   problems: list[Problem]) -> Optional[_Encoder]:
    """The row encoder for an entry's column list (cached); None, reported, if the log lacks one."""
    if columns_json not in encoders:
        try:
            names = json.loads(columns_json)
            positions = [log.columns.index(n) for n in names]
        except ValueError:
            problems.append(Problem("altered", None, None, entry_id,
                                    f"seal entry {entry_id} names columns {columns_json} that "
                                    "sqlaudit_log no longer has all of"))
            return None
        encoders[columns_json] = _row_encoder(log.kinds, positions)
    return encoders[columns_json]


def _interval_problem(entry: dict[str, Any], count: int, digest: str) -> Optional[Problem]:
    """What a seal entry's interval holding ``count`` rows of ``digest`` is, if not what was sealed."""
    first, last, expected = int(entry["first_id"]), int(entry["last_id"]), int(entry["row_count"])
    if count == expected and digest == entry["rows_digest"]:
        return None
    if count < expected:
        kind, what = "deleted", f"{expected - count} of its {expected} rows are missing"
    elif count > expected:
        kind, what = "inserted", f"it holds {count - expected} rows more than the {expected} sealed"
    else:
        kind, what = "altered", "its rows differ from what was sealed"
    return Problem(kind, first, last, entry["id"],
                   f"log ids {first}..{last} (seal entry {entry['id']}): {what}")


def _stray_problem(stray: Sequence[int]) -> Problem:
    return Problem("inserted", min(stray), max(stray), None,
                   f"{len(stray)} log rows with ids {min(stray)}..{max(stray)} lie "
                   "below every sealed range: inserted out of order")


def _check_rows(log: _Log, epoch: Sequence[dict[str, Any]], result: VerifyResult) -> None:
    encoders: dict[str, _Encoder] = {}
    problems = result.problems

    def encoder(columns_json: str, entry_id: int) -> Optional[_Encoder]:
        return _entry_encoder(log, encoders, columns_json, entry_id, problems)

    rows = log.rows(-(2**63), None)
    pending: Optional[Sequence[Any]] = next(rows, None)
    stray: list[int] = []
    for entry in epoch:
        first, last = int(entry["first_id"]), int(entry["last_id"])
        while pending is not None and int(pending[0]) < first:  # below every range of this epoch
            stray.append(int(pending[0]))
            pending = next(rows, None)
        encode = encoder(entry["columns"], entry["id"])
        digest, count = hashlib.sha256(), 0
        while pending is not None and int(pending[0]) <= last:
            if encode is not None:
                digest.update(encode(pending))
            count += 1
            pending = next(rows, None)
        result.sealed_rows += count
        problem = None if encode is None else _interval_problem(entry, count, digest.hexdigest())
        if problem is not None:
            problems.append(problem)
    if stray:
        problems.append(_stray_problem(stray))
    while pending is not None:
        result.unsealed_rows += 1
        pending = next(rows, None)


def verify_audit_log(bind: Bind, *, head: Optional[str] = None) -> VerifyResult:
    """Recompute the seal chain and the log rows' digests; report, never raise, tampering.

    ``result.ok`` is True only when every sealed range still holds exactly the
    rows that were sealed, every entry of the chain is intact and linked, and
    (when given) ``head`` - a digest returned by :func:`seal_audit_log` and kept
    outside the database - is in the chain. ``result.problems`` lists what was
    found, in id order; rows written after the last seal are counted in
    ``result.unsealed_rows``, not reported. Given an Engine on PostgreSQL or
    MariaDB it reads in one REPEATABLE READ transaction: a prune committed while it
    runs is seen by none of its reads (given a Connection, use that level too).
    """
    if head is not None and not isinstance(head, str):
        raise SQLAuditArgumentTypeError("head must be the hex digest str returned by "
                                        f"seal_audit_log(), got {head!r}")
    return _with_connection(bind, lambda conn: _verify(conn, head), "REPEATABLE READ",
                            ("postgresql", *_MYSQL))


# --------------------------------------------------------------------------- pruning


def _refusal(problem: Problem) -> SQLAuditIntegrityError:
    return SQLAuditIntegrityError(
        "refusing to prune: the audit log fails verification "
        f"({problem.message}); investigate with sqlaudit.integrity.verify_audit_log() "
        "first, pruning now would re-seal over the tampering."
    )


def prune_sealed(connection: Connection, log_table: Table, where: Any,
                 delete: Callable[[Any], int], detail: dict[str, Any]) -> int:
    """The body of :func:`sqlaudit.ddl.prune_audit_log` (guard already lifted).

    Seals what can be sealed, verifies the chain of entries and the rows of the
    current epoch's seal entries whose interval holds a row to remove (the
    *touched* entries), and refuses (:class:`SQLAuditIntegrityError`) if they
    fail (pruning would re-seal over the tampering). Then removes the matching
    rows among the sealed ones through ``delete(condition)``, records them as
    one ``prune`` entry (id range, count, digest, who, when) and starts a new
    epoch: every untouched entry is carried over (same rows digest and count,
    its rows not read, so tampering in them is still reported by
    :func:`verify_audit_log`), every touched one is re-sealed from its
    remaining rows, or left out when none remains. Rows not sealable yet
    (written by transactions still in flight) are kept until the next prune.
    A log that was never sealed (no ``sqlaudit_seal``) is pruned by ``delete``
    alone: nothing to verify, nothing recorded.
    """
    log = _Log(connection, log_table)
    log.serialise()  # a first seal running now either finishes before this check or waits
    if not log.has_seal_table():  # never sealed: nothing to verify or record, just forget
        return delete(where)
    log, _ = _seal(connection, log)
    checked = _verify(connection, None, log, rows=False)  # the chain of entries only
    if not checked.ok:
        raise _refusal(checked.problems[0])
    entries = log.entries()
    head = _epoch_head(entries)
    if head == 0:
        return 0
    prunes = [i for i, e in enumerate(entries) if e["kind"] == "prune"]
    epoch = entries[prunes[-1] + 1:] if prunes else entries  # seal entries, contiguous from id 1
    id_col = log_table.c.id
    doomed = [int(i) for i in connection.execute(
        select(id_col).where(and_(where, id_col <= head)).order_by(id_col)).scalars()]
    if not doomed:
        return 0
    stray = [i for i in doomed if i < int(epoch[0]["first_id"])]
    if stray:  # rows below every sealed range: verification reports them as inserted
        raise _refusal(_stray_problem(stray))
    touched = {k for k, e in enumerate(epoch) if e["format_version"] != FORMAT_VERSION}
    k = 0
    for i in doomed:
        while int(epoch[k]["last_id"]) < i:
            k += 1
        touched.add(k)
    runs: list[list[int]] = []  # consecutive touched entries, read with one query each
    for k in sorted(touched):
        if runs and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    full = _row_encoder(log.kinds, range(len(log.columns)))
    columns = json.dumps(log.columns, separators=(",", ":"))
    encoders: dict[str, _Encoder] = {}
    problems: list[Problem] = []
    resealed: dict[int, tuple[int, str]] = {}  # touched entry -> (rows kept, their digest)
    removed, count, low, high = hashlib.sha256(), 0, None, None
    old = _pinned(connection, log.kinds)
    try:
        for run in runs:
            rows = log.rows(int(epoch[run[0]]["first_id"]) - 1, int(epoch[run[-1]]["last_id"]),
                            extra=where)
            pending = next(rows, None)
            for k in run:
                entry = epoch[k]
                encode = _entry_encoder(log, encoders, entry["columns"], entry["id"], problems)
                same = entry["columns"] == columns
                check, kept, seen, kept_count = hashlib.sha256(), hashlib.sha256(), 0, 0
                while pending is not None and int(pending[0]) <= int(entry["last_id"]):
                    line = full(pending)
                    if encode is not None:
                        check.update(line if same else encode(pending))
                    seen += 1
                    if pending[-1]:
                        removed.update(line)
                        count += 1
                        low = int(pending[0]) if low is None else low
                        high = int(pending[0])
                    else:
                        kept.update(line)
                        kept_count += 1
                    pending = next(rows, None)
                problem = None if encode is None else _interval_problem(entry, seen, check.hexdigest())
                if problem is not None:
                    problems.append(problem)
                resealed[k] = (kept_count, kept.hexdigest())
        if problems:
            raise _refusal(problems[0])
        if not count:
            return 0
        deleted = delete(and_(where, id_col <= head))
        if deleted != count:
            raise SQLAuditIntegrityError(
                f"prune removed {deleted} rows where {count} were expected; nothing was pruned "
                "(the log changed while pruning; retry)."
            )
        chain = _Chain(log, entries)
        chain.add("prune", low, high, count, removed.hexdigest(),
                  json.dumps(detail, sort_keys=True, separators=(",", ":")))
        # The new epoch of the chain covers ids 1..last without gaps: each entry keeps its
        # upper bound and starts after the entry before it (so it also covers the intervals
        # of touched entries left out before it, which no longer hold any row); the last
        # one ends at `last`. SQLite reuses the id of a deleted last row (sqlaudit_log has
        # no AUTOINCREMENT), so there the new epoch ends at the last remaining row, not at
        # the old head.
        last = head if not log.sqlite else int(connection.execute(
            select(literal_column("max(id)")).select_from(log.log).where(log.log.c.id <= head)
        ).scalar() or 0)
        plan: list[tuple[int, int, str, Optional[str]]] = []  # (last_id, row_count, digest, columns)
        for k, entry in enumerate(epoch):
            if k in resealed:
                kept_count, digest = resealed[k]
                if kept_count:
                    plan.append((int(entry["last_id"]), kept_count, digest, None))
            else:  # untouched: carried over without reading its rows
                plan.append((int(entry["last_id"]), int(entry["row_count"]), entry["rows_digest"],
                             entry["columns"]))
        if not plan and not log.sqlite:
            # Every sealed row is gone. An empty entry up to the old head keeps those ids
            # sealed (as holding nothing), so a row inserted later with one of them is reported
            # as inserted instead of opening the next epoch. (SQLite gives the ids again.)
            plan.append((head, 0, hashlib.sha256().hexdigest(), None))
        batch: list[dict[str, Any]] = []
        start = 1
        for j, (end, rows_count, digest, entry_columns) in enumerate(plan):
            if j == len(plan) - 1:
                end = max(last, start)
            chain.add("seal", start, end, rows_count, digest, columns=entry_columns, batch=batch)
            start = end + 1
            if len(batch) >= _FETCH:
                log.append_many(batch, chain.sealed_at)
                batch.clear()
        log.append_many(batch, chain.sealed_at)
    finally:
        _unpin(connection, old)
    return count


# --------------------------------------------------------------------------- history gaps


@dataclass(frozen=True)
class HistoryGap:
    """An insert recorded for a row whose previous record says it still existed: the
    row was removed without a recorded delete in between.

    On MariaDB that is what a foreign-key cascade and TRUNCATE do (they fire no
    trigger). On SQLite that is what ``INSERT OR REPLACE``, ``UPDATE OR REPLACE`` and
    ``ON CONFLICT REPLACE`` columns do on a connection without
    ``PRAGMA recursive_triggers = ON`` (SQLite fires no delete trigger for the
    row they replace); on PostgreSQL a delete made with the triggers switched off.
    ``previous_id`` is the last record of the row before ``insert_id``.
    """

    table_schema: Optional[str]
    table_name: str
    resource_id: str
    previous_id: int
    insert_id: int


_GAPS = """
SELECT g.table_schema, g.table_name, g.resource_id, g.previous_id, g.id
FROM (
    SELECT l.id, l.table_schema, l.table_name, l.resource_id, l.operation,
           LAG(l.id) OVER w AS previous_id, LAG(l.operation) OVER w AS previous_operation
    FROM {log} AS l
    WHERE l.resource_id IS NOT NULL
    WINDOW w AS (PARTITION BY l.table_schema, l.table_name, l.resource_id ORDER BY l.id)
) AS g
WHERE g.operation = 'insert' AND g.previous_operation IN ('insert', 'update')
  AND NOT EXISTS (
    SELECT 1 FROM {log} AS t
    WHERE t.operation = 'truncate' AND t.table_name = g.table_name
      AND t.table_schema IS NOT DISTINCT FROM g.table_schema
      AND t.id > g.previous_id AND t.id < g.id)
ORDER BY g.id
"""


_MISSING = """
SELECT h.resource_id, h.id
FROM (
    SELECT l.id, l.resource_id, l.operation,
           ROW_NUMBER() OVER (PARTITION BY l.resource_id ORDER BY l.id DESC) AS latest
    FROM {log} AS l
    WHERE l.table_name = :table AND {schema_condition} AND l.resource_id IS NOT NULL
      AND l.id > COALESCE((SELECT max(t.id) FROM {log} AS t WHERE t.operation = 'truncate'
                           AND t.table_name = :table AND {schema_condition_t}), 0)
) AS h
WHERE h.latest = 1 AND h.operation <> 'delete'
  AND NOT EXISTS (SELECT 1 FROM {table} AS o WHERE {key} = h.resource_id)
ORDER BY h.id
"""


def find_history_gaps(bind: Bind, *models: Any) -> list[HistoryGap]:
    """Rows that were removed without a recorded delete (see :class:`HistoryGap`).

    Finds every row inserted again while its history says it still existed,
    and, for the given tracked ``models``, every row its history says exists
    that the table no longer has (``insert_id`` is then the row's last record,
    ``previous_id`` the same). Reads the whole log (a sort by row); no cost on
    the write path. A gap is not tampering with recorded history: it is a change
    the triggers could not see, which this makes visible.
    """
    from sqlalchemy import MetaData as _MetaData

    from .dialects import rendering_dialect
    from .spec import spec_for

    def work(connection: Connection) -> list[HistoryGap]:
        prep = connection.dialect.identifier_preparer
        sqlite = connection.dialect.name == "sqlite"
        my = connection.dialect.name in _MYSQL
        schema = (log_schema(connection) if my else default_schema(connection)) or "main"
        log = f"{prep.quote_schema(schema)}.{prep.quote('sqlaudit_log')}"
        sql = _GAPS.format(log=log)
        if sqlite or my:
            sql = sql.replace("IS NOT DISTINCT FROM", "IS" if sqlite else "<=>")
        rows = connection.execute(text(sql)).all()
        gaps = [HistoryGap(r[0], r[1], str(r[2]), int(r[3]), int(r[4])) for r in rows]
        for model in models:
            spec = spec_for(model)
            dialect = rendering_dialect(connection.dialect.name)
            if sqlite:
                from .dialects.sqlite import key_expression as key_of
            elif my:
                from .dialects.mysql import key_expression as key_of
            else:
                from .dialects.postgresql import _key as key_of
            table = str(prep.format_table(spec.table))
            condition = "l.table_schema IS NULL" if spec.schema is None else "l.table_schema = :schema"
            missing = connection.execute(text(_MISSING.format(
                log=log, table=table, key=key_of(spec, "o", dialect),
                schema_condition=condition, schema_condition_t=condition.replace("l.", "t."))),
                {"table": spec.name, **({"schema": spec.schema} if spec.schema else {})}).all()
            gaps += [HistoryGap(spec.schema, spec.name, str(r[0]), int(r[1]), int(r[1]))
                     for r in missing]
        return gaps

    return _with_connection(bind, work)
