"""One exception tree: everything sqlaudit raises on purpose is a SQLAuditError, and
argument errors are also the ValueError / TypeError callers already catch."""

from __future__ import annotations

import ast
import builtins
import inspect
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy.orm import Mapped, Session, mapped_column

import sqlaudit
import sqlaudit.exceptions as exceptions
import sqlaudit.integrity
from sqlaudit import (
    SQLAuditArgumentError,
    SQLAuditArgumentTypeError,
    SQLAuditError,
    audit_context,
    get_changes,
    get_resource_changes,
    install_audit_triggers,
    revert_transaction,
    track_table,
    verify_audit_log,
)
from sqlaudit.ddl import grant_audit_read, prune_audit_log

MARIADB_PORTED = True

PACKAGE = Path(sqlaudit.__file__).resolve().parent

#: Builtin exceptions that may be raised, and why.
ALLOWED = {
    # the console script's exit status (click and ``main`` end with it)
    ("cli.py", "SystemExit"),
}


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    return exc.id if isinstance(exc, ast.Name) else None


def test_the_package_raises_no_builtin_exception_class() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue  # a bare ``raise`` re-raises what was caught
            name = _raised_name(node)
            builtin = getattr(builtins, name, None) if name else None
            if not (isinstance(builtin, type) and issubclass(builtin, BaseException)):
                continue
            if (path.name, name) in ALLOWED:
                continue
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: raise {name}")
    assert not found, "raise a class of sqlaudit.exceptions instead:\n" + "\n".join(found)


def test_every_exception_derives_from_sqlaudit_error() -> None:
    classes = [c for _, c in inspect.getmembers(exceptions, inspect.isclass)
               if c.__module__ == exceptions.__name__]
    assert len(classes) == len(exceptions.__all__)
    for cls in classes:
        if cls is exceptions.SQLAuditWarning:  # the one warning: not raised, so no error
            assert issubclass(cls, UserWarning) and not issubclass(cls, SQLAuditError)
            continue
        assert issubclass(cls, SQLAuditError), cls
    assert issubclass(SQLAuditArgumentError, ValueError)
    assert issubclass(SQLAuditArgumentTypeError, TypeError)
    assert issubclass(exceptions.SQLAuditUserIdTypeError, TypeError)
    assert issubclass(exceptions.SQLAuditUserIdValueError, ValueError)
    assert issubclass(exceptions.SQLAuditContextError, TypeError)
    assert issubclass(exceptions.SQLAuditTableNotTrackedError, ValueError)


def test_the_integrity_error_is_still_importable_from_sqlaudit_integrity() -> None:
    assert sqlaudit.integrity.SQLAuditIntegrityError is exceptions.SQLAuditIntegrityError


def test_the_cli_error_is_a_sqlaudit_error() -> None:
    from sqlaudit.cli import CLIError

    assert issubclass(CLIError, SQLAuditError)


# ---------------------------------------------------------------- representative paths
# on every dialect's database (the ``engine`` fixture): the same mistakes, the same errors


@pytest.fixture
def Customer(Base: Any) -> type:
    @track_table
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    return Customer


#: (what is wrong, the call): argument values sqlaudit cannot use
VALUE_MISTAKES = [
    ("sort_direction", lambda m, e, s: get_resource_changes(m, s, sort_direction="up")),
    ("untracked field", lambda m, e, s: get_resource_changes(m, s, filter_fields=["nickname"])),
    ("empty models=", lambda m, e, s: get_changes(s, models=[])),
    ("no models", lambda m, e, s: install_audit_triggers(e)),
    ("on_conflict", lambda m, e, s: revert_transaction(s, 1, on_conflict="ignore")),
]

#: (what is wrong, the call): arguments of a type sqlaudit does not take
TYPE_MISTAKES = [
    ("head", lambda m, e, s: verify_audit_log(e, head=5)),
    ("older_than", lambda m, e, s: prune_audit_log(e, "last year")),
    ("role", lambda m, e, s: grant_audit_read(e, "")),
    ("transaction_id", lambda m, e, s: revert_transaction(s, "7")),
    ("table_label", lambda m, e, s: track_table(table_label=3)),
    ("user_id", lambda m, e, s: audit_context(user_id=1.5).__enter__()),
    ("session", lambda m, e, s: get_resource_changes(m, "not a session")),
]


@pytest.mark.parametrize("call", [c for _, c in VALUE_MISTAKES], ids=[i for i, _ in VALUE_MISTAKES])
def test_argument_errors_are_sqlaudit_errors_and_value_errors(Customer: type, engine: Any,
                                                              call: Callable[..., Any]) -> None:
    with Session(engine) as session:
        with pytest.raises(SQLAuditArgumentError) as err:
            call(Customer, engine, session)
        assert isinstance(err.value, SQLAuditError) and isinstance(err.value, ValueError)
        with pytest.raises(ValueError):
            call(Customer, engine, session)


@pytest.mark.parametrize("call", [c for _, c in TYPE_MISTAKES], ids=[i for i, _ in TYPE_MISTAKES])
def test_argument_type_errors_are_sqlaudit_errors_and_type_errors(Customer: type,
                                                                  engine: Any,
                                                                  call: Callable[..., Any]) -> None:
    with Session(engine) as session:
        with pytest.raises(SQLAuditError) as err:
            call(Customer, engine, session)
        assert isinstance(err.value, TypeError), repr(err.value)
        with pytest.raises(TypeError):
            call(Customer, engine, session)


@pytest.mark.parametrize("catch", [SQLAuditError, ValueError])
def test_a_track_table_mistake_is_caught_as_either(Base: Any, catch: type) -> None:
    with pytest.raises(catch, match="'nickname'"):

        @track_table(tracked_fields=["nickname"])
        class Customer(Base):
            __tablename__ = "customers"
            id: Mapped[int] = mapped_column(primary_key=True)


def test_prune_given_a_naive_datetime_is_not_an_argument_error(engine: Any,
                                                               Customer: type) -> None:
    # a control: valid arguments reach the database
    Customer.metadata.create_all(engine)
    assert prune_audit_log(engine, datetime(2000, 1, 1)) == 0
