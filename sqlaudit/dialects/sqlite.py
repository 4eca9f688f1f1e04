"""SQLite trigger SQL for one tracked table (internal)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Sequence

from sqlalchemy import Column, MetaData, Uuid
from sqlalchemy.engine import Dialect

from .. import _fingerprint, _templates
from .._naming import AUDIT_TABLE_NAME, sqlite_trigger_name
from ..spec import TableSpec
from . import base_type, string_literal

DIALECT = "sqlite"
#: Same text layout SQLAlchemy uses for DateTime on SQLite (UTC, microseconds).
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"


def _q(name: str, dialect: Dialect) -> str:
    return str(dialect.identifier_preparer.quote(name))


def _ref(col: Column[Any], alias: str, dialect: Dialect) -> str:
    return f"{alias}.{_q(col.name, dialect)}"


def encode(ref: str) -> str:
    """JSON text of one value: reals keep 21 significant digits (and Inf) as {"$r": text},
    blobs become {"$b": hex}, everything else is json_quote()d."""
    return (
        f"CASE typeof({ref}) "
        f"WHEN 'real' THEN '{{\"$r\":\"' || printf('%!.20e', {ref}) || '\"}}' "
        f"WHEN 'blob' THEN '{{\"$b\":\"' || hex({ref}) || '\"}}' "
        f"ELSE json_quote({ref}) END"
    )


_MAX_PAIRS = 60  # json_object() takes at most 127 arguments by default


def _value(ref: str) -> str:
    """A value for json_object(): reals and blobs become marker objects (see encode)."""
    return (
        f"CASE typeof({ref}) "
        f"WHEN 'real' THEN json_object('$r', printf('%!.20e', {ref})) "
        f"WHEN 'blob' THEN json_object('$b', hex({ref})) "
        f"ELSE {ref} END"
    )


def _full_object(columns: Sequence[Column[Any]], alias: str, dialect: Dialect) -> str:
    """JSON object of every column in ``columns`` (insert and delete; NULLs are
    skipped when reading). Chunks are merged with json_patch, which drops NULL
    members, harmless here."""
    chunks = []
    for start in range(0, len(columns), _MAX_PAIRS):
        pairs = ", ".join(
            f"{string_literal(c.name, dialect)}, {_value(_ref(c, alias, dialect))}"
            for c in columns[start : start + _MAX_PAIRS]
        )
        chunks.append(f"json_object({pairs})")
    while len(chunks) > 1:  # a balanced tree: wide tables stay within the parser's depth
        chunks = [f"json_patch({chunks[i]}, {chunks[i + 1]})" if i + 1 < len(chunks) else chunks[i]
                  for i in range(0, len(chunks), 2)]
    return chunks[0]


def _any(conditions: Iterable[str]) -> str:
    """``a OR b OR ...`` as a balanced tree (SQLite limits an expression's depth to 1000)."""
    terms = list(conditions)
    while len(terms) > 1:
        terms = [f"({terms[i]} OR {terms[i + 1]})" if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _object(
    columns: Sequence[Column[Any]], alias: str, dialect: Dialect, where: "dict[str, str]"
) -> str:
    """JSON object text of ``columns``, each included only when its ``where`` holds.

    Plain expressions: each member is ``,"name":value`` or ``''`` and the leading
    comma is cut off. No subquery per row (an earlier UNION ALL form cost about 5%
    more on a bulk UPDATE and failed beyond 500 columns, SQLite's compound SELECT
    limit); the concatenation is a balanced tree so wide tables stay far below
    SQLite's expression depth limit.
    """
    members = []
    for col in columns:
        key = "," + json.dumps(col.name, ensure_ascii=False) + ":"
        member = f"{string_literal(key, dialect)} || {encode(_ref(col, alias, dialect))}"
        condition = where.get(col.name)
        members.append(f"CASE WHEN {condition} THEN {member} ELSE '' END" if condition else f"({member})")
    while len(members) > 1:
        members = [
            f"({members[i]} || {members[i + 1]})" if i + 1 < len(members) else members[i]
            for i in range(0, len(members), 2)
        ]
    return f"('{{' || substr({members[0]}, 2) || '}}')"


def _key_part(col: Column[Any], alias: str, dialect: Dialect) -> str:
    ref = _ref(col, alias, dialect)
    if isinstance(base_type(col.type, dialect), Uuid):
        # SQLAlchemy stores UUIDs as 32 hex digits on SQLite; report str(uuid).
        return (
            f"CASE WHEN length({ref}) = 32 THEN lower(substr({ref}, 1, 8) || '-' || "
            f"substr({ref}, 9, 4) || '-' || substr({ref}, 13, 4) || '-' || "
            f"substr({ref}, 17, 4) || '-' || substr({ref}, 21, 12)) ELSE CAST({ref} AS TEXT) END"
        )
    return f"CAST({ref} AS TEXT)"


def key_expression(spec: TableSpec, alias: str, dialect: Dialect) -> str:
    parts = [_key_part(c, alias, dialect) for c in spec.key_columns]
    return parts[0] if len(parts) == 1 else f"json_array({', '.join(parts)})"


def _names(spec: TableSpec, dialect: Dialect) -> dict[str, str]:
    prep = dialect.identifier_preparer

    def trigger(op: str) -> str:
        name = prep.quote(sqlite_trigger_name(spec.table, op))
        return f"{prep.quote_schema(spec.schema)}.{name}" if spec.schema else name

    return {
        "insert_trigger": trigger("insert"),
        "update_trigger": trigger("update"),
        "delete_trigger": trigger("delete"),
        "rekey_trigger": trigger("rekey"),
        # on the audit table, which lives in main
        "require_trigger": "main." + prep.quote(sqlite_trigger_name(spec.table, "require")),
    }


def fingerprint(spec: TableSpec, dialect: Dialect) -> dict[str, Any]:
    """What :func:`install_statements` stores for drift detection."""
    fp = _fingerprint.make(spec, DIALECT, _render(spec, dialect, ""))
    fp["require_user"] = spec.require_user
    return fp


def install_statements(spec: TableSpec, dialect: Dialect, default_schema: Optional[str] = None) -> list[str]:
    """CREATE TRIGGER statements for ``spec``, each carrying the fingerprint comment
    (and, fail-closed, the table's check on the audit table)."""
    comment = _fingerprint.sqlite_comment(fingerprint(spec, dialect))
    return _render(spec, dialect, comment) + require_statements(spec, dialect, comment)


def require_statements(spec: TableSpec, dialect: Dialect, comment: Optional[str] = None) -> list[str]:
    """The fail-closed check of ``spec`` on the audit table (only its removal when
    ``spec`` is fail-open). It needs the audit table to exist."""
    comment = comment or _fingerprint.sqlite_comment(fingerprint(spec, dialect))
    message = (f"sqlaudit: a write to {spec.name} needs an acting user (require_user_id is on); "
               f"use sqlaudit.context.audit_context(user_id=...) or get_user_id_callback")
    statements = _templates.render(
        DIALECT, "require_user", require_trigger=_names(spec, dialect)["require_trigger"],
        audit_table=_q(AUDIT_TABLE_NAME, dialect), fingerprint=comment,
        table_literal=string_literal(spec.name, dialect),
        message=string_literal(message, dialect))
    return statements if spec.require_user else statements[:1]


def _render(spec: TableSpec, dialect: Dialect, fingerprint_comment: str) -> list[str]:

    key_same = " AND ".join(
        f"{_ref(c, 'OLD', dialect)} IS {_ref(c, 'NEW', dialect)}" for c in spec.key_columns
    )
    changed = {c.name: f"{_ref(c, 'OLD', dialect)} IS NOT {_ref(c, 'NEW', dialect)}" for c in spec.columns}
    names = _names(spec, dialect)
    del names["require_trigger"]
    values = dict(
        names,
        table=_q(spec.name, dialect),
        audit_table=_q(AUDIT_TABLE_NAME, dialect),
        table_literal=string_literal(spec.name, dialect),
        now=NOW,
        insert_key=key_expression(spec, "NEW", dialect),
        insert_data=_full_object(spec.columns, "NEW", dialect),
        update_when=f"({key_same}) AND {_any(list(changed.values()))}",
        key_changed=_any(
            f"{_ref(c, 'OLD', dialect)} IS NOT {_ref(c, 'NEW', dialect)}" for c in spec.key_columns
        ),
        update_key=key_expression(spec, "NEW", dialect),
        update_old_data=_object(spec.columns, "OLD", dialect, changed),
        update_new_data=_object(spec.columns, "NEW", dialect, changed),
        delete_key=key_expression(spec, "OLD", dialect),
        delete_data=_full_object(spec.columns, "OLD", dialect),
        fingerprint=fingerprint_comment,
    )
    return _templates.render(DIALECT, "triggers", **values)


def drop_statements(spec: TableSpec, dialect: Dialect) -> list[str]:
    """DROP TRIGGER statements for ``spec``."""
    return _templates.render(DIALECT, "drop", **_names(spec, dialect))


def protect_statements(metadata: MetaData, dialect: Dialect, default_schema: Optional[str] = None) -> list[str]:
    """Append-only guards on the audit table (fail-closed checks are per table)."""
    table = _q(AUDIT_TABLE_NAME, dialect)
    return _templates.render(DIALECT, "protect", audit_table=table)


def unprotect_statements(metadata: MetaData, dialect: Dialect, default_schema: Optional[str] = None) -> list[str]:
    return []  # SQLite drops a table's triggers with it


def context_statements(stamp_trigger: str, old_stamp_trigger: str,
                       with_context: bool = True) -> list[str]:
    """TEMP objects that stamp the acting user on this connection's audit rows
    (and the context, when the audit table has that column)."""
    quote = rendering_quote()
    return _templates.render(
        DIALECT, "context", audit_table=quote(AUDIT_TABLE_NAME),
        stamp_trigger=quote(stamp_trigger), old_stamp_trigger=quote(old_stamp_trigger),
        context_column=", context" if with_context else "",
        context_value=", (SELECT context FROM temp.sqlaudit_context)" if with_context else "",
    )


def rendering_quote() -> Any:
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect(paramstyle="named").identifier_preparer.quote
