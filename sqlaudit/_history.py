"""Reads across tables: :func:`get_changes` and :func:`get_transactions`.

Re-exported by :mod:`sqlaudit.retrieval`, their public home. One query finds
the audit rows that match (served by the resource, user, transaction or time
index); on PostgreSQL a second query per tracked model among them converts
its values to the column types in SQL, as ``get_resource_changes`` does.
Rows of tables whose model is not imported come back with their JSON values.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, time
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

from sqlalchemy import (
    BigInteger,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import retrieval as _r
from .dialects import is_mysql, rendering_dialect
from .exceptions import SQLAuditArgumentError, SQLAuditArgumentTypeError
from .schema import USER_PREFIX, audit_table, rows_of_table, text_param, user_prefix
from .spec import TableSpec, mapper_of, model_for, spec_for

__all__ = ["AuditTransaction", "get_changes", "get_transactions"]

OPERATIONS = ("insert", "update", "delete", "truncate")
_PAGE = 500


@dataclass(frozen=True)
class AuditTransaction:
    """The changes one database transaction made to tracked tables.

    ``timestamp``, ``changed_by``, ``reason``, ``context``, ``application_name``
    and ``client_addr`` are those of its first change; ``changes`` are its
    :class:`~sqlaudit.retrieval.SQLAuditRecord` s in the order they happened.
    ``transaction_id`` is None for a change written by a connection without
    sqlaudit's hooks on SQLite (each such change is a transaction of its own).
    """

    transaction_id: Optional[int]
    timestamp: datetime
    changed_by: Optional[str]
    reason: Optional[str]
    context: Optional[dict[str, Any]]
    changes: list[Any] = field(default_factory=list)
    application_name: Optional[str] = None
    client_addr: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, as :meth:`SQLAuditRecord.to_dict`, with ``changes`` as a list of dicts."""
        return {
            "transaction_id": self.transaction_id,
            "timestamp": self.timestamp.isoformat(),
            "changed_by": self.changed_by,
            "reason": self.reason,
            "context": _r._json_safe(self.context),
            "application_name": self.application_name,
            "client_addr": self.client_addr,
            "changes": [c.to_dict() for c in self.changes],
        }


# ---------------------------------------------------------------- arguments

@dataclass(frozen=True)
class _Filters:
    specs: Optional[tuple[TableSpec, ...]]
    resource_ids: Optional[list[Any]]
    user_ids: Optional[list[str]]
    transaction_ids: Optional[list[int]]
    operations: Optional[list[str]]
    fields: Optional[list[str]]
    start: Optional[datetime]
    end: Optional[datetime]
    context: Optional[dict[str, Any]]

    def empty(self) -> bool:
        return [] in (self.resource_ids, self.user_ids, self.transaction_ids, self.operations,
                      self.fields)


def _models(models: Any) -> Optional[tuple[TableSpec, ...]]:
    if models is None:
        return None
    values = _r._as_list(models) or []
    if not values:
        raise SQLAuditArgumentError("models= is empty; pass None for every tracked table")
    return tuple(spec_for(m) for m in values)


def _bound(value: Any, side: str, end: bool, argument: str) -> Optional[datetime]:
    if isinstance(value, date) and not isinstance(value, datetime):
        # a date bound covers the whole day: from its start, or to its last instant
        value = datetime.combine(value, time.max if end else time.min)
    if value is not None and not isinstance(value, datetime):
        raise SQLAuditArgumentTypeError(f"{argument} {side} must be a datetime, a date or None, "
                                        f"got {value!r}")
    return _r._utc_bound(value, side)


def date_bounds(date_range: Any, argument: str = "date_range"
                ) -> tuple[Optional[datetime], Optional[datetime]]:
    """``(start, end)`` of a date range argument, in UTC (None: open). Dates cover whole
    days; naive datetimes are read in the configured time zone."""
    if date_range is None:
        return None, None
    if not isinstance(date_range, (tuple, list)) or len(date_range) != 2:
        raise SQLAuditArgumentError(
            f"{argument} must be a (start, end) pair of datetimes, dates or None, e.g. "
            f"(datetime(2026, 12, 1), None) or (date(2026, 12, 1), date(2026, 12, 7)); "
            f"got {date_range!r}")
    start = _bound(date_range[0], "start", False, argument)
    end = _bound(date_range[1], "end", True, argument)
    if start is not None and end is not None and start > end:
        raise SQLAuditArgumentError(f"{argument} start {start} is after end {end}")
    return start, end


