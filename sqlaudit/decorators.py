"""``@track_table``: declare which columns of a model are audited.

The decorator only records configuration (plain values in ``Table.info``), adds
the shared ``sqlaudit_log`` table to the model's MetaData and attaches the
trigger DDL to ``create_all`` / ``drop_all``. It needs no ``set_config``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence, TypeVar

from sqlalchemy import Column, Table

from . import ddl
from .exceptions import SQLAuditArgumentError, SQLAuditArgumentTypeError
from .schema import audit_table
from .spec import INFO_KEY, check_require_user, mapper_of, register_model

__all__ = ["track_table"]

log = logging.getLogger("sqlaudit")

T = TypeVar("T", bound=type)


def _check_str_option(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise SQLAuditArgumentTypeError(f"{name} must be a str or None, got {type(value).__name__} "
                                        f"{value!r}")


def _inherited_attributes(cls: type) -> dict[str, Column[Any]]:
    """Joined-table inheritance: attribute name -> Column of the parent tables' columns."""
    mapper = mapper_of(cls)
    assert mapper is not None
    local = mapper.local_table
    return {key: col for key, col in mapper.columns.items()
            if isinstance(col, Column) and col.table is not local
            and isinstance(col.table, Table) and col.table in mapper.tables}


def _column_attributes(cls: type) -> dict[str, Column[Any]]:
    """Map attribute name -> Column for the columns of the model's own table."""
    mapper = mapper_of(cls)
    if mapper is None:
        raise SQLAuditArgumentTypeError(
            f"@track_table must decorate a mapped SQLAlchemy class, got {cls!r}; "
            f"apply it to a DeclarativeBase subclass with a table."
        )
    local = mapper.local_table
    result: dict[str, Column[Any]] = {}
    for key, col in mapper.columns.items():
        if isinstance(col, Column) and col.table is local:
            result[key] = col
    return result


def _resolve_fields(
    cls: type, attributes: dict[str, Column[Any]], tracked_fields: Optional[Sequence[str]]
) -> list[Column[Any]]:
    if tracked_fields is None:
        return list(attributes.values())
    if isinstance(tracked_fields, (str, bytes)) or not isinstance(tracked_fields, (list, tuple)):
        raise SQLAuditArgumentTypeError(
            f"tracked_fields must be a list[str] of attribute names of {cls.__name__}, "
            f"got {type(tracked_fields).__name__} {tracked_fields!r}"
        )
    if not tracked_fields:
        raise SQLAuditArgumentError(
            f"tracked_fields for {cls.__name__} is empty; name at least one field, "
            f"or pass None to track every column."
        )
    columns: list[Column[Any]] = []
    for name in tracked_fields:
        if not isinstance(name, str):
            raise SQLAuditArgumentTypeError(
                f"tracked_fields must be a list[str]; item {name!r} of {cls.__name__} is "
                f"{type(name).__name__}"
            )
        col = attributes.get(name)
        if col is None:
            raise SQLAuditArgumentError(
                f"tracked field {name!r} is not a column attribute of model {cls.__name__}; "
                f"its column attributes are {sorted(attributes)}"
            )
        if col not in columns:
            columns.append(col)
    return columns


def _table_of(cls: type) -> Table:
    """A declarative class's ``__table__``."""
    table: Table = getattr(cls, "__table__")
    return table


def _resolve_key(
    cls: type, attributes: dict[str, Column[Any]], resource_id_field: Optional[str]
) -> list[Column[Any]]:
    if resource_id_field is not None:
        col = attributes.get(resource_id_field)
        if col is None:
            raise SQLAuditArgumentError(
                f"resource_id_field {resource_id_field!r} is not a column attribute of model "
                f"{cls.__name__}; its column attributes are {sorted(attributes)}"
            )
        return [col]
    table = _table_of(cls)
    key = list(table.primary_key.columns)
    if not key:
        raise SQLAuditArgumentError(
            f"model {cls.__name__} has no primary key; pass resource_id_field= naming a "
            f"column that identifies its rows."
        )
    return key


