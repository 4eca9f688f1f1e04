"""Per-dialect renderers of the trigger SQL (internal).

Each module exposes ``install_statements(spec, dialect)`` and
``drop_statements(spec, dialect)``, returning lists of SQL strings rendered
from ``sql_templates/<dialect>/``; identifiers are quoted by the dialect's
preparer and embedded names are rendered by its string literal processor.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from ..exceptions import SQLAuditUnsupportedDialectError
from ..spec import TableSpec

Renderer = Callable[[TableSpec, Dialect], "list[str]"]

#: SQLAlchemy dialect names served by :mod:`sqlaudit.dialects.mysql` (a
#: ``mysql+pymysql://`` URL to a MariaDB server is ``mysql``, ``mariadb+pymysql://`` is ``mariadb``).
MYSQL_NAMES = ("mysql", "mariadb")


def is_mysql(dialect_name: str) -> bool:
    """Whether ``dialect_name`` is MariaDB or MySQL."""
    return dialect_name in MYSQL_NAMES


def flavour(dialect: Dialect) -> str:
    """The name to render SQL for on a connection's ``dialect``: ``"mariadb"`` for a
    MariaDB server whatever the URL said (``mysql+pymysql://`` to MariaDB is named
    ``mysql`` by SQLAlchemy), else the dialect's name."""
    if is_mysql(dialect.name) and getattr(dialect, "is_mariadb", False):
        return "mariadb"
    return str(dialect.name)


def base_type(type_: TypeEngine[Any], dialect: Dialect) -> TypeEngine[Any]:
    """The dialect-level type behind TypeDecorators and variants."""
    impl = type_.dialect_impl(dialect)
    seen = 0
    while isinstance(impl, TypeDecorator) and seen < 10:
        impl = impl.load_dialect_impl(dialect)
        seen += 1
    return impl


def rendering_dialect(name: str) -> Dialect:
    """A dialect to render trigger SQL with: same quoting as the driver's, but no
    ``%`` doubling (that happens once, when :class:`sqlaudit.ddl._AuditDDL` is executed)."""
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    # SQLAlchemy's dialect constructors are not annotated; each builds a Dialect.
    factory: Callable[..., Dialect]
    if name == "postgresql":
        factory = postgresql.dialect
    elif name in MYSQL_NAMES:
        # "mariadb" renders MariaDB's own statements (CREATE OR REPLACE TRIGGER)
        return mysql.dialect(paramstyle="named", is_mariadb=name == "mariadb")
    else:
        factory = sqlite.dialect
    return factory(paramstyle="named")


def string_literal(value: str, dialect: Dialect) -> str:
    """``value`` as a SQL string literal of ``dialect``."""
    string: TypeEngine[str] = String()  # TypeEngine's literal_processor is the annotated one
    process = string.literal_processor(dialect)
    assert process is not None
    return str(process(value))


def module_for(dialect_name: str) -> Any:
    if dialect_name == "postgresql":
        from . import postgresql

        return postgresql
    if dialect_name == "sqlite":
        from . import sqlite

        return sqlite
    if dialect_name in MYSQL_NAMES:
        from . import mysql

        return mysql
    raise SQLAuditUnsupportedDialectError(
        f"sqlaudit supports PostgreSQL, SQLite and MariaDB / MySQL ('mysql' or 'mariadb'), "
        f"not {dialect_name!r}."
    )
