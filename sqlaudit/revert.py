"""Undo: :func:`revert_transaction` and :func:`restore_resource`.

Both write through the caller's session, in the caller's transaction, inside
an ``audit_context`` whose reason says what is being undone (merged with the
caller's context, user included), so the undo is itself audited and can be
undone in turn. Conflicts are found before anything is written; the writes
run in a savepoint, so a refused undo leaves the session usable and unchanged.

>>> from sqlaudit.revert import revert_transaction
>>> result = revert_transaction(session, 4711)      # doctest: +SKIP
>>> session.commit()                                # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional, Union

import contextlib

from sqlalchemy import (BigInteger, Table, bindparam, delete, exists, insert, select, text,
                        update)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import _history, retrieval as _r
from ._state import key_condition, key_values
from .context import audit_context
from .exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError, SQLAuditRevertConflict,
                         SQLAuditRevertError)
from .schema import rows_of_table
from .spec import TableSpec, model_for, spec_for

__all__ = ["RevertResult", "restore_resource", "revert_transaction"]


@dataclass(frozen=True)
class RevertResult:
    """What an undo did: the records of the changes it undid and of those it left."""

    reverted: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)


@dataclass
class _Change:
    """One audit row of the transaction being reverted, with its field records."""

    row: Any
    model: Any
    spec: TableSpec
    records: list[Any]

    @property
    def key(self) -> tuple[Any, Any, str]:
        return (self.row.table_schema, self.row.table_name, self.row.resource_id)

    def columns(self) -> dict[str, Any]:
        """Column name -> (old, new) of the changed fields."""
        by_attr = {attr: col for col, attr in _r._attributes(self.model).items()}
        return {by_attr.get(r.field_name, r.field_name): (r.old_value, r.new_value)
                for r in self.records if r.field_name is not None}


def _conn(session: Union[Session, Connection]) -> Connection:
    if isinstance(session, Session):
        session.flush()
        return session.connection()
    if isinstance(session, Connection):
        return session
    raise SQLAuditArgumentTypeError(f"session must be a Session or Connection, got {session!r}")


def _savepoint(session: Union[Session, Connection], conn: Connection) -> Any:
    """PostgreSQL: a savepoint, so a failing write (a constraint) leaves the caller's
    transaction as it was. Not on SQLite, where pysqlite opens no transaction before
    a SAVEPOINT, whose RELEASE would then commit; every write is checked first there."""
    if conn.dialect.name == "sqlite":
        return contextlib.nullcontext()
    return session.begin_nested()


#: The fixed offsets MariaDB takes as a session time_zone (MySQL 8 takes -13:59 to +14:00).
_ZONE_MINUTES = (-(12 * 60 + 59), 13 * 60)


def _timestamp_names(spec: TableSpec) -> set[str]:
    """The tracked TIMESTAMP columns of ``spec`` whose values the triggers record in UTC
    (sqlaudit.dialects.mysql.is_timestamp)."""
    from .dialects.mysql import is_timestamp

    return {c.name for c in spec.columns if is_timestamp(c)}


@contextlib.contextmanager
def _timestamp_zone(conn: Connection, specs: list[TableSpec]) -> Any:
    """MariaDB / MySQL: while a revert reads and writes tables with tracked TIMESTAMP
    columns, whose recorded values are UTC (see sqlaudit.dialects.mysql), the session's
    ``time_zone`` is the fixed offset its own zone has now. Yields that offset (a
    timedelta; None when nothing is changed): a recorded value plus the offset names
    the same instant there (a fixed offset repeats no hour), and NOW() and
    CURRENT_TIMESTAMP still give the session's wall clock, so a DATETIME ... ON UPDATE
    CURRENT_TIMESTAMP column the revert touches is stamped as by any other write. An
    offset MariaDB does not take (beyond +13:00) falls back to '+00:00'. The session's
    own zone is put back afterwards, also on error."""
    from .dialects import is_mysql

    if not is_mysql(conn.dialect.name) or not any(map(_timestamp_names, specs)):
        yield None
        return
    previous, minutes = conn.exec_driver_sql(
        "SELECT @@session.time_zone, TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), NOW())").one()
    minutes = int(minutes)
    if not _ZONE_MINUTES[0] <= minutes <= _ZONE_MINUTES[1]:
        minutes = 0
    sign = "-" if minutes < 0 else "+"
    conn.exec_driver_sql(f"SET time_zone = '{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}'")
    try:
        yield timedelta(minutes=minutes)
    finally:
        conn.execute(text("SET time_zone = :zone"), {"zone": previous})


def _shifted(spec: TableSpec, values: dict[str, Any],
             offset: Optional[timedelta]) -> dict[str, Any]:
    """``values`` with each TIMESTAMP column's datetime moved by ``offset``: a recorded
    (UTC) value into the zone _timestamp_zone set, or (a negative offset) back."""
    if not offset:
        return values
    stamps = _timestamp_names(spec)
    return {k: v + offset if k in stamps and isinstance(v, datetime) else v
            for k, v in values.items()}


def _check_row(conn: Connection, change: _Change) -> None:
    """The row must be there (to update or delete it) or absent (to re-insert it)."""
    spec, row = change.spec, change.row
    found = conn.execute(select(exists().where(
        _key_condition(spec.table, spec, row.resource_id)))).scalar()
    if bool(found) != (row.operation != "delete"):
        state = "is missing" if not found else "exists again"
        raise SQLAuditRevertError(
            f"the row {row.resource_id!r} of {spec.name} {state}, which the log does not "
            f"explain (it was changed without being recorded, e.g. with the triggers off); "
            f"nothing was changed")


def _stored_key(spec: TableSpec, resource_id: str) -> list[Any]:
    """The key values of a stored resource id (a JSON array of texts when composite)."""
    raw: Any = tuple(json.loads(resource_id)) if len(spec.key_columns) > 1 else resource_id
    try:
        return key_values(spec, raw)
    except (TypeError, ValueError) as exc:
        raise SQLAuditRevertError(
            f"cannot find the row {resource_id!r} of {spec.name}: {exc}") from exc


def _key_condition(table: Table, spec: TableSpec, resource_id: str) -> Any:
    """WHERE the row's key equals the stored resource id text."""
    return key_condition(table, spec, _stored_key(spec, resource_id))


