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
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import uuid

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


#: The longest user id (or reason) stored, in UTF-8 bytes.
MAX_TEXT_BYTES = 1024 * 1024


def _checked_text(name: str, text: str) -> str:
    if "\0" in text:
        raise SQLAuditUserIdValueError(
            f"{name} contains a NUL byte, which no database column can store; "
            f"remove it (got {text[:40]!r}...)")
    if len(text) > MAX_TEXT_BYTES // 4 and len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise SQLAuditUserIdValueError(
            f"{name} is longer than 1 MiB ({len(text.encode('utf-8'))} bytes in UTF-8); "
            f"store a shorter identifier")
    return text


def _as_text(value: Any) -> Optional[str]:
    """The one rule for user ids, on every dialect: ``str``, ``int`` or ``uuid.UUID``,
    stored as ``str(value)``; ``None`` or ``""`` mean "no user"; anything else
    is a :class:`TypeError`, a NUL byte or more than 1 MiB a :class:`ValueError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise SQLAuditUserIdTypeError(
            f"user_id must be a str, int or uuid.UUID, got {type(value).__name__} {value!r:.60}; "
            f"convert it (for example str(user.id)) before passing it to sqlaudit")
    text = _checked_text("user_id", str(value))
    return text or None


@contextlib.contextmanager
def audit_context(*, user_id: Any, reason: Optional[str] = None) -> Iterator[Actor]:
    """Attribute the writes inside the block to ``user_id`` (with an optional ``reason``).

    Overrides ``get_user_id_callback``. ``user_id=None`` records the writes
    without a user. Nesting restores the outer value on exit, errors included.
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"reason must be a str or None, got {type(reason).__name__}")
    if reason is not None:
        reason = _checked_text("reason", reason) or None
    actor = Actor(_as_text(user_id), reason)
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
    config = _holder.config
    callback = config.get_user_id_callback if config is not None else None
    if callback is None:
        return Actor(None)
    return Actor(_as_text(callback()))
