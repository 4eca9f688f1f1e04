"""Past states: :func:`get_resource_state` and :func:`get_table_state`.

Re-exported by :mod:`sqlaudit.retrieval`, their public home.

A state is rebuilt backwards from what is there now: the live row (or, for a
row deleted since, the snapshot its delete recorded) with every change made
after ``at`` undone, newest first. So rows that existed before auditing
started have a past too, as long as the log covers the time since ``at``.
If the table was truncated after ``at`` (a TRUNCATE records no rows), the
state is rebuilt forwards instead, from the changes recorded up to ``at``.

One query streams the live rows (serialised exactly as the triggers serialise
them, so both sides decode alike) merged with the audit rows after ``at``,
sorted by resource: memory stays constant whatever the table's size.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any, Iterator, Optional, Union

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import retrieval as _r
from .dialects import is_mysql, rendering_dialect
from .exceptions import SQLAuditArgumentError, SQLAuditArgumentTypeError
from .schema import audit_table, exact_collation, rows_of_table
from .spec import TableSpec, mapper_of, spec_for

__all__ = ["get_resource_state", "get_table_state"]

_LIVE = "sqlaudit_live"
_YIELD = 1000


def _at(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise SQLAuditArgumentTypeError("at must be a datetime (naive: in the configured time "
                                        f"zone), got {value!r}")
    bound = _r._utc_bound(value, "at")
    assert bound is not None
    return bound


def _connection(reader: Union[Session, Connection], model: Any, spec: TableSpec) -> Connection:
    if isinstance(reader, Session):
        mapper = mapper_of(model)
        return reader.connection(bind_arguments={"mapper": mapper, "clause": spec.table})
    if isinstance(reader, Connection):
        return reader
    raise SQLAuditArgumentTypeError(f"session must be a Session or Connection, got {reader!r}")


def key_values(spec: TableSpec, resource_id: Any) -> list[Any]:
    """The Python values of the key columns for ``resource_id`` (as callers pass it to
    ``get_resource_changes``: a scalar, or a tuple for a composite key)."""
    parts = list(resource_id) if isinstance(resource_id, (tuple, list)) else [resource_id]
    if len(parts) != len(spec.key_columns):
        raise SQLAuditArgumentTypeError(f"{spec.name} has a key of {len(spec.key_columns)} column(s) "
                        f"({', '.join(c.name for c in spec.key_columns)}); got {resource_id!r}")
    values = []
    for part, col in zip(parts, spec.key_columns):
        if isinstance(part, bool) or not isinstance(part, (str, int, uuid.UUID)):
            raise SQLAuditArgumentTypeError(f"resource ids must be str, int or UUID, got {part!r}")
        try:
            kind = col.type.python_type
        except NotImplementedError:
            kind = None
        if kind is not None and not isinstance(part, kind):
            try:
                part = kind(part) if kind is not uuid.UUID else uuid.UUID(str(part))
            except (TypeError, ValueError) as exc:
                raise SQLAuditArgumentError(f"resource id {part!r} is not a valid {kind.__name__} for "
                                 f"column {col.name!r} of {spec.name}") from exc
        values.append(part)
    return values


def key_condition(table: Any, spec: TableSpec, values: list[Any]) -> Any:
    """``table``'s key columns equal ``values`` (bound with the columns' types, so the
    primary key index serves it)."""
    return and_(*[table.c[c.name] == bindparam(None, v, type_=c.type)
                  for c, v in zip(spec.key_columns, values)])


def _resource_text(spec: TableSpec, values: list[Any], dialect: Any) -> Any:
    keys = _r._resource_keys([tuple(values) if len(values) > 1 else values[0]], spec, dialect)
    return keys[0]


class _Plan:
    """The statement and decoder of one state query."""

    def __init__(self, conn: Connection, model: Any, spec: TableSpec) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.mysql = is_mysql(conn.dialect.name)
        self.spec = spec
        self.attrs = _r._attributes(model)
        self.log = audit_table(spec.table.metadata)
        self.columns = [c for c in spec.columns]
        self.names = [c.name for c in self.columns]
        self.processors = ({} if self.pg else _r._mysql_processors(spec.table) if self.mysql
                           else _r._sqlite_processors(spec.table, conn.dialect))

    # -------------------------------------------------------------- SQL

    def _values(self, data: Any, live: Any = None) -> list[Any]:
        """PostgreSQL: the tracked columns' values, typed: the live row's own columns, or
        the members of the jsonb ``data`` converted in SQL (NULL ``data``: NULLs)."""
        dialect = rendering_dialect("postgresql")
        if live is not None:
            return [live.c[c.name].label(f"v_{i}") for i, c in enumerate(self.columns)]
        if data is None:
            return [cast(null(), c.type).label(f"v_{i}") for i, c in enumerate(self.columns)]
        return [_r._typed_value(data, c, _r._name_literal(c.name, dialect), dialect).label(f"v_{i}")
                for i, c in enumerate(self.columns)]

    def _live(self, key: Optional[list[Any]]) -> Any:
        from .dialects import mysql as mysql_sql
        from .dialects import postgresql as pg_sql
        from .dialects import sqlite as sqlite_sql

        dialect = rendering_dialect(self.conn.dialect.name)
        live = self.spec.table.alias(_LIVE)
        if self.pg:  # the row's columns themselves, no JSON (raw NULL: every column present)
            key_sql = pg_sql._key(self.spec, _LIVE, dialect)
            payload = [cast(null(), Text).label("raw"), *self._values(None, live)]
        elif self.mysql:  # the JSON MariaDB's triggers would store, decoded like the log's
            key_sql = mysql_sql.key_expression(self.spec, _LIVE, dialect)
            payload = [literal_column(mysql_sql._object(self.spec, _LIVE, dialect),
                                      Text).label("raw")]
        else:  # the JSON the triggers would store, decoded like the log's
            key_sql = sqlite_sql.key_expression(self.spec, _LIVE, dialect)
            payload = [literal_column(sqlite_sql._full_object(self.spec.columns, _LIVE, dialect),
                                      Text).label("raw")]
        stmt = select(
            literal_column(key_sql, Text).label("rid"),
            literal(0, Integer).label("kind"),
            cast(null(), DateTime(timezone=True)).label("changed_at"),
            cast(null(), BigInteger).label("id"),
            literal("live", String).label("op"),
            *payload,
        ).select_from(live)
        if key is not None:
            stmt = stmt.where(key_condition(live, self.spec, key))
        return stmt

    def _bound(self, at: datetime) -> Any:
        return bindparam(None, at if self.pg else at.replace(tzinfo=None),
                         type_=self.log.c.changed_at.type)

    def _history(self, at: datetime, rid: Any, after: bool) -> Any:
        log = self.log
        bound = self._bound(at)
        when = log.c.changed_at > bound if after else log.c.changed_at <= bound
        data = log.c.old_data if after else log.c.new_data
        payload = [cast(data, Text).label("raw")] + (self._values(data) if self.pg else [])
        stmt = select(
            log.c.resource_id.label("rid"),
            literal(1, Integer).label("kind"),
            log.c.changed_at,
            log.c.id,
            log.c.operation.label("op"),
            *payload,
        ).where(rows_of_table(log, self.spec.name, self.spec.schema), when,
                log.c.operation != "truncate")
        if rid is not None:
            stmt = stmt.where(log.c.resource_id == rid)
        return stmt

    def _truncates(self, at: datetime) -> Any:
        log = self.log
        payload = [cast(null(), Text).label("raw")] + (self._values(None) if self.pg else [])
        # truncate rows have no resource: the resource index finds them by table and NULL
        return select(literal("", Text).label("rid"), literal(-1, Integer).label("kind"),
                      log.c.changed_at, log.c.id, log.c.operation.label("op"), *payload).where(
            rows_of_table(log, self.spec.name, self.spec.schema), log.c.resource_id.is_(None),
            log.c.operation == "truncate", log.c.changed_at > self._bound(at))

    def statement(self, at: datetime, key: Optional[list[Any]], backward: bool) -> Any:
        """Rows (rid, kind, changed_at, id, op, raw[, v_0...]) sorted by resource, then the
        live row (kind 0) before the audit rows (kind 1), newest first when ``backward``."""
        rid = None if key is None else _resource_text(self.spec, key, self.conn.dialect)
        if isinstance(rid, tuple):  # composite: compare with the stored JSON array text
            array = (lambda *p: cast(func.json_build_array(*p), Text)) if self.pg else func.json_array
            rid = array(*[bindparam(None, v, type_=Text) for v in rid])
        elif rid is not None:
            rid = bindparam(None, rid, type_=Text)
        if backward:
            # a TRUNCATE after ``at`` comes first (kind -1): the caller then rebuilds forwards
            union = union_all(self._truncates(at), self._live(key),
                              self._history(at, rid, True)).subquery("u")
        else:
            union = self._history(at, rid, False).subquery("u")
        # byte-wise, so that rows of one resource are adjacent whatever the collations
        rid_order = (union.c.rid.collate("C") if self.pg
                     else union.c.rid.collate(exact_collation(self.conn.dialect)) if self.mysql
                     else union.c.rid)
        time_order = union.c.changed_at.desc() if backward else union.c.changed_at.asc()
        id_order = union.c.id.desc() if backward else union.c.id.asc()
        return select(*union.c).order_by(rid_order, union.c.kind, time_order, id_order)

    # -------------------------------------------------------------- decoding

    def values(self, row: Any) -> dict[str, Any]:
        """Column name -> value of ``row``: every column of a live row (PostgreSQL), else
        the members its JSON object has."""
        raw = row[5]
        names = self.names
        if self.pg:
            if raw is None:
                return dict(zip(names, row[6:]))
            doc = _r._doc(raw)
            return {name: row[6 + i] for i, name in enumerate(names) if name in doc}
        doc = _r._doc(raw)
        processors = self.processors
        return {name: _r._sqlite_value(doc[name], processors.get(name))
                for name in names if name in doc}

    def named(self, state: dict[str, Any]) -> dict[str, Any]:
        return {self.attrs.get(name, name): value for name, value in state.items()}


_MISSING = object()


def _states(plan: _Plan, rows: Any, backward: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource_id, column state) of every resource that existed at ``at``."""
    current: Any = _MISSING
    state: Optional[dict[str, Any]] = None
    for row in rows:
        rid, kind, op = row[0], row[1], row[4]
        if rid != current:
            if current is not _MISSING and state is not None:
                yield current, state
            current, state = rid, None
        if backward:
            if kind == 0:  # the live row
                state = plan.values(row)
            elif op == "update":  # undo: the old values of the changed fields
                if state is None:  # a row the log saw deleted without a delete record
                    state = {}
                state.update(plan.values(row))
            elif op == "insert":  # before its insert the row did not exist
                state = None
            elif op == "delete":  # before its delete the row was its snapshot
                state = plan.values(row)
        else:
            if op == "insert":
                state = plan.values(row)
            elif op == "update":
                state = {**(state or {}), **plan.values(row)}
            elif op == "delete":
                state = None
    if current is not _MISSING and state is not None:
        yield current, state


