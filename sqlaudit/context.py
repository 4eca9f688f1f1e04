"""The acting user: a context manager for the code, a resolver for the hooks.

>>> from sqlaudit.context import audit_context
>>> with audit_context(user_id=42, reason="support ticket 7"):
...     session.commit()        # doctest: +SKIP

The value lives in a :class:`contextvars.ContextVar`, so it is private to the
thread or asyncio task that set it, and it overrides the configured
``get_user_id_callback`` for the writes inside the block.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .config import _holder
from .exceptions import SQLAuditUserIdTypeError, SQLAuditUserIdValueError

__all__ = ["audit_context", "Actor", "current_actor"]

log = logging.getLogger("sqlaudit")


@dataclass(frozen=True)
class Actor:
    """Who is acting (``user_id`` as text, or None) and, optionally, why."""

    user_id: Optional[str]
    reason: Optional[str] = None


_override: ContextVar[Optional[Actor]] = ContextVar("sqlaudit_actor", default=None)


def user_id_text(value: Any, *, from_callback: bool = False) -> Optional[str]:
    """A user id as the text stored in ``changed_by`` (None: no user).

    One rule on every dialect: ``str``, ``int`` and :class:`uuid.UUID` are stored
    as their text (``7`` -> ``"7"``, a UUID in its canonical form; subclasses such
    as ``IntEnum`` or ``str`` enums as their plain value); ``None`` and ``""``
    mean "no user". Anything else (``bool``, ``float``, ``bytes``...) raises
    ``TypeError`` naming its type; text no database can store (a NUL character
    or a lone surrogate) raises ``ValueError``, before anything reaches the
    database.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = str.__str__(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = int.__repr__(value)
    elif isinstance(value, uuid.UUID):
        text = str(value)
    else:
        rule = 'a user id must be a str, int or uuid.UUID (None or "" for no user)'
        if from_callback:
            raise SQLAuditUserIdTypeError(
                f"get_user_id_callback returned {type(value).__name__}; {rule}")
        raise SQLAuditUserIdTypeError(f"user_id: {rule}, got {type(value).__name__}")
    _check_text(text, "the user id get_user_id_callback returned" if from_callback else "user_id")
    return text or None


#: The longest user id (or reason) stored, in UTF-8 bytes.
MAX_TEXT_BYTES = 1024 * 1024


def _check_text(text: str, name: str) -> None:
    if len(text) > MAX_TEXT_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise SQLAuditUserIdValueError(
            f"{name} is longer than 1 MiB in UTF-8; store a shorter identifier")
    if "\0" in text:
        raise SQLAuditUserIdValueError(f"{name} contains a NUL character (\\x00), which no database "
                         "stores in text; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SQLAuditUserIdValueError(f"{name} is not valid Unicode text (a lone surrogate at position "
                         f"{exc.start}); pass decoded text") from None


def reason_text(value: Any) -> Optional[str]:
    """``reason`` as stored: text or None (``""`` is no reason), NUL refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SQLAuditUserIdTypeError(f"reason must be a str or None, got {type(value).__name__}")
    _check_text(value, "reason")
    return str.__str__(value) or None


@contextlib.contextmanager
def audit_context(*, user_id: Any, reason: Optional[str] = None) -> Iterator[Actor]:
    """Attribute the writes inside the block to ``user_id`` (with an optional ``reason``).

    Overrides ``get_user_id_callback``. ``user_id`` is a ``str``, ``int`` or
    ``uuid.UUID`` (stored as its text); ``None`` or ``""`` records the writes
    without a user. Any other type raises ``TypeError``, a NUL character
    ``ValueError``, here, before anything reaches the database. Nesting
    restores the outer value on exit, errors included.
    """
    actor = Actor(user_id_text(user_id), reason_text(reason))
    token = _override.get(), _override.set(actor)
    try:
        yield actor
    finally:
        _override.reset(token[1])


def context_actor() -> Optional[Actor]:
    """The actor set by an enclosing :func:`audit_context`, if any (cheap)."""
    return _override.get()


def current_actor() -> Actor:
    """The acting user right now: ``audit_context`` first, then the configured callback."""
    actor = _override.get()
    if actor is not None:
        return actor
    return Actor(user_id_text(callback_user_id(), from_callback=True))


def callback_user_id() -> Any:
    """What the configured ``get_user_id_callback`` returns right now (None without one)."""
    config = _holder.config
    callback = config.get_user_id_callback if config is not None else None
    return None if callback is None else callback()