def _filters(models: Any, resource_ids: Any, user_ids: Any, transaction_ids: Any,
             operations: Any, fields: Any, date_range: Any, context: Any) -> _Filters:
    specs = _models(models)
    ops = _r._as_list(operations)
    for op in ops or []:
        if op not in OPERATIONS:
            raise SQLAuditArgumentError(f"operations: {op!r} is not one of {', '.join(OPERATIONS)}")
    names = _r._as_list(fields)
    for name in names or []:
        if not isinstance(name, str):
            raise SQLAuditArgumentTypeError(f"fields must be str, got {name!r}")
    if specs is not None and names:
        known = {attr for s in specs for attr in _attribute_names(s)}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SQLAuditArgumentError(f"fields: {unknown} are not tracked fields of the given models "
                             f"(tracked: {sorted(known)})")
    if context is not None and not isinstance(context, Mapping):
        raise SQLAuditArgumentTypeError("context must be a dict of key: value pairs to match, got "
                                        f"{context!r}")
    users = _r._as_list(user_ids)
    start, end = date_bounds(date_range)
    return _Filters(
        specs=specs,
        resource_ids=_r._as_list(resource_ids, keys=True),
        user_ids=None if users is None else [_r._user_text(u) for u in users],
        transaction_ids=_r._transaction_list(transaction_ids),
        operations=ops,
        fields=names,
        start=start,
        end=end,
        context=dict(context) if context else None,
    )


def _attribute_names(spec: TableSpec) -> list[str]:
    attrs = _attributes_of(spec)
    return [attrs.get(c.name, c.name) for c in spec.columns]


def _attributes_of(spec: TableSpec) -> dict[str, str]:
    model = model_for(spec.schema, spec.name)
    return _r._attributes(model) if model is not None else {c.name: c.name for c in spec.columns}


# ---------------------------------------------------------------- SQL

#: the log of a read that names no model (one Table, so statements hit SQLAlchemy's cache)
SHARED_LOG = audit_table(MetaData())


def _log(conn: Connection, specs: Optional[Sequence[TableSpec]]) -> Table:
    return audit_table(specs[0].table.metadata) if specs else SHARED_LOG


def _key_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise SQLAuditArgumentTypeError(
            f"resource ids must be str, int or UUID (tuples of them for composite keys), "
            f"got {type(value).__name__} {value!r}")
    return str(value)


def _conditions(log: Table, pg: bool, f: _Filters, mysql: bool = False) -> list[Any]:
    conditions: list[Any] = []
    if f.specs is not None:
        conditions.append(or_(*[rows_of_table(log, s.name, s.schema) for s in f.specs]))
    if f.resource_ids is not None:
        array = (lambda *p: cast(func.json_build_array(*p), Text)) if pg else func.json_array
        keys: list[Any] = []
        for value in f.resource_ids:
            if isinstance(value, (tuple, list)):
                keys.append(array(*[text_param(_key_text(v)) for v in value]))
            else:
                keys.append(text_param(_key_text(value)))
        conditions.append(log.c.resource_id.in_(keys))
    if f.user_ids is not None and mysql:
        # MariaDB's user index is a prefix index of the column: exact ids use it
        conditions.append(log.c.changed_by.in_(text_param(f.user_ids, expanding=True)))
    elif f.user_ids is not None:
        conditions.append(user_prefix(log.c.changed_by).in_(
            text_param([u[:USER_PREFIX] for u in f.user_ids], expanding=True)))
        if _r._exact_user_needed(f.user_ids):
            exact = log.c.changed_by if pg else cast(log.c.changed_by, Text)
            conditions.append(exact.in_(text_param(f.user_ids, expanding=True)))
    if f.transaction_ids is not None:
        conditions.append(log.c.transaction_id.in_(
            bindparam(None, f.transaction_ids, expanding=True, type_=BigInteger())))
    if f.operations is not None:
        conditions.append(log.c.operation.in_(f.operations))
    if f.fields is not None:
        names = set(f.fields)
        for spec in f.specs or ():
            attrs = _attributes_of(spec)
            names |= {col for col, attr in attrs.items() if attr in f.fields}
        conditions.append(or_(*[_has_key(log, pg, n, mysql) for n in sorted(names)]))
    for bound, op in ((f.start, "ge"), (f.end, "le")):
        if bound is not None:
            value = bound if pg else bound.replace(tzinfo=None)
            param = bindparam(None, value, type_=log.c.changed_at.type)
            conditions.append(log.c.changed_at >= param if op == "ge" else log.c.changed_at <= param)
    if f.context is not None:
        conditions.append(_context_matches(log, pg, f.context, mysql))
    return conditions