def get_resource_state(model_class: type, resource_id: Any, *, at: datetime,
                       session: Optional[Union[Session, Connection]] = None
                       ) -> Optional[dict[str, Any]]:
    """The tracked attributes of one row as they were at ``at``; None if the row did
    not exist then.

    ``at`` is a datetime (naive: in the configured time zone). ``resource_id``
    is the key as ``get_resource_changes`` takes it (a tuple for a composite key).
    Works for rows older than auditing (rebuilt from the live row), rows deleted
    since (from their delete snapshot) and rows whose key changed (each key has
    its own history). The dict holds the values the log knows: see
    :func:`get_table_state` for what is unknown and how it shows.
    """
    _r._check_sync_session(session, "get_resource_state")
    spec = spec_for(model_class)
    bound = _at(at)
    key = key_values(spec, resource_id)
    with _r._session_scope(session) as reader:
        conn = _connection(reader, model_class, spec)
        plan = _Plan(conn, model_class, spec)
        options = _r._log_options(conn, plan.log)
        backward = True
        rows = conn.execute(plan.statement(bound, key, True), execution_options=options).all()
        if rows and rows[0][1] == -1:
            backward = False
            rows = conn.execute(plan.statement(bound, key, False), execution_options=options).all()
        for _, state in _states(plan, rows, backward):
            return plan.named(state)
    return None


