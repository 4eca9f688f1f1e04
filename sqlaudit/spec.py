"""What to audit for one table, read from the plain values ``@track_table`` stores.

The decorator stores a dict of plain strings in ``Table.info["sqlaudit"]`` (plain
values so that Alembic can render it); :func:`spec_for` turns it back into a
:class:`TableSpec` that the DDL renderers and retrieval use.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

from sqlalchemy import Column, MetaData, Table
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper

from .exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError,
                         SQLAuditTableNotTrackedError)

INFO_KEY = "sqlaudit"

ModelOrTable = Union[type, Table]


@dataclass(frozen=True)
class TableSpec:
    """The audit settings of one table."""

    table: Table
    columns: tuple[Column[Any], ...]
    key_columns: tuple[Column[Any], ...]
    label: Optional[str]
    #: fail-closed: a write with no acting user is refused (resolved when the spec is made)
    require_user: bool = False
    #: joined-table inheritance: tracked columns of parent tables (recorded by the parents'
    #: triggers, read back for this model)
    inherited: tuple[Column[Any], ...] = ()

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def schema(self) -> Optional[str]:
        return self.table.schema

    def __repr__(self) -> str:
        cols = ", ".join(c.name for c in self.columns)
        return f"<TableSpec {self.table.fullname} tracked=[{cols}]>"


def table_of(model: ModelOrTable) -> Table:
    """The Table of a mapped class, or the Table itself."""
    if isinstance(model, Table):
        return model
    table = getattr(model, "__table__", None)
    if isinstance(table, Table):
        return table
    raise SQLAuditArgumentTypeError(f"expected a mapped class or a Table, got {model!r}")


def mapper_of(model: Any) -> Optional[Mapper[Any]]:
    """The ORM mapper of a mapped class; None for a Table or anything else."""
    if not isinstance(model, type):
        return None
    insp: Any = sa_inspect(model, raiseerr=False)
    return insp if isinstance(insp, Mapper) else None


def is_tracked(model: ModelOrTable) -> bool:
    return INFO_KEY in table_of(model).info


def spec_for(model: ModelOrTable) -> TableSpec:
    """The :class:`TableSpec` of a ``@track_table`` model (or its Table)."""
    table = table_of(model)
    info = table.info.get(INFO_KEY)
    if info is None:
        name = model.__name__ if isinstance(model, type) else table.fullname
        raise SQLAuditTableNotTrackedError(
            f"{name} is not tracked by sqlaudit; decorate the model with "
            f"@track_table(tracked_fields=[...]) first."
        )
    return TableSpec(
        table=table,
        columns=tuple(table.c[name] for name in info["tracked_columns"]),
        key_columns=tuple(table.c[name] for name in info["key_columns"]),
        label=info.get("table_label"),
        require_user=resolve_require_user(info.get("require_user_id")),
        inherited=tuple(_inherited(table, info.get("inherited_columns") or ())),
    )


def _inherited(table: Table, entries: Any) -> Iterator[Column[Any]]:
    for schema, name, column in entries:
        key = f"{schema}.{name}" if schema else name
        yield table.metadata.tables[key].c[column]


def resolve_require_user(declared: Optional[bool]) -> bool:
    """Fail-closed as declared (``@track_table``, the install call, the migration), else the
    global ``SQLAuditConfig.require_user_id`` as the default. Resolved where a spec is
    made, so the renderers read no global state."""
    if declared is not None:
        return declared
    from .config import _require_user_id

    return _require_user_id()


def check_require_user(value: Any) -> Optional[bool]:
    if value is not None and not isinstance(value, bool):
        raise SQLAuditArgumentTypeError(
            f"require_user_id must be True, False or None (the global default), "
            f"got {type(value).__name__} {value!r}")
    return value


def spec_from_table(
    table: Table,
    tracked_columns: Optional[Sequence[str]] = None,
    key_columns: Optional[Sequence[str]] = None,
    label: Optional[str] = None,
    require_user: Optional[bool] = None,
) -> TableSpec:
    """A :class:`TableSpec` for any Table (for example a reflected one), by column names."""
    names = list(tracked_columns) if tracked_columns is not None else [c.name for c in table.columns]
    missing = [n for n in names if n not in table.c]
    if missing:
        raise SQLAuditArgumentError(f"table {table.fullname!r} has no column(s) {missing}")
    keys = list(key_columns) if key_columns else [c.name for c in table.primary_key.columns]
    if not keys:
        raise SQLAuditArgumentError(f"table {table.fullname!r} has no primary key; name its key columns")
    return TableSpec(table, tuple(table.c[n] for n in names), tuple(table.c[n] for n in keys), label,
                     resolve_require_user(require_user))


#: (schema, table name) -> the most recently decorated model of that table, so that
#: history reads across tables can give typed values for every imported model.
_MODELS: "weakref.WeakValueDictionary[tuple[Optional[str], str], type]" = weakref.WeakValueDictionary()


def register_model(model: type) -> None:
    """Remember ``model`` as the model of its table (done by ``@track_table``)."""
    table = table_of(model)
    _MODELS[(table.schema, table.name)] = model


def model_for(schema: Optional[str], name: str) -> Optional[type]:
    """The imported ``@track_table`` model of table ``schema.name``, if any."""
    model = _MODELS.get((schema, name))
    if model is not None and INFO_KEY in table_of(model).info:
        return model
    return None


def tracked_tables(metadata: MetaData) -> Iterator[Table]:
    """Every tracked table of ``metadata``, in dependency order."""
    for table in metadata.sorted_tables:
        if INFO_KEY in table.info:
            yield table
