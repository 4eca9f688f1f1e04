"""The shared audit table, ``sqlaudit_log``: one row per changed row.

It is added to the tracked models' own ``MetaData`` so that ``create_all``
creates it and Alembic autogenerate sees it.
"""

from __future__ import annotations

from typing import Any, Optional, cast

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    event,
    func,
    literal_column,
)
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME, LONGTEXT, VARCHAR
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.dialects.postgresql import JSONB

from ._naming import AUDIT_TABLE_NAME

#: ``Table.info`` key of the tables that hold history: ``drop_all()`` never drops them
#: (see :func:`sqlaudit.ddl.drop_audit_log`).
HISTORY_MARKER = "sqlaudit_history"

_ID = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid
_DATA = JSON().with_variant(JSONB(), "postgresql")
#: MySQL's DATETIME keeps whole seconds unless given a precision; the triggers write
#: UTC_TIMESTAMP(6) there (MySQL has no time zone in a DATETIME: always UTC).
_TIME = DateTime(timezone=True).with_variant(MYSQL_DATETIME(fsp=6), "mysql", "mariadb")
#: MariaDB / MySQL table options: InnoDB (transactional, so a rolled back write
#: leaves no audit row) and 4-byte UTF-8.
_MYSQL_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
                                 "mariadb_engine": "InnoDB", "mariadb_charset": "utf8mb4"}
_MYSQL = ("mysql", "mariadb")
#: Free text of any length (MySQL's TEXT holds 64 KB).
_LONG_TEXT = Text().with_variant(LONGTEXT(), *_MYSQL)


class _ExactLongText(LONGTEXT):
    """``LONGTEXT`` in the exact binary collation of the server (see :func:`exact_collation`)."""


class _ExactVarchar(VARCHAR):
    """``VARCHAR(n)`` in the exact binary collation of the server (see :func:`exact_collation`)."""


def exact_collation(dialect: Any) -> str:
    """The utf8mb4 collation of MariaDB / MySQL that compares byte-wise and does
    not pad: ``utf8mb4_bin`` ignores trailing spaces (``'alice' = 'alice '``),
    which would make two user ids or two keys one. MariaDB names it
    ``utf8mb4_nopad_bin``, MySQL 8 ``utf8mb4_0900_bin``."""
    return "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"


@compiles(_ExactLongText, "mysql")
@compiles(_ExactLongText, "mariadb")
def _compile_exact_long_text(type_: Any, compiler: Any, **kw: Any) -> str:
    return f"LONGTEXT CHARACTER SET utf8mb4 COLLATE {exact_collation(compiler.dialect)}"


@compiles(_ExactVarchar, "mysql")
@compiles(_ExactVarchar, "mariadb")
def _compile_exact_varchar(type_: Any, compiler: Any, **kw: Any) -> str:
    return (f"VARCHAR({type_.length}) CHARACTER SET utf8mb4 "
            f"COLLATE {exact_collation(compiler.dialect)}")


def _bytewise(type_: String) -> String:
    """``type_`` with the "C" collation on PostgreSQL: the indexed text columns are
    only compared for equality, and byte-wise comparison makes writing their
    index entries cheaper than the database's locale collation (about a quarter
    of the audit row's cost under C.UTF-8, more under ICU or en_US locales).
    On MariaDB / MySQL the binary collation that does not pad
    (:func:`exact_collation`) does the same (and keeps ``'a'``, ``'A'`` and
    ``'a '`` apart, as PostgreSQL and SQLite do); a ``Text`` is a ``LONGTEXT``
    there (MySQL's TEXT holds 64 KB, too little for a user id of 1 MiB)."""
    mysql_type = _ExactLongText() if isinstance(type_, Text) else _ExactVarchar(type_.length)
    return (type_.with_variant(type(type_)(type_.length, collation="C"), "postgresql")
            .with_variant(mysql_type, *_MYSQL))


