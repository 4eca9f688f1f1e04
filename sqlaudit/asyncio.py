"""Every read and undo function, as coroutines for ``AsyncSession`` / ``AsyncConnection``.

Same names and arguments as in :mod:`sqlaudit.retrieval` and
:mod:`sqlaudit.revert`, with the session first and required:

>>> from sqlaudit.asyncio import get_changes
>>> records = await get_changes(async_session, user_ids="42")   # doctest: +SKIP

Each call runs the sync function on the session's own connection through
SQLAlchemy's ``run_sync`` (the same transaction and greenlet bridge the async
ORM uses). :func:`get_table_state` is an async iterator that fetches in
batches, so memory stays constant.
"""

from __future__ import annotations

from datetime import datetime
from itertools import islice
from typing import Any, AsyncIterator, Callable, Optional, TypeVar, Union

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from . import retrieval as _retrieval
from . import revert as _revert
from .exceptions import SQLAuditArgumentTypeError

__all__ = [
    "get_changes",
    "get_resource_changes",
    "get_resource_state",
    "get_table_state",
    "get_transactions",
    "restore_resource",
    "revert_transaction",
]

AsyncBind = Union[AsyncSession, AsyncConnection]
T = TypeVar("T")
_BATCH = 1000


async def _run(session: AsyncBind, call: Callable[[Any], T]) -> T:
    if isinstance(session, (AsyncSession, AsyncConnection)):
        return await session.run_sync(call)
    raise SQLAuditArgumentTypeError(f"expected an AsyncSession or AsyncConnection, got {session!r}; the "
                    f"functions of sqlaudit.retrieval take a Session or Connection")


async def get_resource_changes(model_class: type, session: AsyncBind, **kw: Any) -> list[Any]:
    """:func:`sqlaudit.retrieval.get_resource_changes`, awaited."""
    return await _run(session, lambda s: _retrieval.get_resource_changes(model_class, session=s, **kw))


async def get_changes(session: AsyncBind, **kw: Any) -> list[Any]:
    """:func:`sqlaudit.retrieval.get_changes`, awaited."""
    return await _run(session, lambda s: _retrieval.get_changes(s, **kw))


async def get_transactions(session: AsyncBind, **kw: Any) -> list[Any]:
    """:func:`sqlaudit.retrieval.get_transactions`, awaited."""
    return await _run(session, lambda s: _retrieval.get_transactions(s, **kw))


async def get_resource_state(model_class: type, resource_id: Any, *, at: datetime,
                             session: AsyncBind) -> Optional[dict[str, Any]]:
    """:func:`sqlaudit.retrieval.get_resource_state`, awaited."""
    return await _run(session, lambda s: _retrieval.get_resource_state(
        model_class, resource_id, at=at, session=s))


async def get_table_state(model_class: type, *, at: datetime,
                          session: AsyncBind) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """:func:`sqlaudit.retrieval.get_table_state` as an async iterator (``async for``)."""
    rows: Any = None

    def start(sync: Any) -> list[Any]:
        nonlocal rows
        rows = _retrieval.get_table_state(model_class, at=at, session=sync)
        return list(islice(rows, _BATCH))

    def more(sync: Any) -> list[Any]:
        return list(islice(rows, _BATCH))

    batch = await _run(session, start)
    try:
        while batch:
            for item in batch:
                yield item
            if len(batch) < _BATCH:
                break
            batch = await _run(session, more)
    finally:
        if rows is not None:
            await _run(session, lambda _: rows.close())


async def revert_transaction(session: AsyncBind, transaction_id: int, *,
                             on_conflict: str = "raise") -> Any:
    """:func:`sqlaudit.revert.revert_transaction`, awaited."""
    return await _run(session, lambda s: _revert.revert_transaction(
        s, transaction_id, on_conflict=on_conflict))


async def restore_resource(session: AsyncBind, model_class: type, resource_id: Any, *,
                           at: datetime) -> Optional[dict[str, Any]]:
    """:func:`sqlaudit.revert.restore_resource`, awaited."""
    return await _run(session, lambda s: _revert.restore_resource(
        s, model_class, resource_id, at=at))