def _missing_for_insert(spec: TableSpec, values: dict[str, Any]) -> list[str]:
    """NOT NULL columns without a default that ``values`` does not give."""
    return [c.name for c in spec.table.columns
            if not c.nullable and c.name not in values and c.default is None
            and c.server_default is None and not (c.primary_key and c.autoincrement is True)]


def _require_model(row: Any) -> Any:
    model = model_for(row.table_schema, row.table_name)
    if model is None:
        name = f"{row.table_schema}.{row.table_name}" if row.table_schema else row.table_name
        raise SQLAuditRevertError(
            f"cannot undo changes to table {name!r}: its @track_table model is not imported; "
            f"import the module that defines it first")
    return model


def _changes(conn: Connection, options: dict[str, Any], transaction_id: int) -> list[_Change]:
    log = _history.SHARED_LOG
    stmt = (select(*_history._base_columns(log))
            .where(log.c.transaction_id == bindparam(None, transaction_id, type_=BigInteger()))
            .order_by(log.c.id))
    rows = _history._execute(conn, stmt, options)
    records = _history.records_of_rows(conn, log, options, rows)
    by_row: dict[int, list[Any]] = {}
    for record in records:
        by_row.setdefault(record.__dict__["_audit_id"], []).append(record)
    changes = []
    for row in rows:
        model = _require_model(row) if row.operation != "truncate" else None
        spec = spec_for(model) if model is not None else None
        # spec is None only for a TRUNCATE, which revert_transaction refuses before any use
        changes.append(_Change(row, model, spec, by_row.get(row.id, [])))  # type: ignore[arg-type]
    return changes


def _later(conn: Connection, options: dict[str, Any], changes: list[_Change],
           transaction_id: int) -> dict[Any, list[Any]]:
    """Changes by other transactions to the same rows, after the first reverted one."""
    log = _history.SHARED_LOG
    first = min(c.row.id for c in changes)
    found: dict[Any, list[Any]] = {}
    by_table: dict[Any, set[str]] = {}
    for c in changes:
        if c.spec is not None:
            by_table.setdefault((c.row.table_schema, c.row.table_name), set()).add(c.row.resource_id)
    for (schema, name), ids in by_table.items():
        stmt = (select(*_history._base_columns(log)).where(
            rows_of_table(log, name, schema), log.c.id > first,
            log.c.resource_id.in_(bindparam(None, sorted(ids), expanding=True)),
            log.c.transaction_id.is_distinct_from(
                bindparam(None, transaction_id, type_=BigInteger())))
            .order_by(log.c.id))
        for row in _history._execute(conn, stmt, options):
            found.setdefault((schema, name, row.resource_id), []).append(row)
    return found


