"""The acting user, the reason and the context of the writes.

>>> from sqlaudit.context import audit_context
>>> with audit_context(user_id=42, reason="support ticket 7",
...                    context={"request_id": "r-1"}):
...     session.commit()        # doctest: +SKIP

The value lives in a :class:`contextvars.ContextVar`, so it is private to the
thread or asyncio task that set it, and it overrides the configured
``get_user_id_callback`` for the writes inside the block. Frameworks without a
``with`` block (middleware, signal handlers) use :func:`set_audit_context` and
:func:`clear_audit_context`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .config import _holder
from .exceptions import SQLAuditContextError, SQLAuditUserIdTypeError, SQLAuditUserIdValueError

__all__ = ["audit_context", "set_audit_context", "clear_audit_context", "Actor", "current_actor"]

log = logging.getLogger("sqlaudit")


@dataclass(frozen=True)
class Actor:
    """Who is acting (``user_id`` as text, or None), optionally why, and the context.

    ``context`` is the JSON text of the context dict (None without one).
    ``inherits_user`` is True when no :func:`audit_context` named a user: the
    configured ``get_user_id_callback`` supplies it when a transaction starts.
    """

    user_id: Optional[str]
    reason: Optional[str] = None
    context: Optional[str] = None
    inherits_user: bool = False

    @property
    def context_dict(self) -> Optional[dict[str, Any]]:
        """The context as a dict (None without one)."""
        return None if self.context is None else dict(json.loads(self.context))


_override: ContextVar[Optional[Actor]] = ContextVar("sqlaudit_actor", default=None)


def _user_id_text(value: Any, *, from_callback: bool = False) -> Optional[str]:
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


def _reason_text(value: Any) -> Optional[str]:
    """``reason`` as stored: text or None (``""`` is no reason), NUL refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SQLAuditUserIdTypeError(f"reason must be a str or None, got {type(value).__name__}")
    _check_text(value, "reason")
    return str.__str__(value) or None


def _context_text(value: Any, base: Optional[str] = None) -> Optional[str]:
    """The JSON text stored in ``sqlaudit_log.context``: ``value`` (a dict with str keys,
    JSON-serialisable) merged over ``base`` (the enclosing context's text), keys sorted.

    None and ``{}`` add nothing. Anything else raises :class:`SQLAuditContextError`
    (a ``TypeError``); NaN, NUL characters and texts over 1 MiB raise ``ValueError``.
    """
    if value is None:
        return base
    if not isinstance(value, Mapping):
        raise SQLAuditContextError(
            f"context must be a dict of JSON-serialisable values with str keys, got "
            f"{type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise SQLAuditContextError(f"context keys must be str, got {bad[0]!r}")
    merged = dict(json.loads(base)) if base else {}
    merged.update(value)
    if not merged:
        return None
    try:
        text = json.dumps(merged, sort_keys=True, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))
    except TypeError as exc:
        raise SQLAuditContextError(
            f"context is not JSON-serialisable ({exc}); convert the value to str, int, float, "
            f"bool, None, list or dict first") from None
    except ValueError as exc:
        raise SQLAuditUserIdValueError(f"context cannot be stored: {exc}") from None
    if "\\u0000" in text and _has_nul(merged):
        raise SQLAuditUserIdValueError("context contains a NUL character (\\x00), which "
                                       "PostgreSQL's jsonb refuses; remove it")
    _check_text(text, "context")
    return text


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


_UNSET: Any = object()


def _nested(user_id: Any, reason: Optional[str], context: Any) -> Actor:
    """The actor of a block nested in the current one: a user, reason or context it
    does not set is the enclosing one's; contexts merge key by key (inner wins)."""
    outer = _override.get()
    if user_id is _UNSET:
        user, inherits = (outer.user_id, outer.inherits_user) if outer is not None else (None, True)
    else:
        user, inherits = _user_id_text(user_id), False
    why = _reason_text(reason)
    if why is None and outer is not None:
        why = outer.reason
    return Actor(user, why, _context_text(context, outer.context if outer is not None else None),
                 inherits)


@contextlib.contextmanager
def audit_context(*, user_id: Any = _UNSET, reason: Optional[str] = None,
                  context: Optional[Mapping[str, Any]] = None) -> Iterator[Actor]:
    """Attribute the writes inside the block to ``user_id``, with an optional
    ``reason`` and ``context``.

    ``user_id`` is a ``str``, ``int`` or ``uuid.UUID`` (stored as its text);
    ``None`` or ``""`` records the writes without a user. Left out, the
    enclosing block's user applies, else ``get_user_id_callback``'s. ``reason``
    replaces the enclosing one; ``context`` (a JSON-serialisable dict, such as
    ``{"request_id": ..., "impersonated_by": ...}``) is merged over the
    enclosing one key by key and comes back as ``record.context``. A value of
    the wrong type raises ``TypeError``, one that cannot be stored
    ``ValueError``, here, before anything reaches the database. Leaving the
    block restores the enclosing values, errors included.
    """
    actor = _nested(user_id, reason, context)
    token = _override.set(actor)
    try:
        yield actor
    finally:
        _override.reset(token)


def set_audit_context(*, user_id: Any = _UNSET, reason: Optional[str] = None,
                      context: Optional[Mapping[str, Any]] = None) -> Actor:
    """Set the user, reason and context for the rest of the current thread or task
    (the :mod:`contextvars` context), for frameworks without a ``with`` block.

    Same arguments and merging as :func:`audit_context` (values not given are
    kept). Undo it with :func:`clear_audit_context`, for example in the
    middleware's ``finally``; an asyncio task or a thread started afterwards
    inherits it, as with any context variable.
    """
    actor = _nested(user_id, reason, context)
    _override.set(actor)
    return actor


def clear_audit_context() -> None:
    """Forget everything :func:`set_audit_context` set: the callback applies again."""
    _override.set(None)


def _context_actor() -> Optional[Actor]:
    """The actor set by an enclosing :func:`audit_context`, if any (cheap)."""
    return _override.get()


def current_actor() -> Actor:
    """The acting user right now: ``audit_context`` first, then the configured callback."""
    actor = _override.get()
    if actor is not None and not actor.inherits_user:
        return actor
    user = _user_id_text(_callback_user_id(), from_callback=True)
    if actor is None:
        return Actor(user)
    return Actor(user, actor.reason, actor.context)


def _callback_user_id() -> Any:
    """What the configured ``get_user_id_callback`` returns right now (None without one)."""
    config = _holder.config
    callback = config.get_user_id_callback if config is not None else None
    return None if callback is None else callback()
