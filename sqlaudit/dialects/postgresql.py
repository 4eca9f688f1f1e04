"""PostgreSQL trigger SQL for one tracked table (internal)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Time,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIT, CIDR, HSTORE, INET, JSONB, MACADDR, MONEY, TSVECTOR
from sqlalchemy.dialects.postgresql.ranges import AbstractRange
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from .. import _fingerprint, _templates
from .._naming import pg_function_name
from ..schema import audit_table
from ..spec import TableSpec
from . import base_type, string_literal

DIALECT = "postgresql"
# The JSON value jsonb_build_object() makes of these types (what to_jsonb()
# gives) has a text that casts straight back; every other type goes in as its text.
_JSON_NATIVE = (Integer, Numeric, Boolean, String, Enum, JSON, Date, DateTime, Time, Uuid,
                LargeBinary, Interval)
#: Types compared with their own ``=`` (a pg_catalog operator); others by their text.
_CATALOG_COMPARABLE = (Integer, Numeric, Boolean, String, Enum, JSONB, Date, DateTime, Time,
                       Uuid, LargeBinary, Interval, INET, CIDR, MACADDR, TSVECTOR, BIT, MONEY,
                       AbstractRange)
_MAX_PAIRS = 50  # jsonb_build_object takes at most 100 arguments


def _q(name: str, dialect: Dialect) -> str:
    return str(dialect.identifier_preparer.quote(name))


def _qualified(schema: "str | None", name: str, dialect: Dialect) -> str:
    prep = dialect.identifier_preparer
    quoted = prep.quote(name)
    return f"{prep.quote_schema(schema)}.{quoted}" if schema else quoted


def _ref(col: Column[Any], alias: str, dialect: Dialect) -> str:
    return f"{alias}.{_q(col.name, dialect)}"


def _value(col: Column[Any], alias: str, dialect: Dialect) -> str:
    """The argument of jsonb_build_object() for ``col`` (which converts it as to_jsonb() would;
    passing the column itself saves a to_jsonb() call per value)."""
    ref = _ref(col, alias, dialect)
    impl = base_type(col.type, dialect)
    if isinstance(impl, JSON) and not isinstance(impl, JSONB):
        # json keeps its exact text (number forms, \u0000) that jsonb would reject or rewrite
        return f"{ref}::text"
    if isinstance(impl, _JSON_NATIVE):
        return ref
    return f"{ref}::text"


def _comparable_type(impl: TypeEngine[Any], dialect: Dialect) -> bool:
    """True for types whose ``=`` lives in pg_catalog (found under the function's
    pinned search_path). json has none; hstore's and other extensions' live in
    the extension's schema; unknown and user-defined types may have none."""
    if isinstance(impl, ARRAY):
        return _comparable_type(base_type(impl.item_type, dialect), dialect)
    if isinstance(impl, HSTORE) or (isinstance(impl, JSON) and not isinstance(impl, JSONB)):
        return False
    return isinstance(impl, _CATALOG_COMPARABLE)


def _comparable(col: Column[Any], dialect: Dialect) -> bool:
    """Whether ``col`` is compared natively; anything else is compared on its text form."""
    return _comparable_type(base_type(col.type, dialect), dialect)


def _distinct(col: Column[Any], old: str, new: str, dialect: Dialect, negate: bool = False) -> str:
    a, b = _ref(col, old, dialect), _ref(col, new, dialect)
    if not _comparable(col, dialect):
        a, b = f"{a}::text", f"{b}::text"
    op = "IS NOT DISTINCT FROM" if negate else "IS DISTINCT FROM"
    return f"{a} {op} {b}"


def _object(columns: Sequence[Column[Any]], alias: str, dialect: Dialect) -> str:
    """jsonb object of all ``columns`` (chunked under the 100-argument limit)."""
    parts = []
    for start in range(0, len(columns), _MAX_PAIRS):
        pairs = ", ".join(
            f"{string_literal(c.name, dialect)}, {_value(c, alias, dialect)}"
            for c in columns[start : start + _MAX_PAIRS]
        )
        parts.append(f"jsonb_build_object({pairs})")
    return " || ".join(parts)


def _key_array(cases: Sequence[str]) -> str:
    return f"array_remove(ARRAY[{', '.join(cases)}]::text[], NULL)"


def _key(spec: TableSpec, alias: str, dialect: Dialect) -> str:
    refs = [f"{_ref(c, alias, dialect)}::text" for c in spec.key_columns]
    if len(refs) == 1:
        return refs[0]
    return f"json_build_array({', '.join(refs)})::text"


def _dollar_tag(body: str) -> str:
    tag, n = "$sqlaudit$", 0
    while tag in body:
        n += 1
        tag = f"$sqlaudit{n}$"
    return tag


def _common(spec: TableSpec, dialect: Dialect) -> dict[str, str]:
    return {
        "table": _qualified(spec.schema, spec.name, dialect),
        "function_name": _qualified(spec.schema, pg_function_name(spec.table), dialect),
    }


_REQUIRE_USER_CHECK = """\
    GET DIAGNOSTICS _rows = ROW_COUNT;
    IF _rows > 0 AND _actor IS NULL THEN
        RAISE EXCEPTION USING
            MESSAGE = 'sqlaudit: ' || TG_OP || ' on ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME
                || ' needs an acting user (require_user_id is on)',
            HINT = 'Write inside sqlaudit.context.audit_context(user_id=...), configure '
                || 'get_user_id_callback, or SET LOCAL sqlaudit.user_id in raw SQL.';
    END IF;"""
#: Stands for "the connection's current schema" while hashing the fingerprint.
_DEFAULT_SCHEMA_TOKEN = "<default schema>"