def audit_table(metadata: MetaData) -> Table:
    """Return the ``sqlaudit_log`` table of ``metadata``, defining it if needed.

    Columns:
        id: increasing record id; breaks timestamp ties in the order changes happened.
        table_schema, table_name: the audited table (schema is NULL when the model has none).
        resource_id: the row's key as text (a JSON array of texts for composite keys).
        operation: ``insert``, ``update``, ``delete`` or ``truncate``.
        changed_at: database clock at the time of the change (UTC on SQLite).
        changed_by: the acting user id as text, or NULL when none was known.
        db_role: the database login role (PostgreSQL), NULL on SQLite.
        transaction_id: the database transaction (PostgreSQL xid; on SQLite an id
            stamped by sqlaudit's connections, NULL for foreign connections).
        reason: optional free text from ``audit_context(reason=...)``.
        context: optional JSON object from ``audit_context(context=...)`` (or the
            ``sqlaudit.context`` setting on PostgreSQL): request id, route...
        application_name, client_addr: the writing session's ``application_name``
            and client address (PostgreSQL; NULL on SQLite and for local sockets).
        old_data, new_data: JSON objects ``{column_name: value}``: for an update the
            tracked columns that changed, for an insert (new_data) or a delete
            (old_data) every tracked column (retrieval skips the NULL ones).
    """
    key = f"{metadata.schema}.{AUDIT_TABLE_NAME}" if metadata.schema else AUDIT_TABLE_NAME
    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    table = Table(
        AUDIT_TABLE_NAME,
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("table_schema", _bytewise(String(255)), nullable=True),
        Column("table_name", _bytewise(String(255)), nullable=False),
        Column("resource_id", _bytewise(Text()), nullable=True),
        Column("operation", String(8), nullable=False),
        Column("changed_at", _TIME, nullable=False),
        Column("changed_by", _bytewise(Text()), nullable=True),
        Column("db_role", _LONG_TEXT, nullable=True),
        Column("transaction_id", BigInteger, nullable=True),
        Column("reason", _LONG_TEXT, nullable=True),
        Column("old_data", _DATA, nullable=True),
        Column("new_data", _DATA, nullable=True),
        Column("context", _DATA, nullable=True),
        Column("application_name", Text, nullable=True),
        Column("client_addr", Text, nullable=True),
        comment="sqlaudit: trigger-populated audit trail (one row per changed row)",
        info={HISTORY_MARKER: True},
        **_MYSQL_TABLE,
    )
    # MySQL indexes TEXT only by a prefix: the first 255 characters of the key
    # (with table_name, 2 KB of the 3 KB an InnoDB index entry may hold in utf8mb4).
    # A mariadb:// URL reads the mariadb_ options, a mysql:// one the mysql_ options.
    Index("ix_sqlaudit_log_resource", table.c.table_name, table.c.resource_id, table.c.changed_at,
          mysql_length={"resource_id": 255}, mariadb_length={"resource_id": 255})
    # A prefix of the user id: any id (up to 1 MiB) fits the index entry
    # (PostgreSQL's B-tree refuses entries over ~2.7 KB); reads match the
    # prefix through the index and then the exact id. MariaDB has no index on an
    # expression: there it is a prefix index of the column, made by _mysql_user_index.
    Index("ix_sqlaudit_log_user", user_prefix(table.c.changed_by), table.c.changed_at).ddl_if(
        callable_=cast(Any, _not_mysql))
    event.listen(table, "after_create", _mysql_user_index(table))
    # one transaction's changes (get_transactions, revert_transaction)
    Index("ix_sqlaudit_log_transaction", table.c.transaction_id)
    # BRIN on PostgreSQL: nearly free to maintain on an append-only table, serves
    # date ranges and pruning (a plain index on SQLite).
    Index("ix_sqlaudit_log_changed_at", table.c.changed_at, postgresql_using="brin")
    return table


def _not_mysql(ddl: Any, target: Any, bind: Any, **kw: Any) -> bool:
    return kw["dialect"].name not in _MYSQL


def _is_mysql(ddl: Any, target: Any, bind: Any, **kw: Any) -> bool:
    return kw["dialect"].name in _MYSQL


#: MariaDB / MySQL: ``ix_sqlaudit_log_user`` as a prefix index of ``changed_by``
#: (same name, same :data:`USER_PREFIX` characters) and ``changed_at``.
_MYSQL_USER_INDEX = "CREATE INDEX ix_sqlaudit_log_user ON {table} (changed_by({prefix}), changed_at)"


def _mysql_user_index(table: Table) -> Any:
    """The ``after_create`` DDL that adds ``ix_sqlaudit_log_user`` on MariaDB / MySQL."""
    ddl: Any = DDL  # SQLAlchemy's DDL() is not annotated
    return ddl(_MYSQL_USER_INDEX.format(table="%(fullname)s", prefix=USER_PREFIX)
               ).execute_if(callable_=_is_mysql)