def _has_key(log: Table, pg: bool, name: str, mysql: bool = False) -> Any:
    if pg:
        return or_(type_coerce(log.c.old_data, JSONB).has_key(text_param(name)),
                   type_coerce(log.c.new_data, JSONB).has_key(text_param(name)))
    path = _json_path(name)
    if mysql:
        return or_(func.json_contains_path(log.c.old_data, "one", path) == 1,
                   func.json_contains_path(log.c.new_data, "one", path) == 1)
    return or_(func.json_type(log.c.old_data, path).isnot(None),
               func.json_type(log.c.new_data, path).isnot(None))


def _json_path(key: str) -> Any:
    return text_param("$." + json.dumps(key, ensure_ascii=False))


def _context_matches(log: Table, pg: bool, wanted: dict[str, Any], mysql: bool = False) -> Any:
    """PostgreSQL: ``context @> wanted`` (nested values contained); MariaDB / MySQL:
    ``JSON_CONTAINS(context, wanted)``, the same containment. SQLite: each key's
    value equal (nested objects and lists compared as a whole)."""
    if pg:
        return type_coerce(log.c.context, JSONB).contains(
            bindparam(None, wanted, type_=JSONB()))
    if mysql:
        return func.json_contains(log.c.context,
                                  text_param(json.dumps(wanted, ensure_ascii=False))) == 1
    parts = []
    for key, value in wanted.items():
        path = _json_path(key)
        if value is None:
            parts.append(func.json_type(log.c.context, path) == "null")
        elif isinstance(value, bool):
            parts.append(func.json_type(log.c.context, path) == ("true" if value else "false"))
        elif isinstance(value, (dict, list)):
            parts.append(func.json(func.json_extract(log.c.context, path))
                         == func.json(text_param(json.dumps(value, ensure_ascii=False))))
        elif isinstance(value, (int, float, str)):
            parts.append(and_(func.json_extract(log.c.context, path) == literal(value),
                              func.json_type(log.c.context, path).in_(
                                  ["text"] if isinstance(value, str) else ["integer", "real"])))
        else:
            raise SQLAuditArgumentTypeError(
                f"context values to match must be JSON values, got {value!r}")
    return and_(*parts)


def _base_columns(log: Table) -> list[Any]:
    return [*_r._row_columns(log), log.c.table_schema, log.c.table_name,
            cast(log.c.old_data, Text).label("old_raw"),
            cast(log.c.new_data, Text).label("new_raw")]


def _order(log: Table, direction: str) -> list[Any]:
    if direction == "desc":
        return [log.c.changed_at.desc(), log.c.id.desc()]
    return [log.c.changed_at.asc(), log.c.id.asc()]


def _after(log: Table, pg: bool, last: Any, direction: str) -> Any:
    """Keyset paging: rows strictly after ``last`` (changed_at, id) in ``direction``."""
    at = last[0] if pg else last[0].replace(tzinfo=None) if last[0].tzinfo else last[0]
    at_param = bindparam(None, at, type_=log.c.changed_at.type)
    if direction == "desc":
        return or_(log.c.changed_at < at_param, and_(log.c.changed_at == at_param, log.c.id < last[1]))
    return or_(log.c.changed_at > at_param, and_(log.c.changed_at == at_param, log.c.id > last[1]))


