"""Read the audit trail: ``get_resource_changes`` (sqlaudit 0.3 compatible).

Each audit row holds the changed fields of one changed row; this module
expands it into one :class:`SQLAuditRecord` per field, with values converted
back to the Python values (and types) the ORM reads for that column.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import inspect as pyinspect
import json
import math
import uuid
from decimal import Decimal
from functools import lru_cache
from dataclasses import dataclass, fields as dataclass_fields
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    Numeric,
    String,
    Text,
    Time,
    Uuid,
    JSON,
    and_,
    bindparam,
    case,
    cast,
    or_,
    text,
    func,
    literal_column,
    select,
    true,
    type_coerce,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from .config import _display_zone, get_config
from .dialects import base_type, is_mysql, rendering_dialect, string_literal
from .exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError, SQLAuditConfigError,
                         SQLAuditTableNotInDatabaseError)
from .schema import USER_PREFIX, log_schema, user_prefix, audit_table, rows_of_table, text_param
from .spec import TableSpec, mapper_of, spec_for

__all__ = ["AuditTransaction", "ResourceIdType", "SQLAuditRecord", "get_changes",
           "get_resource_changes", "get_resource_state", "get_table_state", "get_transactions"]

ResourceIdType = Union[str, int, uuid.UUID]
"""A value of a single-column key, as ``filter_resource_ids`` takes it (composite keys
are tuples of these)."""
_SORT_KEYS = ("timestamp", "resource_id", "field_name", "changed_by", "operation",
              "transaction_id")


@dataclass(frozen=True)
class SQLAuditRecord:
    """One changed field of one audited row.

    ``old_value`` is None for inserts, ``new_value`` is None for deletes.
    ``changed_by`` is the user id stored when the change happened (text), or
    None when no user was known. ``timestamp`` is timezone-aware, in the
    configured ``time_zone``.
    """

    table_name: str
    table_label: Optional[str]
    #: None (with ``field_name``) for a PostgreSQL TRUNCATE, a table-level event
    resource_id: Optional[str]
    field_name: Optional[str]
    old_value: Any
    new_value: Any
    timestamp: datetime
    changed_by: Optional[str]
    operation: str
    transaction_id: Optional[int]
    reason: Optional[str] = None
    db_role: Optional[str] = None
    #: the ``audit_context(context=...)`` dict of the change (None without one)
    context: Optional[dict[str, Any]] = None
    #: PostgreSQL: the writing session's ``application_name`` and client address
    application_name: Optional[str] = None
    client_addr: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-safe values: datetimes, dates and times in ISO 8601,
        Decimals and UUIDs as strings, bytes in base64, sets as lists (what a web
        framework can return as is)."""
        return {name: _json_safe(getattr(self, name)) for name in _RECORD_FIELDS}


def _json_safe(value: Any) -> Any:
    """``value`` with every part a JSON type (see :meth:`SQLAuditRecord.to_dict`)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return str(value)


_RECORD_FIELDS = tuple(f.name for f in dataclass_fields(SQLAuditRecord))


# ---------------------------------------------------------------- arguments

def _as_list(value: Any, *, keys: bool = False) -> Optional[list[Any]]:
    """None stays None, a collection becomes a list, a scalar a one-item list.

    With ``keys=True`` a bare tuple of scalars is one composite key.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)) and not (keys and _is_key_tuple(value)):
        return list(value)
    return [value]


def _is_key_tuple(value: Any) -> bool:
    """A bare tuple of scalars is one composite key, not a list of keys."""
    return isinstance(value, tuple) and not any(isinstance(v, (tuple, list)) for v in value)