#: Where the audit table is taken to live when SQL is rendered without a connection
#: and neither the MetaData nor the caller names a schema.
OFFLINE_SCHEMA = "public"


def audit_schema(spec: TableSpec, default_schema: Optional[str]) -> str:
    """Schema of the audit table: the MetaData's, else the connection's default,
    else (rendering offline) :data:`OFFLINE_SCHEMA`. Always a schema: every
    rendered statement names the log by schema."""
    return audit_table(spec.table.metadata).schema or default_schema or OFFLINE_SCHEMA


def _body_statements(
    spec: TableSpec, dialect: Dialect, schema: str, require_user: bool
) -> list[str]:
    log_table = audit_table(spec.table.metadata)
    common = _common(spec, dialect)
    unchanged = [
        f"CASE WHEN {_distinct(c, 'o', 'n', dialect, negate=True)} "
        f"THEN {string_literal(c.name, dialect)} END"
        for c in spec.columns
    ]
    key_join = " AND ".join(
        f"{_ref(c, 'o', dialect)} = {_ref(c, 'n', dialect)}" for c in spec.key_columns
    )
    values = {
        "function_name": common["function_name"],
        "audit_table": _qualified(schema, log_table.name, dialect),
        "table_regclass": string_literal(_qualified(spec.schema or schema, spec.name, dialect), dialect),
        "function_literal": string_literal(common["function_name"] + "()", dialect),
        "require_user_check": _REQUIRE_USER_CHECK if require_user else "",
        "require_user_declare": "    _rows bigint;\n" if require_user else "",
        "schema_literal": string_literal(spec.schema, dialect) if spec.schema else "NULL",
        "table_literal": string_literal(spec.name, dialect),
        "update_unchanged": _key_array(unchanged),
        "first_key": _q(spec.key_columns[0].name, dialect),
        "key_join": key_join,
        "update_changed": "(" + " OR ".join(_distinct(c, "o", "n", dialect) for c in spec.columns) + ")",
        "update_old_data": f"({_object(spec.columns, 'o', dialect)})",
        "update_new_data": f"({_object(spec.columns, 'n', dialect)})",
        "insert_key": _key(spec, "n", dialect),
        "insert_data": _object(spec.columns, "n", dialect),
        "delete_key": _key(spec, "o", dialect),
        "delete_data": _object(spec.columns, "o", dialect),
    }
    probe = "".join(values.values())
    values["dollar"] = _dollar_tag(probe)
    statements = _templates.render(DIALECT, "function", **values)
    statements += _templates.render(DIALECT, "triggers", **common)
    return statements


def fingerprint(spec: TableSpec, dialect: Dialect) -> dict[str, Any]:
    """What :func:`install_statements` stores for drift detection.

    Independent of where the audit table's default schema is resolved, so an
    offline rendering and an online installation agree.
    """
    require = spec.require_user
    schema = audit_table(spec.table.metadata).schema or _DEFAULT_SCHEMA_TOKEN
    fp = _fingerprint.make(spec, DIALECT, _body_statements(spec, dialect, schema, require))
    fp["require_user"] = require
    return fp


def install_statements(
    spec: TableSpec, dialect: Dialect, default_schema: Optional[str] = None
) -> list[str]:
    """CREATE FUNCTION, CREATE TRIGGER and COMMENT (fingerprint) statements for ``spec``.

    ``default_schema`` is where the audit table lives when its MetaData names
    no schema (the connection's ``current_schema()``). Without either, the
    audit table is left unqualified and the function pins the installing
    session's search_path.
    """
    body = _body_statements(spec, dialect, audit_schema(spec, default_schema), spec.require_user)
    comment = _fingerprint.pg_comment(fingerprint(spec, dialect))
    return body + _templates.render(
        DIALECT, "comment", function_name=_common(spec, dialect)["function_name"],
        fingerprint=string_literal(comment, dialect),
    )


def descendant_statements(spec: TableSpec, dialect: Dialect,
                          descendants: Sequence[tuple[str, str]]) -> list[str]:
    """The triggers of ``spec``'s partitions and inheritance children ``(schema, name)``,
    running ``spec``'s function (so their changes are recorded under ``spec``'s table)."""
    function = _common(spec, dialect)["function_name"]
    statements: list[str] = []
    for schema, name in descendants:
        statements += _templates.render(DIALECT, "triggers",
                                        table=_qualified(schema, name, dialect),
                                        function_name=function)
    return statements


def drop_statements(spec: TableSpec, dialect: Dialect) -> list[str]:
    """DROP TRIGGER and DROP FUNCTION statements for ``spec``."""
    return _templates.render(DIALECT, "drop", **_common(spec, dialect))


def _protect_names(metadata: MetaData, dialect: Dialect, default_schema: Optional[str]) -> dict[str, str]:
    log_table = audit_table(metadata)
    schema = log_table.schema or default_schema
    return {
        "audit_table": _qualified(schema, log_table.name, dialect),
        "protect_function": _qualified(schema, f"{log_table.name}_protect", dialect),
    }


def protect_statements(metadata: MetaData, dialect: Dialect, default_schema: Optional[str] = None) -> list[str]:
    """Append-only guards on the audit table (the MetaData's ``sqlaudit_log``)."""
    return _templates.render(DIALECT, "protect", **_protect_names(metadata, dialect, default_schema))


def unprotect_statements(metadata: MetaData, dialect: Dialect, default_schema: Optional[str] = None) -> list[str]:
    names = _protect_names(metadata, dialect, default_schema)
    return _templates.render(DIALECT, "unprotect", protect_function=names["protect_function"])