def _touched(row: Any) -> set[str]:
    data = json.loads(row.new_raw) if row.new_raw else {}
    return set(data)


def _conflicts(change: _Change, later: list[Any]) -> bool:
    after = [r for r in later if r.id > change.row.id]
    if not after:
        return False
    op = change.row.operation
    if op == "update":
        mine = set(change.columns())
        return any(r.operation != "update" or _touched(r) & mine for r in after)
    if op == "insert":  # deleting it would also remove every later change
        return True
    return any(r.operation == "insert" for r in after)  # a re-created row stands in the way


def _apply(conn: Connection, change: _Change, offset: Optional[timedelta] = None) -> None:
    spec, row = change.spec, change.row
    table = spec.table
    old_values = _shifted(spec, {name: old for name, (old, _) in change.columns().items()},
                          offset)
    if row.operation == "update":
        done = conn.execute(update(table).where(_key_condition(table, spec, row.resource_id))
                            .values(old_values)).rowcount
    elif row.operation == "insert":
        done = conn.execute(delete(table).where(_key_condition(table, spec, row.resource_id))).rowcount
    else:  # delete: re-insert the snapshot (NULL for the tracked fields it does not list)
        values = {c.name: None for c in spec.columns}
        values.update(old_values)
        values.update(zip([c.name for c in spec.key_columns], _stored_key(spec, row.resource_id)))
        conn.execute(insert(table).values(values))  # inserted, or raises
        done = 1
    if done != 1:
        raise SQLAuditRevertError(
            f"the row {row.resource_id!r} of {spec.name} is not as the log says (it was changed "
            f"without being recorded, e.g. with the triggers off); nothing was undone")


def _check_insertable(change: _Change) -> None:
    if change.row.operation != "delete":
        return
    values = {c.name for c in change.spec.columns} | {c.name for c in change.spec.key_columns}
    missing = _missing_for_insert(change.spec, dict.fromkeys(values))
    if missing:
        raise SQLAuditRevertError(
            f"cannot re-insert the deleted row {change.row.resource_id!r} of {change.spec.name}: "
            f"NOT NULL column(s) {missing} have no default and are not tracked, so the log does "
            f"not hold their values; track them (@track_table(tracked_fields=...)) to make "
            f"deletes of this table revertible")


def _check_rows(conn: Connection, todo: list[_Change]) -> None:
    """Check the rows as the reverse order will meet them: each key's first undo (its
    newest change) decides whether the row must exist now."""
    seen = set()
    for change in reversed(todo):
        if change.key not in seen:
            seen.add(change.key)
            _check_row(conn, change)