def _key_part(value: Any, column: Column[Any], dialect: Dialect) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise SQLAuditArgumentTypeError(
            f"resource ids must be str, int or UUID (tuples of them for composite keys), "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(base_type(column.type, dialect), Uuid) and not isinstance(value, int):
        try:
            return str(value if isinstance(value, uuid.UUID) else uuid.UUID(value))
        except ValueError as exc:
            raise SQLAuditArgumentError(f"resource id {value!r} is not a UUID (column "
                                        f"{column.name!r})") from exc
    return str(value)


def _resource_keys(values: list[Any], spec: TableSpec, dialect: Dialect) -> list[Any]:
    """Filter values as the text the triggers store (tuples of texts for composite keys)."""
    keys = spec.key_columns
    if len(keys) == 1:
        return [_key_part(v, keys[0], dialect) for v in values]
    result = []
    for value in values:
        if not isinstance(value, (tuple, list)) or len(value) != len(keys):
            raise SQLAuditArgumentTypeError(
                f"{spec.name} has a composite key ({', '.join(c.name for c in keys)}); pass each "
                f"resource id as a tuple of {len(keys)} values, got {value!r}"
            )
        result.append(tuple(_key_part(v, c, dialect) for v, c in zip(value, keys)))
    return result


def _utc_bound(value: Optional[datetime], name: str) -> Optional[datetime]:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise SQLAuditArgumentTypeError(f"filter_date_range {name} must be a datetime or None, got "
                                        f"{value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_display_zone())
    return value.astimezone(timezone.utc)


def _transaction_list(value: Any) -> Optional[list[int]]:
    """Transaction id filter values: ints (a scalar or a list)."""
    values = _as_list(value)
    for v in values or []:
        if isinstance(v, bool) or not isinstance(v, int):
            raise SQLAuditArgumentTypeError(f"transaction ids must be int, got {type(v).__name__} {v!r}")
    return values


def _check_sync_session(session: Any, name: str) -> None:
    """Point asyncio users to :mod:`sqlaudit.asyncio` instead of failing obscurely."""
    kind = type(session).__name__
    if kind in ("AsyncSession", "AsyncConnection", "async_scoped_session"):
        raise SQLAuditArgumentTypeError(
            f"{name}() takes a Session or Connection, got an {kind}; use "
            f"sqlaudit.asyncio.{name}() (same arguments, awaited) instead")


def _check_paging(limit: Optional[int], offset: Optional[int]) -> None:
    for name, value in (("limit", limit), ("offset", offset)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise SQLAuditArgumentTypeError(f"{name} must be an int or None, got {value!r}")
        if value < 0:
            raise SQLAuditArgumentError(f"{name} must not be negative, got {value}")


# ---------------------------------------------------------------- session

@contextlib.contextmanager
def _session_scope(session: Optional[Union[Session, Connection]]) -> Iterator[Any]:
    if session is not None:
        yield session
        return
    factory = get_config().session_factory
    if factory is None:
        raise SQLAuditConfigError(
            "get_resource_changes() needs a session: pass session=..., or set "
            "SQLAuditConfig(session_factory=...)."
        )
    produced = factory()
    if pyinspect.isgenerator(produced):
        try:
            yield next(produced)
        finally:
            produced.close()
    else:
        try:
            yield produced
        finally:
            produced.close()


# ---------------------------------------------------------------- values

def _sqlite_value(raw: Any, process: Optional[Callable[[Any], Any]]) -> Any:
    """A value from sqlaudit's SQLite JSON encoding, converted by the column's result processor."""
    if isinstance(raw, dict):
        if "$r" in raw:
            raw = float(raw["$r"])
        elif "$b" in raw:
            raw = bytes.fromhex(raw["$b"])
    if raw is None or process is None:
        return raw
    return process(raw)


def _timestamp(value: datetime, zone: Any) -> datetime:
    if value.tzinfo is None:  # SQLite stores UTC text
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(zone)


# ---------------------------------------------------------------- query

def get_resource_changes(
    model_class: type,
    session: Optional[Union[Session, Connection]] = None,
    filter_resource_ids: Optional[Union[ResourceIdType, tuple[Any, ...], Sequence[Any]]] = None,
    filter_fields: Optional[Union[str, Sequence[str]]] = None,
    filter_user_ids: Optional[Union[ResourceIdType, Sequence[ResourceIdType]]] = None,
    filter_date_range: Optional[tuple[Optional[datetime], Optional[datetime]]] = None,
    limit: Optional[int] = None,
    offset: Optional[int] = None,
    sort_by: str = "timestamp",
    sort_direction: str = "desc",
    filter_transaction_ids: Optional[Union[int, Sequence[int]]] = None,
) -> list[SQLAuditRecord]:
    """Changes recorded for ``model_class``, one record per changed field.

    Args:
        model_class: a ``@track_table`` model.
        session: Session (or Connection) to read with; defaults to one from the
            configured ``session_factory``.
        filter_resource_ids: a key or a list of keys (tuples for composite keys).
        filter_fields: attribute name(s) to keep.
        filter_user_ids: user id(s) to keep (compared as text).
        filter_date_range: ``(start, end)``, inclusive, either side may be None;
            naive datetimes are read in the configured time zone.
        limit: paging over field records: at most this many.
        offset: paging over field records: skip this many first.
        sort_by: one of ``timestamp``, ``resource_id``, ``field_name``,
            ``changed_by``, ``operation``, ``transaction_id``.
        sort_direction: ``"asc"`` or ``"desc"``. Ties break by the order in which
            the changes happened, so pages never skip or repeat a record.
        filter_transaction_ids: transaction id(s) to keep (``record.transaction_id``).
    """
    _check_sync_session(session, "get_resource_changes")
    if session is not None and not isinstance(session, (Session, Connection)):
        if isinstance(filter_resource_ids, (Session, Connection)):  # 0.3 positional order
            session, filter_resource_ids = filter_resource_ids, session
        else:
            raise SQLAuditArgumentTypeError(f"session must be a Session or Connection, got {session!r}")
    spec = spec_for(model_class)
    attr_by_column = _attributes(model_class)
    columns = _column_objects(model_class)
    column_by_attr = {attr: columns[name] for name, attr in attr_by_column.items()}
    if sort_by is None:
        sort_by = "timestamp"
    if sort_by not in _SORT_KEYS:
        raise SQLAuditArgumentError(f"sort_by must be one of {', '.join(_SORT_KEYS)}; got {sort_by!r}")
    if sort_direction not in ("asc", "desc"):
        raise SQLAuditArgumentError(f"sort_direction must be 'asc' or 'desc', got {sort_direction!r}")
    _check_paging(limit, offset)
    fields = _as_list(filter_fields)
    tracked = {attr_by_column.get(c.name, c.name) for c in (*spec.columns, *spec.inherited)}
    for name in fields or []:
        if name not in column_by_attr:
            raise SQLAuditArgumentError(
                f"filter_fields: {name!r} is not a column attribute of {spec.table.name!r} "
                f"(tracked fields: {sorted(tracked)})"
            )
        if name not in tracked:
            raise SQLAuditArgumentError(
                f"filter_fields: {name!r} is not tracked on {spec.table.name!r}, so no change "
                f"of it is recorded (tracked fields: {sorted(tracked)})"
            )
    start, end = _history.date_bounds(filter_date_range, "filter_date_range")
    resource_ids = _as_list(filter_resource_ids, keys=True)
    user_ids = _as_list(filter_user_ids)
    transaction_ids = _transaction_list(filter_transaction_ids)
    if limit == 0 or [] in (resource_ids, user_ids, fields, transaction_ids):
        return []

    with _session_scope(session) as reader:
        # a Session runs the SELECT on its connection for the model (same transaction,
        # same bind, binds per class or per table honoured), skipping the ORM
        # execution layer it has no use for
        if isinstance(reader, Session):
            mapper = mapper_of(model_class)
            conn = reader.connection(bind_arguments={"mapper": mapper, "clause": spec.table})
        else:
            conn = reader
        dialect = conn.dialect
        pg = dialect.name == "postgresql"
        mysql = is_mysql(dialect.name)
        params: dict[str, Any] = {}
        composite = 0
        # 1: one key, compared with = (no IN list to expand on every call)
        has_ids = 0 if resource_ids is None else 1 if len(resource_ids) == 1 else 2
        if resource_ids is not None:
            keys = _resource_keys(resource_ids, spec, dialect)
            if len(spec.key_columns) == 1:
                params["ids"] = keys[0] if has_ids == 1 else keys
            else:
                composite = len(keys)
                for i, parts in enumerate(keys):
                    params.update({f"id_{i}_{j}": part for j, part in enumerate(parts)})
        if fields is not None and not mysql:
            params["fields"] = [column_by_attr[f].name for f in fields]
        has_users = 0
        if user_ids is not None:
            users = [_user_text(u) for u in user_ids]
            params["user_prefixes"] = [u[:USER_PREFIX] for u in users]
            has_users = 2 if _exact_user_needed(users) else 1
            if has_users == 2 or mysql:
                params["users"] = users
        for name, bound in (("start", start), ("end", end)):
            if bound is not None:
                params[name] = bound if pg else bound.replace(tzinfo=None)
        if limit is not None and not mysql:
            params["limit"] = limit
        if offset is not None and not mysql:
            params["offset"] = offset
        if transaction_ids is not None:
            params["transactions"] = transaction_ids
        shape = (has_ids, composite, fields is not None, has_users,
                 start is not None, end is not None, limit is not None, offset is not None,
                 transaction_ids is not None)
        per_row = _per_row(shape, sort_by) or mysql
        stmt = _statement(model_class, dialect.name, sort_by, sort_direction, shape)
        rows = _run_log_query(conn, stmt, params, _log_options(conn, audit_table(spec.table.metadata)))
    if mysql:
        return _page(_expand(rows, spec, attr_by_column, pg, dialect), fields, sort_by,
                     sort_direction, limit, offset)
    if per_row:
        return _expand(rows, spec, attr_by_column, pg, dialect)
    return _records(rows, spec, attr_by_column, pg, dialect)


def _page(records: list[SQLAuditRecord], fields: Optional[list[Any]], sort_by: str,
          sort_direction: str, limit: Optional[int], offset: Optional[int]) -> list[SQLAuditRecord]:
    """MariaDB / MySQL: the field filter, field-name order and paging applied to the
    records of the per-row query (its JSON has no json_each to do it in SQL). The
    result is what the per-field query returns on the other dialects."""
    if fields is not None:
        wanted = set(fields)
        records = [r for r in records if r.field_name in wanted]
    if sort_by == "field_name":  # a stable sort keeps the time order within a field
        records.sort(key=lambda r: r.field_name or "", reverse=sort_direction == "desc")
    start = offset or 0
    return records[start:] if limit is None else records[start:start + limit]


def _log_options(conn: Connection, log: Any) -> dict[str, Any]:
    """Execution options that name the log by schema (when its Table has none), so that
    no TEMP ``sqlaudit_log`` can stand in for it. One query on PostgreSQL: compute once
    per read and pass to every statement of that read."""
    if log.schema is None:
        return {"schema_translate_map": {None: log_schema(conn)}}
    return {}


def _run_log_query(conn: Connection, stmt: Any, params: dict[str, Any],
                  options: dict[str, Any]) -> list[Any]:
    """Rows of a query on the log: invalid UTF-8 on SQLite shown as U+FFFD, a missing log
    reported as :class:`SQLAuditTableNotInDatabaseError`."""
    try:
        try:
            return list(conn.execute(stmt, params, execution_options=options).all())
        except DBAPIError as exc:
            if conn.dialect.name == "postgresql" or "decode to UTF-8" not in str(exc.orig):
                raise
            return _read_lossy(conn, stmt, params, options)
    except DBAPIError as exc:
        if _missing_table(exc):
            raise SQLAuditTableNotInDatabaseError(
                "the audit table 'sqlaudit_log' does not exist in this database; run "
                "metadata.create_all() or sqlaudit.ddl.install_audit_triggers() first."
            ) from exc
        raise


def _read_lossy(conn: Connection, stmt: Any, params: dict[str, Any],
                options: dict[str, Any]) -> list[Any]:
    """SQLite, when a value is text that is not UTF-8 (another program can store any
    bytes as TEXT): read again, each invalid byte shown as U+FFFD. Only then, so the
    usual read keeps the driver's C decoding."""
    dbapi: Any = conn.connection.dbapi_connection  # sqlite3.Connection
    saved = dbapi.text_factory
    dbapi.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        return list(conn.execute(stmt, params, execution_options=options).all())
    finally:
        dbapi.text_factory = saved


@lru_cache(maxsize=512)
def _attributes(model_class: Any) -> dict[str, str]:
    """Column name -> attribute name for the columns of the model's own table (and the
    tracked columns it inherits from joined-table parents)."""
    spec = spec_for(model_class)
    mapper = mapper_of(model_class)
    result = {
        col.name: key
        for key, col in (mapper.columns.items() if mapper is not None else [])
        if isinstance(col, Column) and col.table is spec.table
    } or {c.name: c.name for c in spec.table.columns}
    if spec.inherited and mapper is not None:
        for key, col in mapper.columns.items():
            if col in spec.inherited and col.name not in result:
                result[col.name] = key
    return result


@lru_cache(maxsize=512)
def _column_objects(model_class: Any) -> dict[str, Column[Any]]:
    """Column name -> Column, for the names of :func:`_attributes`."""
    spec = spec_for(model_class)
    inherited = {c.name: c for c in spec.inherited}
    return {name: spec.table.c[name] if name in spec.table.c else inherited[name]
            for name in _attributes(model_class)}


def _table_rows(log: Any, spec: TableSpec, pg: bool, mysql: bool = False) -> ColumnElement[bool]:
    """The audit rows of ``spec``'s table; with joined-table inheritance also the rows
    its parent tables recorded for rows of this model (keys present in this model's
    own history or table)."""
    own = rows_of_table(log, spec.name, spec.schema)
    if not spec.inherited:
        return own
    from .dialects import mysql as mysql_sql, postgresql as pg_sql, sqlite as sqlite_sql

    dialect = rendering_dialect("postgresql" if pg else "mysql" if mysql else "sqlite")
    child_log = log.alias("sqlaudit_child_log")
    live = spec.table.alias("sqlaudit_child")
    key = (pg_sql._key(spec, "sqlaudit_child", dialect) if pg
           else mysql_sql.key_expression(spec, "sqlaudit_child", dialect) if mysql
           else sqlite_sql.key_expression(spec, "sqlaudit_child", dialect))
    of_model = or_(
        log.c.resource_id.in_(select(child_log.c.resource_id)
                              .where(rows_of_table(child_log, spec.name, spec.schema))),
        log.c.resource_id.in_(select(literal_column(key, Text)).select_from(live)),
    )
    parents = sorted({(c.table.schema or "", c.table.name) for c in spec.inherited})
    return or_(own, and_(or_(*[rows_of_table(log, name, schema or None)
                               for schema, name in parents]), of_model))


def _per_row(shape: tuple[int, ...], sort_by: str) -> bool:
    """Whether the query can return one row per audit row, expanded into field
    records in Python: only when no page, field filter or field order needs the
    records themselves in SQL. It is the common call (a resource's or a user's
    whole history) and the cheaper statement for the database to parse, plan
    and send."""
    has_fields, has_limit, has_offset = shape[2], shape[6], shape[7]
    return not (has_fields or has_limit or has_offset or sort_by == "field_name")


@lru_cache(maxsize=512)
def _statement(
    model_class: Any, dialect_name: str, sort_by: str, sort_direction: str, shape: tuple[int, ...]
) -> Any:
    """The SELECT for one model and one combination of filters (values are bind parameters).

    Built once and reused, so a call costs parameter binding, not query building.
    """
    has_fields, has_limit, has_offset = shape[2], shape[6], shape[7]  # the rest: _row_conditions
    spec = spec_for(model_class)
    dialect = rendering_dialect(dialect_name)
    log = audit_table(spec.table.metadata)
    pg = dialect_name == "postgresql"
    mapped = list(_column_objects(model_class).values())
    if is_mysql(dialect_name):  # ordered by field name, filtered and paged by _page
        row_sort = "timestamp" if sort_by == "field_name" else sort_by
        return _row_statement(log, spec, mapped, dialect, row_sort, sort_direction, shape)
    if _per_row(shape, sort_by):
        return _row_statement(log, spec, mapped, dialect, sort_by, sort_direction, shape)
    keys_fn = func.jsonb_each if pg else func.json_each
    keys = keys_fn(func.coalesce(log.c.new_data, log.c.old_data)).table_valued("key", "value")
    if pg:
        keys = keys.render_derived(name="sqlaudit_keys")
    key = keys.c.key
    # insert and delete rows store every tracked column; NULLs are not changes
    is_null = keys.c.value == text("'null'::jsonb") if pg else keys.c.value.is_(None)
    json_nulls = _json_null_fields(spec.table, dialect)
    if json_nulls:  # and neither is a JSON column's JSON null (stored as the text "null")
        null_text = text("'\"null\"'::jsonb") if pg else literal_column("'null'")
        is_null = or_(is_null, and_(key.in_([_name_literal(n, dialect) for n in json_nulls]),
                                    keys.c.value == null_text))
    columns: list[ColumnElement[Any]] = [*_row_columns(log), key.label("field")]
    if pg:
        for i, col in enumerate(mapped):
            name = _name_literal(col.name, dialect)
            for side in ("old", "new"):
                columns.append(case((key == name, _typed(log, side, col, name, dialect))).label(f"{side}_{i}"))
        # a field that is no longer a column comes back as its JSON value; only
        # then, so the typed fields are not also sent (and parsed) as JSON
        unmapped = key.not_in([_name_literal(c.name, dialect) for c in mapped])
        columns += [case((unmapped, type_coerce(log.c.old_data, JSONB)[key])).label("old_raw"),
                    case((unmapped, type_coerce(log.c.new_data, JSONB)[key])).label("new_raw")]
    else:
        columns += [type_coerce(log.c.old_data, Text).label("old_raw"),
                    type_coerce(log.c.new_data, Text).label("new_raw")]
    truncate = log.c.operation == "truncate"  # no key: kept by the outer join, one record
    conditions = [*_row_conditions(log, spec, pg, shape),
                  or_(log.c.operation == "update", ~is_null, truncate)]
    if has_fields:
        conditions.append(or_(key.in_(bindparam("fields", expanding=True)), truncate))
    if spec.inherited:  # a parent's rows: only the fields this model inherits
        conditions.append(or_(log.c.table_name == text_param(spec.name),
                              key.in_([_name_literal(c.name, dialect) for c in spec.inherited])))
    # field names in code point order on both databases (and as Python sorts them)
    by_key = key.collate("C") if pg else key
    order = _row_order(log, by_key if sort_by == "field_name" else None, sort_by, sort_direction)
    stmt = select(*columns).select_from(log.outerjoin(keys, true())).where(and_(*conditions))
    stmt = stmt.order_by(*order, by_key.asc())
    if has_limit:
        stmt = stmt.limit(bindparam("limit", type_=Integer))
    if has_offset:
        stmt = stmt.offset(bindparam("offset", type_=Integer))
    return stmt


def _row_statement(log: Any, spec: TableSpec, mapped: list[Column[Any]], dialect: Dialect,
                   sort_by: str, sort_direction: str, shape: tuple[int, ...]) -> Any:
    """One row per audit row: its JSON as text (for the field names, and the values of
    fields of exact JSON types or no longer columns) and, on PostgreSQL, the old and
    new value of every other mapped column converted to the column's type."""
    pg = dialect.name == "postgresql"
    columns: list[ColumnElement[Any]] = [*_row_columns(log),
                                         cast(log.c.old_data, Text).label("old_raw"),
                                         cast(log.c.new_data, Text).label("new_raw")]
    if spec.inherited:
        columns.append(log.c.table_name.label("source_table"))
    if pg:
        for i, col in enumerate(mapped):
            if _json_exact(col, dialect):
                continue  # its JSON value is already what the driver returns
            name = _name_literal(col.name, dialect)
            columns += [_typed(log, "old", col, name, dialect).label(f"old_{i}"),
                        _typed(log, "new", col, name, dialect).label(f"new_{i}")]
    stmt = select(*columns).where(and_(*_row_conditions(log, spec, pg, shape,
                                                        is_mysql(dialect.name))))
    return stmt.order_by(*_row_order(log, None, sort_by, sort_direction))


#: PostgreSQL column types whose values the triggers' JSON holds exactly as the
#: driver returns them (JSON string -> str, integer -> int, true/false -> bool)
_JSON_EXACT_TYPES: tuple[type, ...] = (String, Integer, Boolean)


def _json_exact(col: Column[Any], dialect: Dialect) -> bool:
    """Whether decoding ``col``'s JSON value gives the value the ORM reads: a plain
    string, integer or boolean type, without a TypeDecorator or result processor
    (an Enum, say, has one)."""
    impl = col.type.dialect_impl(dialect)
    return (isinstance(impl, _JSON_EXACT_TYPES) and not isinstance(impl, TypeDecorator)
            and impl.result_processor(dialect, None) is None)


def _row_columns(log: Any) -> list[ColumnElement[Any]]:
    return [log.c.id, log.c.resource_id, log.c.operation, log.c.changed_at, log.c.changed_by,
            log.c.transaction_id, log.c.reason, log.c.db_role, log.c.context,
            log.c.application_name, log.c.client_addr]


def _row_order(log: Any, field: Optional[ColumnElement[Any]], sort_by: str,
               sort_direction: str) -> list[ColumnElement[Any]]:
    """ORDER BY the sort key, then the time and order of the changes."""
    # ``log`` is a Table or an alias of one; its columns are typed Any here
    order_col: Any = field if sort_by == "field_name" else {
        "timestamp": log.c.changed_at, "resource_id": log.c.resource_id,
        "changed_by": log.c.changed_by, "operation": log.c.operation,
        "transaction_id": log.c.transaction_id,
    }[sort_by]

    def direction(c: ColumnElement[Any]) -> ColumnElement[Any]:
        return c.desc() if sort_direction == "desc" else c.asc()

    order = [direction(order_col)]
    if sort_by != "timestamp":
        order.append(direction(log.c.changed_at))
    return order + [direction(log.c.id)]


def _row_conditions(log: Any, spec: TableSpec, pg: bool,
                    shape: tuple[int, ...], mysql: bool = False) -> list[ColumnElement[bool]]:
    """The WHERE conditions on the audit row: table, keys, users, dates."""
    has_ids, composite, _, has_users, has_start, has_end = shape[:6]
    conditions = [_table_rows(log, spec, pg, mysql)]
    if has_ids and composite:
        array = (lambda *p: cast(func.json_build_array(*p), Text)) if pg else func.json_array
        conditions.append(log.c.resource_id.in_([
            array(*[bindparam(f"id_{i}_{j}", type_=Text) for j in range(len(spec.key_columns))])
            for i in range(composite)
        ]))
    elif has_ids == 1:
        conditions.append(log.c.resource_id == text_param(key="ids"))
    elif has_ids:
        conditions.append(log.c.resource_id.in_(text_param(key="ids", expanding=True)))
    if has_users and mysql:
        # MariaDB's ix_sqlaudit_log_user is a prefix index of the column itself: it
        # serves the exact ids (an expression such as SUBSTR() would bypass it).
        conditions.append(log.c.changed_by.in_(text_param(key="users", expanding=True)))
    elif has_users:
        # The user index holds a prefix (ids of any length fit a B-tree entry):
        # find candidates by prefix, keep the exact ids.
        conditions.append(user_prefix(log.c.changed_by).in_(
            text_param(key="user_prefixes", expanding=True)))
        if has_users == 2:  # see _user_conditions_needed
            # On SQLite a plain equality on changed_by keeps the planner away from the
            # expression index; the CAST (a no-op on text) leaves it a filter only.
            exact = log.c.changed_by if pg else cast(log.c.changed_by, Text)
            conditions.append(exact.in_(text_param(key="users", expanding=True)))
    if has_start:
        conditions.append(log.c.changed_at >= bindparam("start", type_=log.c.changed_at.type))
    if has_end:
        conditions.append(log.c.changed_at <= bindparam("end", type_=log.c.changed_at.type))
    if len(shape) > 8 and shape[8]:
        conditions.append(log.c.transaction_id.in_(
            bindparam("transactions", expanding=True, type_=BigInteger())))
    return conditions


def _name_literal(name: str, dialect: Dialect) -> ColumnElement[str]:
    """A column name of the model as a SQL string literal: it is part of the
    statement (cached per model), not a value of the call, so it is rendered
    once instead of travelling as one bind parameter per use on every call."""
    return literal_column(string_literal(name, dialect), Text)


def _typed(log: Any, side: str, col: Column[Any], name: ColumnElement[str], dialect: Dialect) -> Any:
    """PostgreSQL: the JSON value of ``col`` converted to the column's type in SQL."""
    return _typed_value(log.c[f"{side}_data"], col, name, dialect)


def _typed_value(data: Any, col: Column[Any], name: ColumnElement[str], dialect: Dialect) -> Any:
    """PostgreSQL: member ``name`` of the jsonb ``data`` converted to ``col``'s type."""
    data = type_coerce(data, JSONB)
    impl = base_type(col.type, dialect)
    if isinstance(impl, JSONB):
        return type_coerce(data[name], col.type)  # the JSON value itself
    if isinstance(impl, String):
        return type_coerce(data[name].astext, col.type)  # no varchar(n) truncation
    return cast(data[name].astext, col.type)


def _exact_user_needed(users: Sequence[str]) -> bool:
    """Whether matching the indexed prefix of ``changed_by`` can let other users
    through: only for an id as long as the prefix or longer. A shorter id equals
    the prefix of exactly the ``changed_by`` values equal to it (the prefix of a
    longer value has the prefix's full length), so the exact condition is left
    out: with it, PostgreSQL multiplies the two conditions' selectivities,
    expects a handful of rows and reads every record of the user to sort them,
    instead of reading the newest ones from the index."""
    return any(len(u) >= USER_PREFIX for u in users)


def _user_text(value: Any) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise SQLAuditArgumentTypeError(f"user ids must be str, int or UUID, got {value!r}")
    return str(value)


def _missing_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "sqlaudit_log" in message and ("no such table" in message or "does not exist" in message
                                          or "doesn't exist" in message)


_ROW_FIELDS = ("id", "resource_id", "operation", "changed_at", "changed_by", "transaction_id",
               "reason", "db_role", "old_raw", "new_raw", "context", "application_name",
               "client_addr")


def _record(shared: dict[str, Any], field_name: Optional[str], old: Any, new: Any) -> SQLAuditRecord:
    """A record from the fields its audit row shares and its own three.

    Fills the frozen dataclass's ``__dict__`` directly: its generated ``__init__``
    sets each of the twelve fields through ``object.__setattr__`` (about 4 us a
    record against 0.7 us), and a call may build thousands."""
    record = object.__new__(SQLAuditRecord)
    values = record.__dict__
    values.update(shared)
    values["field_name"] = field_name
    values["old_value"] = old
    values["new_value"] = new
    return record


class _Rows:
    """Reads the result rows of either query by position (a Row's attribute lookup
    costs ten times more) and converts what an audit row's records share once."""

    def __init__(self, rows: Sequence[Any], spec: TableSpec, attr_by_column: dict[str, str],
                 pg: bool, dialect: Dialect):
        at = {name: i for i, name in enumerate(rows[0]._fields)}
        self.index = tuple(at[name] for name in _ROW_FIELDS)
        self.field = at.get("field")
        # PostgreSQL: column name -> positions of its typed old and new values (a
        # whole-history read has none for columns of exact JSON types)
        self.typed = {name: (at[f"old_{i}"], at[f"new_{i}"])
                      for i, name in enumerate(attr_by_column) if f"old_{i}" in at} if pg else {}
        self.processors = ({} if pg else _mysql_processors(spec.table) if is_mysql(dialect.name)
                           else _sqlite_processors(spec.table, dialect))
        if spec.inherited and not pg:
            self.processors = {**{c.name: c.type.dialect_impl(dialect).result_processor(dialect, None)
                                  for c in spec.inherited}, **self.processors}
        # joined-table inheritance: a parent table's rows give only the inherited fields
        self.source = at.get("source_table")
        self.inherited = {c.name for c in spec.inherited}
        self.attr_by_column = attr_by_column
        self.spec = spec
        self.pg = pg
        self.zone = _display_zone()

    def shared(self, row: Any) -> dict[str, Any]:
        """The fields of the records of ``row``'s audit row, except the three of each field."""
        (_, i_resource, i_operation, i_changed_at, i_changed_by, i_transaction, i_reason,
         i_role, _, _, i_context, i_application, i_client) = self.index
        return {
            "_audit_id": row[self.index[0]],  # not a field: groups records by audit row
            "context": row[i_context],
            "application_name": row[i_application],
            "client_addr": row[i_client],
            "table_name": self.spec.name,
            "table_label": self.spec.label,
            "resource_id": row[i_resource],
            "timestamp": _timestamp(row[i_changed_at], self.zone),
            "changed_by": row[i_changed_by],
            "operation": row[i_operation],
            "transaction_id": row[i_transaction],
            "reason": row[i_reason],
            "db_role": row[i_role],
        }

    def values(self, row: Any, field: str, old_doc: dict[str, Any],
               new_doc: dict[str, Any]) -> tuple[Any, Any]:
        """The old and new value of ``field``: typed in SQL, or from the decoded JSON."""
        positions = self.typed.get(field)
        if positions is not None:
            return row[positions[0]], row[positions[1]]
        if self.pg:  # a column of an exact JSON type, or a field no longer a column
            return old_doc.get(field), new_doc.get(field)
        process = self.processors.get(field)
        return _sqlite_value(old_doc.get(field), process), _sqlite_value(new_doc.get(field), process)


def _records(rows: Sequence[Any], spec: TableSpec, attr_by_column: dict[str, str], pg: bool,
             dialect: Dialect) -> list[SQLAuditRecord]:
    """One record per row of the per-field query (one row per changed field). Rows of
    the same audit row share their converted fields and decoded JSON."""
    if not rows:
        return []
    read = _Rows(rows, spec, attr_by_column, pg, dialect)
    i_id, i_old_raw, i_new_raw, i_field = read.index[0], read.index[8], read.index[9], read.field
    per_row: dict[Any, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
    records = []
    for row in rows:
        cached = per_row.get(row[i_id])
        if cached is None:
            old_raw, new_raw = row[i_old_raw], row[i_new_raw]
            cached = per_row[row[i_id]] = (
                read.shared(row),
                {} if pg else _doc(old_raw),
                {} if pg else _doc(new_raw),
            )
        field = row[i_field]
        if field is None:  # a truncate
            records.append(_record(cached[0], None, None, None))
            continue
        if pg and field not in read.typed:
            # PostgreSQL: a field that is no longer a column comes as its JSON value
            old, new = row[i_old_raw], row[i_new_raw]
        else:
            old, new = read.values(row, field, cached[1], cached[2])
        records.append(_record(cached[0], attr_by_column.get(field, field), old, new))
    return records


def _expand(rows: Sequence[Any], spec: TableSpec, attr_by_column: dict[str, str], pg: bool,
            dialect: Dialect) -> list[SQLAuditRecord]:
    """One record per changed field of each audit row, in field name order: the
    fields an update changed, the non-NULL fields of an insert or a delete (the
    same records, in the same order, as the per-field query returns)."""
    if not rows:
        return []
    read = _Rows(rows, spec, attr_by_column, pg, dialect)
    i_operation, i_old_raw, i_new_raw = read.index[2], read.index[8], read.index[9]
    json_nulls = _json_null_fields(spec.table, dialect)
    records = []
    for row in rows:
        old_raw, new_raw = row[i_old_raw], row[i_new_raw]
        if row[i_operation] == "truncate":  # a table-level event: no resource, no field
            records.append(_record(read.shared(row), None, None, None))
            continue
        old_doc, new_doc = _doc(old_raw), _doc(new_raw)
        changed = new_doc if new_raw is not None else old_doc
        if row[i_operation] != "update":  # inserts and deletes store every tracked column
            changed = {k: v for k, v in changed.items()
                       if v is not None and not (v == "null" and k in json_nulls)}
        if read.source is not None and row[read.source] != spec.name:
            changed = {k: v for k, v in changed.items() if k in read.inherited}
        if not changed:
            continue
        shared = read.shared(row)
        for field in sorted(changed):
            old, new = read.values(row, field, old_doc, new_doc)
            records.append(_record(shared, attr_by_column.get(field, field), old, new))
    return records


@lru_cache(maxsize=512)
def _json_null_fields(table: Any, dialect: Dialect) -> frozenset[str]:
    """Columns whose JSON null the triggers store as the JSON text ``"null"``: JSON
    columns kept as text (PostgreSQL ``json``, every JSON column on SQLite). A
    ``jsonb`` value is nested, so its JSON null is already a JSON null.

    The ORM reads a JSON column's JSON null and SQL NULL as the same ``None``; the
    history does too, so neither is listed among an insert's or a delete's fields."""
    if table is None:
        return frozenset()
    return frozenset(c.name for c in table.columns
                     if isinstance(t := base_type(c.type, dialect), JSON) and not isinstance(t, JSONB))


_DECODER = json.JSONDecoder()


def _doc(raw: Optional[str]) -> dict[str, Any]:
    """An audit row's old or new JSON object, ``{}`` for NULL.

    ``raw_decode`` calls the parser directly, without the type checks and two
    whitespace scans around it in ``json.loads`` (0.75 against 2.6 us for a
    two-field object here); the text comes from the database's own JSON
    functions, so anything it cannot take falls back to ``json.loads``."""
    if not raw:
        return {}
    try:
        doc: dict[str, Any] = _DECODER.raw_decode(raw)[0]
        return doc
    except ValueError:
        loaded: dict[str, Any] = json.loads(raw)
        return loaded


@lru_cache(maxsize=512)
def _sqlite_processors(table: Any, dialect: Dialect) -> dict[str, Optional[Callable[[Any], Any]]]:
    """Column name -> the result processor SQLAlchemy applies to that column on SQLite
    (cached: asking every column type for it on every call cost a few percent of
    a short history read)."""
    return {c.name: c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in table.columns}


@lru_cache(maxsize=512)
def _mysql_processors(table: Any) -> dict[str, Optional[Callable[[Any], Any]]]:
    """Column name -> converter of the JSON value MariaDB's triggers wrote for it.

    The triggers write values as SQLite's do (dates, DECIMAL and JSON as their
    text, see :mod:`sqlaudit.dialects.mysql`), so the SQLite result processors read
    them, except: DECIMAL (its text read exactly); floats (JSON numbers, which
    MariaDB writes without a fraction when they have none: ``1``, read as the
    float ``1.0``, then through the column type's own processor: a DOUBLE with
    ``asdecimal`` becomes the Decimal the ORM reads); BIT and YEAR (JSON numbers,
    as the driver returns them); TIME (its text can exceed 24 hours: read as the
    driver's timedelta, then MySQL's processor)."""
    from sqlalchemy.dialects import mysql, sqlite

    mysql_dialect, sqlite_dialect = mysql.dialect(), sqlite.dialect()
    result: dict[str, Optional[Callable[[Any], Any]]] = {}
    for c in table.columns:
        impl = base_type(c.type, mysql_dialect)
        if isinstance(impl, (mysql.BIT, mysql.YEAR)):
            result[c.name] = None
        elif isinstance(impl, Float):
            result[c.name] = _then(_float, c.type.dialect_impl(mysql_dialect)
                                   .result_processor(mysql_dialect, None))
        elif isinstance(impl, Numeric):
            result[c.name] = _decimal if impl.asdecimal else float
        elif isinstance(impl, Time):
            result[c.name] = _then(_mysql_time, c.type.dialect_impl(mysql_dialect)
                                   .result_processor(mysql_dialect, None))
        else:
            result[c.name] = c.type.dialect_impl(sqlite_dialect).result_processor(sqlite_dialect, None)
    return result


def _then(first: Callable[[Any], Any],
          second: Optional[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    return first if second is None else (lambda value: second(first(value)))


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _mysql_time(value: Any) -> Any:
    """MariaDB's TIME text (``-838:59:59.000000`` to ``838:59:59.000000``) as the
    ``timedelta`` the driver returns for it."""
    if value is None:
        return None
    text_ = str(value)
    sign = -1 if text_.startswith("-") else 1
    hours, minutes, seconds = text_.lstrip("-").split(":")
    whole, _, fraction = seconds.partition(".")
    return sign * timedelta(hours=int(hours), minutes=int(minutes), seconds=int(whole),
                            microseconds=int((fraction + "000000")[:6]))


def _decimal(value: Any) -> Any:
    return Decimal(str(value))


# Reads across tables and of past states live in their own modules; this is their home.
from . import _history  # noqa: E402
from ._history import AuditTransaction, get_changes, get_transactions  # noqa: E402
from ._state import get_resource_state, get_table_state  # noqa: E402