def mysql_index_ddl(table: Table, dialect: Any, *,
                    if_not_exists: bool = False) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of each index of the log on MariaDB / MySQL, in
    name order: the ones ``create_all`` makes there (the user index as a prefix index)."""
    from sqlalchemy.schema import CreateIndex

    found = [(str(index.name),
              str(CreateIndex(index, if_not_exists=if_not_exists).compile(dialect=dialect)))
             for index in table.indexes if index.name != "ix_sqlaudit_log_user"]
    quoted = dialect.identifier_preparer.format_table(table)
    user = _MYSQL_USER_INDEX.format(table=quoted, prefix=USER_PREFIX)
    if if_not_exists:
        user = user.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
    found.append(("ix_sqlaudit_log_user", user))
    return sorted(found)


#: Columns added to ``sqlaudit_log`` after its first release, with their SQL types
#: per dialect: an existing log gets them when triggers are (re)installed.
LATER_COLUMNS = ("context", "application_name", "client_addr")


#: Characters of the user id held by ``ix_sqlaudit_log_user`` (at most 1 KB in UTF-8).
USER_PREFIX = 200


def user_prefix(column: Any) -> Any:
    """The indexed expression of the user id: its first :data:`USER_PREFIX` characters."""
    # literal constants: a query matches the index only if the expression is the same text
    return func.substr(column, literal_column("1"), literal_column(str(USER_PREFIX)))


def log_schema(connection: Any) -> Optional[str]:
    """The schema an unqualified ``sqlaudit_log`` means on ``connection``, named
    explicitly so that no TEMP table can stand in for it: PostgreSQL's
    first schema of search_path that is not pg_temp,
    SQLite's ``main``, MariaDB's current database."""
    if connection.dialect.name == "sqlite":
        return "main"
    if connection.dialect.name in _MYSQL:
        from sqlalchemy import text as sql_text

        database = connection.execute(sql_text("SELECT DATABASE()")).scalar()
        return str(database) if database is not None else None
    from ._installed import FIRST_SCHEMA
    from sqlalchemy import text

    schema = connection.execute(text(FIRST_SCHEMA)).scalar()
    return str(schema) if schema is not None else None


def text_param(value: Any = None, *, key: Optional[str] = None,
               expanding: bool = False) -> BindParameter[Any]:
    """A bind parameter typed as plain text, to compare with the collated columns.

    A parameter typed like the column would carry an explicit ``COLLATE "C"``,
    which no index of an audit table created with another collation could
    serve; a plain one takes the column's own collation, whatever it is.
    """
    return bindparam(key, value, type_=Text(), expanding=expanding)


def rows_of_table(log: Table, name: str, schema: Optional[str]) -> ColumnElement[bool]:
    """The condition selecting the audit rows of table ``schema.name``."""
    return and_(
        log.c.table_name == text_param(name),
        log.c.table_schema.is_(None) if schema is None else log.c.table_schema == text_param(schema),
    )


SEAL_TABLE_NAME = "sqlaudit_seal"


def seal_table(metadata: MetaData) -> Table:
    """Return the ``sqlaudit_seal`` table of ``metadata`` (see :mod:`sqlaudit.integrity`).

    Append-only, like ``sqlaudit_log``: one row per sealed id range of the log
    (``kind='seal'``) or per prune (``kind='prune'``), each chained to the one
    before by ``previous_digest``. ``info["sqlaudit_history"]`` marks it as
    history that ``drop_all()`` must keep.
    """
    key = f"{metadata.schema}.{SEAL_TABLE_NAME}" if metadata.schema else SEAL_TABLE_NAME
    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    return Table(
        SEAL_TABLE_NAME,
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("format_version", Integer, nullable=False),
        Column("kind", String(8), nullable=False),
        Column("sealed_at", _TIME, nullable=False),
        Column("sealed_by", Text, nullable=True),
        Column("first_id", BigInteger, nullable=True),
        Column("last_id", BigInteger, nullable=True),
        Column("row_count", BigInteger, nullable=False),
        Column("columns", Text, nullable=False),
        Column("detail", Text, nullable=True),
        Column("rows_digest", String(64), nullable=False),
        Column("previous_digest", String(64), nullable=False),
        Column("digest", String(64), nullable=False),
        comment="sqlaudit: append-only hash chain over sqlaudit_log (sqlaudit.integrity)",
        info={"sqlaudit_history": True},
        **_MYSQL_TABLE,
    )
