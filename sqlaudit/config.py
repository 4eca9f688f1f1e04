"""Global configuration, compatible with the sqlaudit 0.3 API.

>>> from sqlaudit.config import SQLAuditConfig, set_config
>>> set_config(SQLAuditConfig(get_user_id_callback=lambda: 1, time_zone="UTC"))

Nothing here is required for auditing itself: the database triggers record
every write whether or not a configuration is set. The configuration supplies
the acting user (``get_user_id_callback``), the session used by retrieval when
none is passed (``session_factory``) and the zone timestamps are shown in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any, Callable, Optional, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import SQLAuditConfigError
from .spec import mapper_of

__all__ = ["SQLAuditConfig", "set_config", "get_config", "has_config", "clear_config"]

log = logging.getLogger("sqlaudit")

UserId = Union[str, int, Any]


def _local_zone() -> tzinfo:
    """The machine's local time zone, as an IANA zone where it can be found."""
    zone = _iana_local_zone(os.environ.get("TZ", ""))
    if zone is not None:
        return zone
    # no IANA name: the current fixed offset (not cached, it changes with DST)
    local = datetime.now().astimezone().tzinfo
    assert local is not None  # astimezone() always sets one
    return local


@lru_cache(maxsize=8)
def _iana_local_zone(tz_variable: str) -> Optional[ZoneInfo]:
    """The IANA zone named by ``TZ`` or by /etc/localtime, looked up once per value
    of ``TZ`` (how a process changes its zone, with ``time.tzset()``): retrieval
    without a configured zone asks on every call, and resolving /etc/localtime
    takes tens of microseconds."""
    name = tz_variable.lstrip(":")
    candidates = [name] if name else []
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo" + os.sep in target:
            candidates.append(target.split("zoneinfo" + os.sep, 1)[1])
    except OSError:  # pragma: no cover - platform dependent
        pass
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return None


def _resolve_zone(time_zone: Union[str, tzinfo, None]) -> tzinfo:
    if time_zone is None:
        return _local_zone()
    if isinstance(time_zone, tzinfo):
        return time_zone
    if not isinstance(time_zone, str):
        raise SQLAuditConfigError(
            f"time_zone must be an IANA zone name such as 'UTC' or 'Europe/Kyiv', "
            f"got {type(time_zone).__name__} {time_zone!r}."
        )
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SQLAuditConfigError(
            f"time_zone {time_zone!r} is not a known IANA zone name; "
            f"use a name such as 'UTC' or 'Europe/Kyiv'."
        ) from exc


@dataclass
class SQLAuditConfig:
    """How sqlaudit finds the acting user, a session and the display time zone.

    Args:
        session_factory: a zero-argument callable returning a generator that
            yields a :class:`~sqlalchemy.orm.Session` (FastAPI ``get_db`` style),
            or returning a Session directly. Only used by retrieval when it is
            called without ``session=``.
        user_model: the mapped class of your users (optional, documentation
            and validation only; no foreign key is created).
        user_model_user_id_field: the attribute of ``user_model`` that holds
            the user id. Required when ``user_model`` is given.
        get_user_id_callback: a zero-argument callable returning the id of
            the acting user (str, int, UUID or None). Called once per
            transaction, just before its first statement.
        time_zone: IANA zone name (or tzinfo) in which retrieval reports
            timestamps and reads naive date filters. Defaults to the
            machine's local zone.
        require_user_id: fail-closed mode: refuse writes to tracked tables
            when no acting user is known.
    """

    session_factory: Optional[Callable[[], Any]] = None
    user_model: Optional[type] = None
    user_model_user_id_field: Optional[str] = None
    get_user_id_callback: Optional[Callable[[], Optional[UserId]]] = None
    time_zone: Union[str, tzinfo, None] = None
    require_user_id: bool = False
    zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.session_factory is not None and not callable(self.session_factory):
            raise SQLAuditConfigError(
                f"session_factory must be callable (for example a function that yields a "
                f"Session), got {type(self.session_factory).__name__} {self.session_factory!r}."
            )
        if self.get_user_id_callback is not None and not callable(self.get_user_id_callback):
            raise SQLAuditConfigError(
                f"get_user_id_callback must be a callable taking no arguments, got "
                f"{type(self.get_user_id_callback).__name__} {self.get_user_id_callback!r}."
            )
        self._check_user_model()
        if not isinstance(self.require_user_id, bool):
            raise SQLAuditConfigError(
                f"require_user_id must be True or False, got {self.require_user_id!r}."
            )
        self.zone = _resolve_zone(self.time_zone)

    def _check_user_model(self) -> None:
        if self.user_model is None:
            if self.user_model_user_id_field is not None:
                raise SQLAuditConfigError(
                    "user_model_user_id_field was given without user_model; pass the user "
                    "model class too, or drop the field name."
                )
            return
        mapper = mapper_of(self.user_model)
        if mapper is None:
            raise SQLAuditConfigError(
                f"user_model must be a mapped SQLAlchemy class (a DeclarativeBase subclass), "
                f"got {self.user_model!r}."
            )
        name = self.user_model_user_id_field
        if not isinstance(name, str):
            raise SQLAuditConfigError(
                f"user_model_user_id_field must be the name (str) of the id attribute of "
                f"{self.user_model.__name__}, got {name!r}."
            )
        if name not in mapper.columns and not hasattr(self.user_model, name):
            raise SQLAuditConfigError(
                f"user_model_user_id_field {name!r} is not an attribute of "
                f"{self.user_model.__name__}; its columns are {sorted(mapper.columns.keys())}."
            )


class _ConfigHolder:
    """The one process-wide configuration slot (a single value, never a growing collection)."""

    __slots__ = ("config",)

    def __init__(self) -> None:
        self.config: Optional[SQLAuditConfig] = None

    def __repr__(self) -> str:
        return f"SQLAuditConfigManager(config={self.config!r})"


_holder = _ConfigHolder()


def set_config(config: SQLAuditConfig) -> None:
    """Install ``config`` as the process-wide sqlaudit configuration."""
    if not isinstance(config, SQLAuditConfig):
        raise SQLAuditConfigError(
            f"set_config() expects a SQLAuditConfig instance, got {type(config).__name__}."
        )
    _holder.config = config
    log.debug("sqlaudit configuration set: %r", config)
    if config.get_user_id_callback is not None:
        from .hooks import _watch_for_missing_hooks

        _watch_for_missing_hooks()


def get_config() -> SQLAuditConfig:
    """Return the configuration set by :func:`set_config`.

    Raises:
        SQLAuditConfigError: when no configuration was set.
    """
    if _holder.config is None:
        raise SQLAuditConfigError(
            "sqlaudit is not configured; call sqlaudit.config.set_config(SQLAuditConfig(...)) first."
        )
    return _holder.config


def has_config() -> bool:
    """True when :func:`set_config` has been called (and not cleared)."""
    return _holder.config is not None


def clear_config() -> None:
    """Forget the configuration (mainly for tests)."""
    _holder.config = None


def _require_user_id() -> bool:
    """Whether fail-closed mode is configured (read when triggers are installed)."""
    return _holder.config is not None and _holder.config.require_user_id


def _display_zone() -> tzinfo:
    """The zone retrieval reports timestamps in: the configured one, else local."""
    return _holder.config.zone if _holder.config is not None else _local_zone()