def revert_transaction(session: Union[Session, Connection], transaction_id: int, *,
                       on_conflict: str = "raise") -> RevertResult:
    """Undo every change transaction ``transaction_id`` made to tracked tables.

    Updates are set back, inserted rows deleted, deleted rows re-inserted from
    their snapshot, in reverse order, in the caller's transaction (commit it to
    keep the result), under ``audit_context(reason="revert of transaction N")``
    merged with the caller's context, so the revert is audited too.

    A change is in conflict when another transaction changed the same field of
    the same row afterwards (for an insert: changed the row at all; for a
    delete: re-created it). ``on_conflict="raise"`` raises
    :class:`~sqlaudit.exceptions.SQLAuditRevertConflict` listing them and
    changes nothing; ``"skip"`` leaves them and reports them in ``skipped``.
    :class:`~sqlaudit.exceptions.SQLAuditRevertError` is raised, with nothing
    changed, for a change that cannot be undone: a TRUNCATE, a table whose
    model is not imported, a deleted row whose NOT NULL columns were not all
    tracked.
    """
    _r._check_sync_session(session, "revert_transaction")
    if on_conflict not in ("raise", "skip"):
        raise SQLAuditArgumentError(f"on_conflict must be 'raise' or 'skip', got {on_conflict!r}")
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, int):
        raise SQLAuditArgumentTypeError(f"transaction_id must be an int, got {transaction_id!r}")
    conn = _conn(session)
    options = _r._log_options(conn, _history.SHARED_LOG)
    changes = _changes(conn, options, transaction_id)
    if not changes:
        raise SQLAuditRevertError(f"no recorded change has transaction id {transaction_id}")
    for change in changes:
        if change.row.operation == "truncate":
            raise SQLAuditRevertError(
                f"transaction {transaction_id} truncated {change.row.table_name}; a TRUNCATE "
                f"records no rows, so it cannot be undone")
        _check_insertable(change)
    later = _later(conn, options, changes, transaction_id)
    conflicting = [c for c in changes if _conflicts(c, later.get(c.key, []))]
    if conflicting and on_conflict == "raise":
        records = [r for c in conflicting for r in c.records]
        rows = ", ".join(sorted({f"{c.row.table_name} {c.row.resource_id}" for c in conflicting}))
        raise SQLAuditRevertConflict(
            f"cannot revert transaction {transaction_id}: later changes touched the same fields "
            f"of {rows}; nothing was changed. Pass on_conflict='skip' to revert the rest.",
            records)
    todo = [c for c in changes if c not in conflicting]
    _check_rows(conn, todo)
    with audit_context(reason=f"revert of transaction {transaction_id}",
                       context={"sqlaudit_revert_of": transaction_id}):
        with _timestamp_zone(conn, [c.spec for c in todo]) as offset, _savepoint(session, conn):
            for change in reversed(todo):
                _apply(conn, change, offset)
    if isinstance(session, Session):
        session.expire_all()
    return RevertResult(reverted=[r for c in todo for r in c.records],
                        skipped=[r for c in conflicting for r in c.records])


def restore_resource(session: Union[Session, Connection], model_class: type, resource_id: Any,
                     *, at: datetime) -> Optional[dict[str, Any]]:
    """Set one row back to its state at ``at``, in the caller's transaction.

    The row is updated (only the fields that differ), re-inserted if it was
    deleted since, or deleted if it did not exist at ``at``; the writes run
    under ``audit_context(reason="restore of <table> <id> to <at>")`` merged
    with the caller's context. Returns the restored state (None: the row is
    now absent). Raises :class:`~sqlaudit.exceptions.SQLAuditRevertError`
    when a re-insert would lack a NOT NULL column the log does not hold.
    """
    _r._check_sync_session(session, "restore_resource")
    spec = spec_for(model_class)
    key = key_values(spec, resource_id)
    conn = _conn(session)
    then = _r.get_resource_state(model_class, resource_id, at=at, session=conn)
    table = spec.table
    where = key_condition(table, spec, key)
    attrs = _r._attributes(model_class)
    by_attr = {attr: col for col, attr in attrs.items()}
    reason = f"restore of {spec.name} {resource_id} to {at.isoformat()}"
    with audit_context(reason=reason, context={"sqlaudit_restore_to": at.isoformat()}):
        with _timestamp_zone(conn, [spec]) as offset, _savepoint(session, conn):
            # read in the zone the recorded TIMESTAMPs are shifted to
            live = conn.execute(select(*[table.c[c.name] for c in spec.columns])
                                .where(where)).first()
            if then is None:
                if live is not None:
                    conn.execute(delete(table).where(where))
            else:
                values = _shifted(spec, {by_attr.get(k, k): v for k, v in then.items()}, offset)
                if live is None:
                    values.update({c.name: v for c, v in zip(spec.key_columns, key)})
                    missing = _missing_for_insert(spec, values)
                    if missing:
                        raise SQLAuditRevertError(
                            f"cannot re-insert {spec.name} {resource_id!r}: NOT NULL column(s) "
                            f"{missing} have no default and are not tracked, so the log does not "
                            f"hold their values")
                    conn.execute(insert(table).values(values))
                else:
                    current = dict(zip([c.name for c in spec.columns], live))
                    changed = {k: v for k, v in values.items() if current.get(k) != v}
                    if changed:
                        conn.execute(update(table).where(where).values(changed))
    if isinstance(session, Session):
        session.expire_all()
    return then
