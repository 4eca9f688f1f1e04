"""Exceptions raised by sqlaudit.

Every exception derives from :class:`SQLAuditError`, so ``except SQLAuditError``
catches anything the library raises on purpose. Errors about an argument also
derive from the builtin a caller would expect: :class:`SQLAuditArgumentError`
is a ``ValueError`` (right type, unusable value) and
:class:`SQLAuditArgumentTypeError` a ``TypeError`` (wrong type), so
``except ValueError`` / ``except TypeError`` keep working. Messages name the
object that is wrong and say what to do about it.

:class:`SQLAuditWarning` (a ``UserWarning``) is not an error: it is issued for a
setup that works but loses a guarantee, and says which and what to do.
"""

from __future__ import annotations

__all__ = [
    "SQLAuditArchiveError",
    "SQLAuditArchiveTypeError",
    "SQLAuditArchiveValueError",
    "SQLAuditArgumentError",
    "SQLAuditArgumentTypeError",
    "SQLAuditConfigError",
    "SQLAuditContextError",
    "SQLAuditError",
    "SQLAuditIntegrityError",
    "SQLAuditMigrationError",
    "SQLAuditMissingExtraError",
    "SQLAuditRevertConflict",
    "SQLAuditRevertError",
    "SQLAuditStampError",
    "SQLAuditTableNotInDatabaseError",
    "SQLAuditTableNotTrackedError",
    "SQLAuditUnsafeKeyError",
    "SQLAuditUnsupportedDialectError",
    "SQLAuditUserConfigError",
    "SQLAuditUserIdTypeError",
    "SQLAuditUserIdValueError",
    "SQLAuditWarning",
]


class SQLAuditError(Exception):
    """Base class of every error sqlaudit raises."""


class SQLAuditArgumentError(SQLAuditError, ValueError):
    """An argument has an accepted type but a value sqlaudit cannot use (an unknown
    field, an empty list, a start after its end...). Also a ``ValueError``."""


class SQLAuditArgumentTypeError(SQLAuditError, TypeError):
    """An argument has a type sqlaudit does not accept (the message names the
    accepted ones). Also a ``TypeError``."""


class SQLAuditConfigError(SQLAuditError):
    """The configuration passed to :class:`sqlaudit.config.SQLAuditConfig` is invalid,
    or a function needs a configuration that was never set."""


class SQLAuditUserConfigError(SQLAuditConfigError):
    """Kept for compatibility with sqlaudit 0.3: a user-related setting is invalid."""


class SQLAuditTableNotTrackedError(SQLAuditArgumentError):
    """A model was passed where a ``@track_table`` model is required."""


class SQLAuditTableNotInDatabaseError(SQLAuditError):
    """The audit table does not exist in the database that was queried."""


class SQLAuditUnsupportedDialectError(SQLAuditError):
    """The database is neither PostgreSQL nor SQLite."""


class SQLAuditMigrationError(SQLAuditError):
    """A migration operation cannot do what was asked (for example a batch
    migration removed a tracked column without replacing the audit triggers)."""


class SQLAuditMissingExtraError(SQLAuditError, ImportError):
    """An optional dependency is not installed; the message names the extra to
    install (``pip install alembic``, the ``alembic`` extra). Also an ``ImportError``."""


class SQLAuditUserIdTypeError(SQLAuditArgumentTypeError):
    """A user id is not a ``str``, ``int`` or ``uuid.UUID``."""


class SQLAuditUserIdValueError(SQLAuditArgumentError):
    """A user id (or reason) cannot be stored as given: it holds a NUL byte or is
    longer than 1 MiB."""


class SQLAuditStampError(SQLAuditError, RuntimeError):
    """The database refused to set the acting user at the start of a transaction
    (psycopg 3); the message carries the server's error. Also a ``RuntimeError``."""


class SQLAuditUnsafeKeyError(SQLAuditError, ValueError):
    """The column that identifies a tracked table's rows (``resource_id_field``) is not
    unique, so changes could not be told apart row by row."""


class SQLAuditContextError(SQLAuditArgumentTypeError):
    """``audit_context(context=...)`` is not a JSON-serialisable dict with str keys."""


class SQLAuditIntegrityError(SQLAuditError):
    """The audit log fails verification, so an operation that would build on it
    (pruning) is refused."""


class SQLAuditRevertError(SQLAuditError):
    """A change cannot be undone: for example a deleted row cannot be re-inserted
    because a NOT NULL column without a default was not tracked."""


class SQLAuditRevertConflict(SQLAuditRevertError):
    """``revert_transaction(..., on_conflict="raise")``: later changes touched the
    same fields of the same rows. ``conflicts`` lists the records that would be
    overwritten (the reverted transaction's changes); nothing was changed."""

    def __init__(self, message: str, conflicts: "list[object]") -> None:
        super().__init__(message)
        self.conflicts = conflicts


class SQLAuditWarning(UserWarning):
    """A setup that works but loses a guarantee: for example a tracked MariaDB table in
    a storage engine without transactions (MyISAM, Aria), whose rolled-back writes stay
    while their records roll back. The message names the table and what to do."""


class SQLAuditArchiveError(SQLAuditError):
    """An audit log archive cannot be written or read (see :mod:`sqlaudit._export`):
    the file cannot be created, it is not an archive, or the log to import into
    is not empty. When it comes from a prune, nothing was pruned."""


class SQLAuditArchiveValueError(SQLAuditArchiveError, ValueError):
    """An archive argument has the right type but a wrong value: an unknown
    format, a path that already exists, a cutoff without a time zone."""


class SQLAuditArchiveTypeError(SQLAuditArchiveError, TypeError):
    """An archive argument has the wrong type (a cutoff that is not a ``datetime``,
    a path that is not a ``str`` or ``os.PathLike``)."""