def _track_parent(parent: Table, names: list[str], require_user_id: Optional[bool]) -> None:
    """Joined-table inheritance: the parent table records the inherited fields a subclass
    tracks (added to what the parent tracks itself, or tracked for the subclass alone)."""
    info = parent.info.get(INFO_KEY)
    if info is None:
        keys = [c.name for c in parent.primary_key.columns]
        if not keys:
            raise SQLAuditArgumentError(f"table {parent.fullname!r} has no primary key; sqlaudit cannot "
                             f"track the fields a subclass inherits from it")
        info = parent.info[INFO_KEY] = {"tracked_columns": [], "key_columns": keys,
                                        "table_label": None, "require_user_id": require_user_id}
        audit_table(parent.metadata)
        ddl._attach_to_table(parent)
    for name in names:
        if name not in info["tracked_columns"]:
            info["tracked_columns"].append(name)


def track_table(
    _model: Any = None,
    *,
    tracked_fields: Optional[Sequence[str]] = None,
    table_label: Optional[str] = None,
    resource_id_field: Optional[str] = None,
    record_id_field: Optional[str] = None,
    user_id_field: Optional[str] = None,
    require_user_id: Optional[bool] = None,
) -> Callable[[T], T]:
    """Audit inserts, updates and deletes of a model's table with database triggers.

    Use it as ``@track_table(...)``, or bare, ``@track_table``, to audit every column.

    Args:
        tracked_fields: mapped attribute names to audit; ``None`` audits every column.
        table_label: a human-readable label reported with each change.
        resource_id_field: attribute identifying a row; defaults to the primary key
            (composite keys are supported).
        record_id_field: sqlaudit 0.3 name of ``resource_id_field``.
        user_id_field: accepted for compatibility with sqlaudit 0.3; it has no effect.
        require_user_id: fail-closed: the database refuses a write to this table
            that has no acting user. ``None``: ``SQLAuditConfig.require_user_id``
            when the triggers are installed. Installed with the triggers, so it
            holds for every writer, whatever process installed them.

    Raises:
        TypeError: ``tracked_fields`` is not a list of strings, or an option has the wrong type.
        ValueError: a field name is not a column attribute of the model.
    """
    for name, value in (
        ("table_label", table_label),
        ("resource_id_field", resource_id_field),
        ("record_id_field", record_id_field),
        ("user_id_field", user_id_field),
    ):
        _check_str_option(name, value)
    if resource_id_field and record_id_field and resource_id_field != record_id_field:
        raise SQLAuditArgumentError("pass resource_id_field or its old name record_id_field, not both")
    key_field = resource_id_field or record_id_field
    check_require_user(require_user_id)

    def decorate(cls: T) -> T:
        attributes = _column_attributes(cls)
        inherited = _inherited_attributes(cls)
        names = {**inherited, **attributes}
        chosen = _resolve_fields(cls, names, tracked_fields if tracked_fields is not None
                                 else list(attributes))
        table = _table_of(cls)
        columns = [c for c in chosen if c.table is table]
        parents = [c for c in chosen if c.table is not table]
        key_columns = _resolve_key(cls, attributes, key_field)
        if not columns:  # only inherited fields: the row's own table still records its key
            columns = list(key_columns)
        table.info[INFO_KEY] = {
            "tracked_columns": [c.name for c in columns],
            "key_columns": [c.name for c in key_columns],
            "table_label": table_label,
            "require_user_id": require_user_id,
        }
        if parents:
            table.info[INFO_KEY]["inherited_columns"] = [
                [c.table.schema, c.table.name, c.name] for c in parents]
            for parent in {c.table for c in parents}:
                _track_parent(parent, [c.name for c in parents if c.table is parent],
                              require_user_id)
        audit_table(table.metadata)
        ddl._attach_to_table(table)
        register_model(cls)
        log.debug("tracking %s: %s", table.fullname, [c.name for c in columns])
        return cls

    if _model is not None:  # bare @track_table
        if not isinstance(_model, type):
            raise SQLAuditArgumentTypeError(
                f"track_table takes keyword arguments only (tracked_fields=[...], "
                f"...); got the positional argument {_model!r}")
        return decorate(_model)
    return decorate