def get_table_state(model_class: type, *, at: datetime,
                    session: Optional[Union[Session, Connection]] = None
                    ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of ``model_class``'s table as it was at ``at``: an iterator of
    ``(resource_id, state)``, streamed (constant memory, whatever the size).

    ``resource_id`` is the same text as ``SQLAuditRecord.resource_id``; ``state``
    maps each tracked attribute to its value then. Rows come in resource id
    order (byte-wise). Keep the session open while iterating.

    What is unknown, and how it shows:

    * a field added to tracking after ``at`` has no recorded changes from before
      it was tracked, so its value then is the oldest value the log knows for it
      (the live value if it never changed since);
    * a row removed by a TRUNCATE after ``at`` has no delete snapshot, so the
      state is then rebuilt forwards from the changes recorded up to ``at``: rows
      that no record mentions before ``at`` (older than auditing) are missing, and
      rows known only from updates hold only the fields those updates changed.
    """
    _r._check_sync_session(session, "get_table_state")
    spec = spec_for(model_class)
    bound = _at(at)
    with _r._session_scope(session) as reader:
        conn = _connection(reader, model_class, spec)
        plan = _Plan(conn, model_class, spec)
        options = {**_r._log_options(conn, plan.log), "yield_per": _YIELD}
        backward = True
        result = conn.execute(plan.statement(bound, None, True), execution_options=options)
        try:
            first = result.fetchmany(1)
            if first and first[0][1] == -1:
                result.close()
                backward, first = False, []
                result = conn.execute(plan.statement(bound, None, False), execution_options=options)
            for rid, state in _states(plan, itertools.chain(first, result), backward):
                yield rid, plan.named(state)
        finally:
            result.close()
