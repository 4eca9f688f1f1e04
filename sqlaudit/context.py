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

from .config import _holder

__all__ = ["audit_context", "Actor", "current_actor"]

log = logging.getLogger("sqlaudit")


@dataclass(frozen=True)
class Actor:
    """Who is acting (``user_id`` as text, or None) and, optionally, why."""

    user_id: Optional[str]
    reason: Optional[str] = None


_override: ContextVar[Optional[Actor]] = ContextVar("sqlaudit_actor", default=None)


def _as_text(value: Any) -> Optional[str]:
    """User ids are stored as text: 7 -> "7", UUID -> its canonical string, None stays None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


@contextlib.contextmanager
def audit_context(*, user_id: Any, reason: Optional[str] = None) -> Iterator[Actor]:
    """Attribute the writes inside the block to ``user_id`` (with an optional ``reason``).

    Overrides ``get_user_id_callback``. ``user_id=None`` records the writes
    without a user. Nesting restores the outer value on exit, errors included.
    """
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"reason must be a str or None, got {type(reason).__name__}")
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
