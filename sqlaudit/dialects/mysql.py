"""MariaDB / MySQL trigger SQL for one tracked table (internal).

One ``AFTER ... FOR EACH ROW`` trigger per operation, as on SQLite. The values
are written as JSON in the representation SQLite's triggers use, so that
retrieval reads both the same way: strings and integers as JSON strings and
numbers, DOUBLE as a JSON number (MariaDB prints the shortest text that reads
back as the same double), DECIMAL, dates and times as their text, JSON columns
as the text of their JSON (a JSON string), binary values as ``{"$b": hex}``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

from sqlalchemy import (JSON, TIMESTAMP, Boolean, Column, Date, DateTime, Float, Integer,
                        LargeBinary, MetaData, Numeric, String, Time, Uuid)
from sqlalchemy.dialects.mysql import BIT, YEAR
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.sqltypes import _Binary

from .. import _fingerprint, _templates
from .._naming import AUDIT_TABLE_NAME, mysql_trigger_name
from ..exceptions import SQLAuditArgumentError
from ..spec import TableSpec
from . import base_type, rendering_dialect

DIALECT = "mysql"
#: SIGNAL's MESSAGE_TEXT holds at most 128 characters.
_MESSAGE_LIMIT = 128


def string_literal(value: str, dialect: Dialect) -> str:
    """``value`` as a string literal that means the same under every ``sql_mode``:
    quoted (``'`` doubled) when it has no backslash, else a utf8mb4 hex literal
    (a backslash is an escape character unless NO_BACKSLASH_ESCAPES is set)."""
    if "\\" not in value:
        return "'" + value.replace("'", "''") + "'"
    return f"_utf8mb4 X'{value.encode('utf-8').hex().upper()}'"


def _q(name: str, dialect: Dialect) -> str:
    return str(dialect.identifier_preparer.quote(name))


def _qualified(schema: Optional[str], name: str, dialect: Dialect) -> str:
    prep = dialect.identifier_preparer
    return f"{prep.quote_schema(schema)}.{prep.quote(name)}" if schema else str(prep.quote(name))


def _ref(col: Column[Any], alias: str, dialect: Dialect) -> str:
    return f"{alias}.{_q(col.name, dialect)}"


def _text(ref: str) -> str:
    """``ref`` as utf8mb4 text, whatever the character set of the session that installs."""
    return f"CAST({ref} AS CHAR CHARACTER SET utf8mb4)"


def _value(col: Column[Any], alias: str, dialect: Dialect) -> str:
    """The JSON_OBJECT / JSON_INSERT argument that encodes ``col``'s value."""
    ref = _ref(col, alias, dialect)
    impl = base_type(col.type, dialect)
    if isinstance(impl, (LargeBinary, _Binary)):
        return f"IF({ref} IS NULL, NULL, JSON_OBJECT('$b', HEX({ref})))"
    if isinstance(impl, (BIT, YEAR)):
        return f"CAST({ref} AS UNSIGNED)"  # a JSON number, as the driver reads them
    if isinstance(impl, (Integer, Boolean, Float)):
        return ref  # a JSON number (DOUBLE: the shortest text that reads back exactly)
    if is_timestamp(col):
        return _text(_utc(ref))
    if isinstance(impl, DateTime):  # always six digits of fraction, as SQLite's text has
        return _text(f"CAST({ref} AS DATETIME(6))")
    if isinstance(impl, Time):
        return _text(f"CAST({ref} AS TIME(6))")
    if isinstance(impl, (Numeric, Date, JSON, Uuid)):
        return _text(ref)  # DECIMAL keeps its digits; JSON its text; dates their text
    if isinstance(impl, String):
        return ref
    return _text(ref)


def is_timestamp(col: Column[Any]) -> bool:
    """Whether ``col`` is a TIMESTAMP whichever name SQLAlchemy gives the server's
    dialect: ``mysql`` (a ``mysql://`` URL) or ``mariadb`` (a ``mariadb://`` URL), which
    pick different type variants. A TIMESTAMP under one name only (a variant keyed by
    one of them) is recorded as a DATETIME, as the writing session reads it: the
    triggers and revert_transaction then agree whichever URL created the table."""
    return all(isinstance(base_type(col.type, d), TIMESTAMP) for d in _both_names())


@lru_cache(maxsize=1)
def _both_names() -> tuple[Dialect, Dialect]:
    """A dialect named ``mysql`` and one named ``mariadb``, to resolve type variants."""
    from sqlalchemy.dialects import mysql
    from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect

    return mysql.dialect(), MariaDBDialect()


def _utc(ref: str) -> str:
    """A TIMESTAMP value as the UTC ``DATETIME(6)`` of its instant, whatever the writing
    session's ``time_zone``: ``ref`` itself reads in that zone, UNIX_TIMESTAMP() gives
    the instant (the stored seconds). The zero date, UNIX_TIMESTAMP() 0 (no TIMESTAMP
    holds 1970-01-01 00:00:00 UTC), and NULL keep their own text."""
    return (f"IF(UNIX_TIMESTAMP({ref}) > 0, TIMESTAMP'1970-01-01 00:00:00' + INTERVAL "
            f"UNIX_TIMESTAMP({ref}) * 1000000 MICROSECOND, CAST({ref} AS DATETIME(6)))")


def _distinct(col: Column[Any], dialect: Dialect) -> str:
    """OLD and NEW of ``col`` differ: NULL-safe, and byte-wise for text (a change of
    case or of trailing spaces is a change, whatever the column's collation)."""
    old, new = _ref(col, "OLD", dialect), _ref(col, "NEW", dialect)
    impl = base_type(col.type, dialect)
    if isinstance(impl, (String, JSON)):
        old, new = f"CAST({old} AS BINARY)", f"CAST({new} AS BINARY)"
    return f"NOT ({old} <=> {new})"


def _object(spec: TableSpec, alias: str, dialect: Dialect) -> str:
    pairs = ", ".join(f"{string_literal(c.name, dialect)}, {_value(c, alias, dialect)}"
                      for c in spec.columns)
    return f"JSON_OBJECT({pairs})"


def _any_changed(spec: TableSpec, dialect: Dialect) -> str:
    """Some tracked column's OLD and NEW values differ."""
    return " OR ".join(f"{_distinct(c, dialect)}" for c in spec.columns)


def _changed_members(spec: TableSpec, alias: str, dialect: Dialect) -> str:
    """A JSON object of the tracked columns that changed, with their ``alias`` value.

    One expression, no variables (a variable of the trigger body is allocated on every
    row): each column adds a one-member object when it changed, an empty one when not
    (JSON_MERGE_PRESERVE keeps a JSON null, and takes the column name as a plain
    string, not a JSON path to parse)."""
    parts = ",\n                ".join(
        f"IF({_distinct(c, dialect)}, JSON_OBJECT({string_literal(c.name, dialect)}, "
        f"{_value(c, alias, dialect)}), JSON_OBJECT())" for c in spec.columns)
    return f"JSON_MERGE_PRESERVE(JSON_OBJECT(),\n                {parts})"


def _key_part(col: Column[Any], alias: str, dialect: Dialect) -> str:
    ref = _ref(col, alias, dialect)
    if is_timestamp(col):  # the instant, so that every session names the row alike
        return _text(_utc(ref))
    if isinstance(base_type(col.type, dialect), Uuid):
        # SQLAlchemy stores UUIDs as 32 hex digits in CHAR(32); report str(uuid).
        return (f"IF(CHAR_LENGTH({ref}) = 32, LOWER(CONCAT_WS('-', SUBSTRING({ref}, 1, 8), "
                f"SUBSTRING({ref}, 9, 4), SUBSTRING({ref}, 13, 4), SUBSTRING({ref}, 17, 4), "
                f"SUBSTRING({ref}, 21, 12))), {_text(ref)})")
    return _text(ref)


def key_expression(spec: TableSpec, alias: str, dialect: Dialect) -> str:
    """The row's key as text (a JSON array of texts for a composite key)."""
    parts = [_key_part(c, alias, dialect) for c in spec.key_columns]
    return parts[0] if len(parts) == 1 else f"JSON_ARRAY({', '.join(parts)})"


def _names(spec: TableSpec, dialect: Dialect) -> dict[str, str]:
    def trigger(op: str) -> str:
        return _qualified(spec.schema, mysql_trigger_name(spec.table, op), dialect)

    return {
        "insert_trigger": trigger("insert"),
        "update_trigger": trigger("update"),
        "delete_trigger": trigger("delete"),
    }


def _require_user(spec: TableSpec, dialect: Dialect) -> str:
    """Fail-closed (require_user_id): the write is refused when no user is set."""
    if not spec.require_user:
        return ""
    message = f"sqlaudit: a write to {spec.name} needs an acting user (require_user_id is on)"
    if len(message) > _MESSAGE_LIMIT:
        message = "sqlaudit: this write needs an acting user (require_user_id is on)"
    return (f"    IF COALESCE(CHAR_LENGTH(@sqlaudit_user_id), 0) = 0 THEN\n"
            f"        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {string_literal(message, dialect)};\n"
            f"    END IF;\n")


def _render(spec: TableSpec, dialect: Dialect, fingerprint_comment: str,
            default_schema: Optional[str] = None) -> list[str]:
    key_changed = " OR ".join(_distinct(c, dialect) for c in spec.key_columns)
    log = audit_table_name(spec, default_schema)
    values = dict(
        _names(spec, dialect),
        table=_qualified(spec.schema, spec.name, dialect),
        audit_table=_qualified(log[0], log[1], dialect),
        schema_literal=string_literal(spec.schema, dialect) if spec.schema else "NULL",
        table_literal=string_literal(spec.name, dialect),
        insert_key=key_expression(spec, "NEW", dialect),
        insert_data=_object(spec, "NEW", dialect),
        update_key=key_expression(spec, "NEW", dialect),
        key_changed=f"({key_changed})",
        any_changed=_any_changed(spec, dialect),
        changed_old=_changed_members(spec, "OLD", dialect),
        changed_new=_changed_members(spec, "NEW", dialect),
        delete_key=key_expression(spec, "OLD", dialect),
        delete_data=_object(spec, "OLD", dialect),
        fingerprint=fingerprint_comment,
        require_user=_require_user(spec, dialect),
    )
    return _templates.render(DIALECT, "triggers", **values)


#: Stands for "the installing connection's database" while hashing the fingerprint.
_DEFAULT_DATABASE_TOKEN = "<default database>"


def audit_table_name(spec: TableSpec, default_schema: Optional[str] = None
                     ) -> tuple[Optional[str], str]:
    """(schema, name) of the audit table the triggers of ``spec`` write to: the
    MetaData's schema (a database on MariaDB), else the installing connection's
    database ``default_schema``, where the history is read (named when the table is
    in another database: a trigger's unqualified name means its table's database),
    else unqualified (the table's own database, which is then the connection's)."""
    from ..schema import audit_table

    named = audit_table(spec.table.metadata).schema
    if named is None and spec.schema is not None:
        if default_schema is None:
            raise SQLAuditArgumentError(
                f"table {spec.table.fullname!r} is in database {spec.schema!r}: name the "
                f"database of sqlaudit_log its triggers write to, e.g. "
                f"render_audit_ddl(model, 'mysql', audit_schema='appdb'), or put the log "
                f"there with MetaData(schema=...).")
        named = default_schema
    return named, AUDIT_TABLE_NAME


def fingerprint(spec: TableSpec, dialect: Dialect) -> dict[str, Any]:
    """What :func:`install_statements` stores for drift detection: hashed from the
    MySQL rendering whichever flavour installs (MariaDB's quotes more reserved words,
    ``body`` for one), so a MariaDB server reports the same state through a
    ``mysql://`` and a ``mariadb://`` URL."""
    fp = _fingerprint.make(spec, DIALECT, _render(spec, rendering_dialect(DIALECT), "",
                                                  _DEFAULT_DATABASE_TOKEN))
    fp["require_user"] = spec.require_user
    return fp


def install_statements(spec: TableSpec, dialect: Dialect,
                       default_schema: Optional[str] = None) -> list[str]:
    """DROP/CREATE TRIGGER statements for ``spec``, each trigger body declaring the
    fingerprint (a declaration, not a comment: the ``mariadb`` client drops comments).
    Each is one statement for the driver; the ``mariadb`` client needs ``DELIMITER``
    around the compound bodies (Alembic's ``--sql`` output has it)."""
    statements = _render(spec, dialect, _fingerprint.mysql_declaration(fingerprint(spec, dialect)),
                         default_schema)
    return _or_replace(statements) if getattr(dialect, "is_mariadb", False) else statements


def _or_replace(statements: list[str]) -> list[str]:
    """MariaDB: each trigger replaced by one ``CREATE OR REPLACE TRIGGER`` statement
    instead of DROP then CREATE (MySQL has no OR REPLACE for triggers), so re-installing
    leaves no moment between two statements when the table has no trigger. The
    fingerprint is the same either way (it hashes the rendering with DROP/CREATE)."""
    return [s.replace("CREATE TRIGGER ", "CREATE OR REPLACE TRIGGER ", 1)
            for s in statements if not s.startswith("DROP TRIGGER")]


def require_statements(spec: TableSpec, dialect: Dialect,
                       comment: Optional[str] = None) -> list[str]:
    return []  # the fail-closed check is part of each trigger body


def drop_statements(spec: TableSpec, dialect: Dialect) -> list[str]:
    """DROP TRIGGER statements for ``spec``."""
    return _templates.render(DIALECT, "drop", **_names(spec, dialect))


def _protect_names(metadata: MetaData, dialect: Dialect) -> dict[str, str]:
    schema = metadata.schema
    return {
        "audit_table": _qualified(schema, AUDIT_TABLE_NAME, dialect),
        "no_update_trigger": _qualified(schema, "sqlaudit_log_no_update", dialect),
        "no_delete_trigger": _qualified(schema, "sqlaudit_log_no_delete", dialect),
    }


def protect_statements(metadata: MetaData, dialect: Dialect,
                       default_schema: Optional[str] = None) -> list[str]:
    """Append-only guards on the audit table."""
    return _templates.render(DIALECT, "protect", **_protect_names(metadata, dialect))


def unprotect_statements(metadata: MetaData, dialect: Dialect,
                         default_schema: Optional[str] = None) -> list[str]:
    return []  # MariaDB drops a table's triggers with it