def _pages(conn: Connection, log: Table, options: dict[str, Any], stmt: Any, direction: str,
           first: int, size: int) -> Iterator[list[Any]]:
    """Pages of ``stmt``'s rows (ordered by time and id in ``direction``), keyset-paged:
    ``first`` rows, then ``size`` at a time, until the rows run out."""
    pg = conn.dialect.name == "postgresql"
    last = None
    limit = first
    while True:
        page_stmt = stmt if last is None else stmt.where(_after(log, pg, last, direction))
        page = _execute(conn, page_stmt.limit(limit), options)
        yield page
        if len(page) < limit:
            return
        last, limit = (page[-1].changed_at, page[-1].id), size


def _execute(conn: Connection, stmt: Any, options: dict[str, Any]) -> list[Any]:
    return _r._run_log_query(conn, stmt, {}, options)


# ---------------------------------------------------------------- records

def records_of_rows(conn: Connection, log: Table, options: dict[str, Any], rows: Sequence[Any],
                    specs: Optional[Sequence[TableSpec]] = None) -> list[Any]:
    """The field records of audit ``rows`` (any tables), in the rows' order."""
    if not rows:
        return []
    pg = conn.dialect.name == "postgresql"
    by_table = {(s.schema, s.name): s for s in specs or ()}
    typed: dict[Any, Any] = {}
    if pg:  # the typed values of every imported model's rows, one query per model
        groups: dict[Any, list[int]] = {}
        for row in rows:
            groups.setdefault((row.table_schema, row.table_name), []).append(row.id)
        # the rows' own time span: lets a partitioned log skip the other partitions
        span = (min(r.changed_at for r in rows), max(r.changed_at for r in rows))
        for key, ids in groups.items():
            model = _model(by_table, key)
            if model is not None:
                for typed_row in _typed_rows(conn, log, options, model, ids, span):
                    typed[typed_row.id] = typed_row
    # expand each table's rows together, then put the records back in the rows' order
    groups_by_table: dict[Any, list[Any]] = {}
    for row in rows:
        groups_by_table.setdefault((row.table_schema, row.table_name), []).append(row)
    records: list[Any] = []
    for key, group in groups_by_table.items():
        records += _expand_run(conn, key, group, by_table, typed)
    if len(groups_by_table) > 1:
        position = {row.id: i for i, row in enumerate(rows)}
        records.sort(key=lambda r: position[r.__dict__["_audit_id"]])  # stable within a row
    return records


def _model(by_table: dict[Any, TableSpec], key: Any) -> Optional[Any]:
    spec = by_table.get(key)
    model = model_for(*key)
    if model is not None:
        return model
    return spec.table if spec is not None else None


def _expand_run(conn: Connection, key: Any, rows: list[Any], by_table: dict[Any, TableSpec],
                typed: dict[Any, Any]) -> list[Any]:
    pg = conn.dialect.name == "postgresql"
    model = _model(by_table, key)
    if model is None:
        return _r._expand(rows, _unknown_spec(*key), {}, pg, conn.dialect)
    spec = spec_for(model)
    attrs = _r._attributes(model) if isinstance(model, type) else {c.name: c.name for c in spec.table.columns}
    if pg:
        rows = [typed[r.id] for r in rows if r.id in typed]
    return _r._expand(rows, spec, attrs, pg, conn.dialect)


@lru_cache(maxsize=1024)
def _unknown_spec(schema: Optional[str], name: str) -> TableSpec:
    """A column-less spec naming a table whose model is not imported (JSON values)."""
    return TableSpec(Table(name, MetaData(), schema=schema), (), (), None)


