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
    from sqlalchemy.dialects import postgresql, sqlite

    # SQLAlchemy's dialect constructors are not annotated; both build a Dialect.
    factory: Callable[..., Dialect] = postgresql.dialect if name == "postgresql" else sqlite.dialect
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
    raise SQLAuditUnsupportedDialectError(
        f"sqlaudit supports PostgreSQL and SQLite, not {dialect_name!r}."
    )