def _typed_rows(conn: Connection, log: Table, options: dict[str, Any], model: Any,
                ids: list[int], span: Optional[tuple[Any, Any]] = None) -> list[Any]:
    """PostgreSQL: the rows ``ids`` of ``model``'s table with typed values, in id order."""
    spec = spec_for(model)
    dialect = rendering_dialect("postgresql")
    attrs = _r._attributes(model) if isinstance(model, type) else {c.name: c.name for c in spec.table.columns}
    mapped = [spec.table.c[name] for name in attrs]
    columns: list[Any] = [*_r._row_columns(log), cast(log.c.old_data, Text).label("old_raw"),
                          cast(log.c.new_data, Text).label("new_raw")]
    for i, col in enumerate(mapped):
        if _r._json_exact(col, dialect):
            continue
        name = _r._name_literal(col.name, dialect)
        columns += [_r._typed(log, "old", col, name, dialect).label(f"old_{i}"),
                    _r._typed(log, "new", col, name, dialect).label(f"new_{i}")]
    stmt = select(*columns).where(log.c.id.in_(bindparam(None, ids, expanding=True,
                                                          type_=BigInteger())))
    if span is not None:
        stmt = stmt.where(log.c.changed_at.between(*span))
    return _execute(conn, stmt.order_by(log.c.id), options)


def _keep_fields(records: Iterable[Any], fields: Optional[list[str]]) -> list[Any]:
    if fields is None:
        return list(records)
    wanted = set(fields)
    return [r for r in records if r.field_name in wanted]


# ---------------------------------------------------------------- public

def _connection(reader: Union[Session, Connection], specs: Optional[Sequence[TableSpec]]) -> Connection:
    if isinstance(reader, Session):
        if specs:
            model = model_for(specs[0].schema, specs[0].name)
            mapper = mapper_of(model) if model is not None else None
            if mapper is not None:
                return reader.connection(bind_arguments={"mapper": mapper})
        return reader.connection()
    if isinstance(reader, Connection):
        return reader
    raise SQLAuditArgumentTypeError(f"session must be a Session or Connection, got {reader!r}")


def get_changes(
    session: Optional[Union[Session, Connection]] = None,
    *,
    models: Any = None,
    resource_ids: Any = None,
    user_ids: Any = None,
    transaction_ids: Any = None,
    operations: Any = None,
    fields: Any = None,
    date_range: Any = None,
    context: Optional[Mapping[str, Any]] = None,
    limit: Optional[int] = None,
    offset: Optional[int] = None,
    sort_direction: str = "desc",
) -> list[Any]:
    """Changes across every tracked table (or ``models``), one record per changed field.

    Every filter takes a scalar or a list and they combine with AND:

    * ``models``: ``@track_table`` models (or tables) to keep;
    * ``resource_ids``: keys as in ``get_resource_changes`` (tuples for composite keys);
    * ``user_ids``, ``transaction_ids``, ``operations`` (``"insert"``, ``"update"``,
      ``"delete"``, ``"truncate"``), ``fields`` (attribute names);
    * ``date_range``: ``(start, end)``, inclusive, datetimes or dates (a date end
      covers its whole day), naive values in the configured time zone;
    * ``context``: a dict of pairs the change's context contains (PostgreSQL and
      MariaDB / MySQL: JSON containment, nested values included; SQLite: each key's
      value equal).

    ``limit`` and ``offset`` count field records; ordering is by time, then by
    the order the changes happened (``sort_direction`` ``"desc"``, newest first,
    or ``"asc"``). Values are typed for every imported ``@track_table`` model;
    a table whose model is not imported gives its JSON values.
    """
    _r._check_sync_session(session, "get_changes")
    if sort_direction not in ("asc", "desc"):
        raise SQLAuditArgumentError(f"sort_direction must be 'asc' or 'desc', got {sort_direction!r}")
    _r._check_paging(limit, offset)
    f = _filters(models, resource_ids, user_ids, transaction_ids, operations, fields,
                 date_range, context)
    if limit == 0 or f.empty():
        return []
    with _r._session_scope(session) as reader:
        conn = _connection(reader, f.specs)
        log = _log(conn, f.specs)
        options = _r._log_options(conn, log)
        pg = conn.dialect.name == "postgresql"
        mysql = is_mysql(conn.dialect.name)
        base = select(*_base_columns(log)).where(and_(true(), *_conditions(log, pg, f, mysql)))
        base = base.order_by(*_order(log, sort_direction))
        if limit is None and not offset:
            return _keep_fields(records_of_rows(conn, log, options, _execute(conn, base, options),
                                                f.specs),
                                f.fields)
        wanted = (offset or 0) + (limit if limit is not None else 0)
        # each audit row gives at least one record (but for NULL-only inserts and field
        # filters), so the first page asks for as many rows as records are wanted
        records: list[Any] = []
        for page in _pages(conn, log, options, base, sort_direction, min(_PAGE, wanted), _PAGE):
            records += _keep_fields(records_of_rows(conn, log, options, page, f.specs), f.fields)
            if len(records) >= wanted:
                break
        end = None if limit is None else (offset or 0) + limit
        return records[offset or 0:end]


def get_transactions(
    session: Optional[Union[Session, Connection]] = None,
    *,
    models: Any = None,
    user_ids: Any = None,
    transaction_ids: Any = None,
    date_range: Any = None,
    context: Optional[Mapping[str, Any]] = None,
    limit: Optional[int] = None,
    offset: Optional[int] = None,
) -> list[AuditTransaction]:
    """Transactions that changed tracked tables, newest first, each with its changes.

    A transaction matches when any of its changes matches every filter (same
    forms as :func:`get_changes`); its ``changes`` are all the changes it made
    to the tracked tables (to ``models`` when given), in the order they
    happened. ``limit`` and ``offset`` count transactions.
    """
    _r._check_sync_session(session, "get_transactions")
    _r._check_paging(limit, offset)
    f = _filters(models, None, user_ids, transaction_ids, None, None, date_range, context)
    if limit == 0 or f.empty():
        return []
    with _r._session_scope(session) as reader:
        conn = _connection(reader, f.specs)
        log = _log(conn, f.specs)
        options = _r._log_options(conn, log)
        pg = conn.dialect.name == "postgresql"
        # Scan matching rows newest first and collect transactions in the order of their
        # newest change, until the page is full: a few index pages for a short page.
        scan = (select(log.c.id, log.c.transaction_id, log.c.changed_at)
                .where(and_(true(), *_conditions(log, pg, f, is_mysql(conn.dialect.name))))
                .order_by(*_order(log, "desc")))
        wanted = None if limit is None else (offset or 0) + limit
        keys: dict[Any, None] = {}
        first = _PAGE * 4 if wanted is None else min(_PAGE * 4, max(20, wanted * 4))
        for page in _pages(conn, log, options, scan, "desc", first, _PAGE * 4):
            for row in page:
                keys.setdefault(row.transaction_id if row.transaction_id is not None
                                else ("row", row.id), None)
                if wanted is not None and len(keys) >= wanted:
                    break
            if wanted is not None and len(keys) >= wanted:
                break
        chosen = list(keys)[offset or 0:wanted]
        if not chosen:
            return []
        txids = [k for k in chosen if not isinstance(k, tuple)]
        lone = [k[1] for k in chosen if isinstance(k, tuple)]
        parts = []
        if txids:
            parts.append(log.c.transaction_id.in_(bindparam(None, txids, expanding=True,
                                                            type_=BigInteger())))
        if lone:
            parts.append(log.c.id.in_(bindparam(None, lone, expanding=True, type_=BigInteger())))
        where = [or_(*parts)]
        if f.specs is not None:
            where.append(or_(*[rows_of_table(log, s.name, s.schema) for s in f.specs]))
        stmt = select(*_base_columns(log)).where(and_(*where)).order_by(*_order(log, "asc"))
        rows = _execute(conn, stmt, options)
        records = records_of_rows(conn, log, options, rows, f.specs)
    grouped: dict[Any, list[Any]] = {key: [] for key in chosen}
    row_key = {row.id: row.transaction_id if row.transaction_id is not None else ("row", row.id)
               for row in rows}
    for record in records:
        grouped[row_key[record.__dict__["_audit_id"]]].append(record)
    result = []
    for key in chosen:
        changes = grouped[key]
        if not changes:
            continue
        first = changes[0]
        result.append(AuditTransaction(
            transaction_id=None if isinstance(key, tuple) else key,
            timestamp=first.timestamp, changed_by=first.changed_by, reason=first.reason,
            context=first.context, changes=changes, application_name=first.application_name,
            client_addr=first.client_addr))
    return result
