"""SQLAuditConfig: validation, the global slot and the default time zone (no database needed)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit.config import (
    SQLAuditConfig,
    clear_config,
    _display_zone,
    get_config,
    has_config,
    set_config,
)
from sqlaudit.exceptions import SQLAuditConfigError, SQLAuditError

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def user_model(Base):
    class User(Base):
        __tablename__ = "users"
        user_id: Mapped[int] = mapped_column(primary_key=True)
        login: Mapped[str] = mapped_column(String)

    return User


def get_db():
    yield None


# ---------------------------------------------------------------- validation


def test_non_callable_get_user_id_callback_is_rejected() -> None:
    with pytest.raises(SQLAuditConfigError, match="get_user_id_callback must be a callable") as err:
        SQLAuditConfig(get_user_id_callback=42)
    assert "42" in str(err.value)


def test_non_callable_session_factory_is_rejected() -> None:
    with pytest.raises(SQLAuditConfigError, match="session_factory must be callable") as err:
        SQLAuditConfig(session_factory="get_db")
    assert "'get_db'" in str(err.value)


def test_user_model_that_is_not_a_mapped_class_is_rejected() -> None:
    class NotMapped:
        user_id = 1

    with pytest.raises(SQLAuditConfigError, match="user_model must be a mapped SQLAlchemy class") as err:
        SQLAuditConfig(user_model=NotMapped, user_model_user_id_field="user_id")
    assert "NotMapped" in str(err.value)


def test_user_model_instance_instead_of_class_is_rejected(Base) -> None:
    User = user_model(Base)
    with pytest.raises(SQLAuditConfigError, match="user_model must be a mapped SQLAlchemy class"):
        SQLAuditConfig(user_model=User(user_id=1), user_model_user_id_field="user_id")


def test_user_model_user_id_field_missing_on_the_model_is_rejected(Base) -> None:
    User = user_model(Base)
    with pytest.raises(SQLAuditConfigError) as err:
        SQLAuditConfig(user_model=User, user_model_user_id_field="uid")
    message = str(err.value)
    assert "'uid'" in message
    assert "is not an attribute of User" in message


def test_unknown_time_zone_name_is_rejected() -> None:
    with pytest.raises(SQLAuditConfigError, match="is not a known IANA zone name") as err:
        SQLAuditConfig(time_zone="Mars/Olympus_Mons")
    assert "'Mars/Olympus_Mons'" in str(err.value)


def test_non_str_time_zone_is_rejected() -> None:
    with pytest.raises(SQLAuditConfigError, match="time_zone must be an IANA zone name") as err:
        SQLAuditConfig(time_zone=3)
    assert "int 3" in str(err.value)


def test_config_errors_are_sqlaudit_errors() -> None:
    with pytest.raises(SQLAuditError):
        SQLAuditConfig(session_factory=1)


# ---------------------------------------------------------------- valid configs


def test_full_valid_config_round_trips_through_set_and_get(Base) -> None:
    User = user_model(Base)
    config = SQLAuditConfig(
        session_factory=get_db,
        user_model=User,
        user_model_user_id_field="user_id",
        get_user_id_callback=lambda: 7,
        time_zone="Europe/Kyiv",
    )
    set_config(config)
    assert get_config() is config
    assert get_config().session_factory is get_db
    assert get_config().user_model is User
    assert get_config().user_model_user_id_field == "user_id"
    assert get_config().get_user_id_callback() == 7
    assert get_config().zone == ZoneInfo("Europe/Kyiv")


def test_time_zone_accepts_a_tzinfo() -> None:
    set_config(SQLAuditConfig(time_zone=timezone.utc))
    assert get_config().zone is timezone.utc


def test_set_config_replaces_the_previous_config() -> None:
    first, second = SQLAuditConfig(time_zone="UTC"), SQLAuditConfig(time_zone="Asia/Tokyo")
    set_config(first)
    set_config(second)
    assert get_config() is second


def test_has_config_and_clear_config() -> None:
    assert has_config() is False
    set_config(SQLAuditConfig())
    assert has_config() is True
    clear_config()
    assert has_config() is False


def test_get_config_when_unset_raises() -> None:
    with pytest.raises(SQLAuditConfigError, match="sqlaudit is not configured"):
        get_config()


def test_get_config_after_clear_config_raises() -> None:
    set_config(SQLAuditConfig())
    clear_config()
    with pytest.raises(SQLAuditConfigError, match="set_config"):
        get_config()


def test_set_config_rejects_anything_but_a_config() -> None:
    with pytest.raises(SQLAuditConfigError, match="expects a SQLAuditConfig instance, got str"):
        set_config("x")
    assert has_config() is False


# ---------------------------------------------------------------- default time zone


def test_default_time_zone_is_the_local_zone() -> None:
    config = SQLAuditConfig()
    now = datetime.now().astimezone()
    assert config.time_zone is None
    assert config.zone.utcoffset(now.replace(tzinfo=None)) == now.utcoffset()


@pytest.fixture
def local_zone_tokyo(monkeypatch):
    """Make the process's local zone Asia/Tokyo (restored afterwards)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_without_a_config_retrieval_follows_the_local_zone_when_it_changes(monkeypatch) -> None:
    """The local zone is looked up once per TZ value, so a process that changes
    TZ (and calls time.tzset()) gets the new zone on its next call."""
    clear_config()
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert _display_zone() == ZoneInfo("UTC")
        monkeypatch.setenv("TZ", "Asia/Tokyo")
        time.tzset()
        assert _display_zone() == ZoneInfo("Asia/Tokyo")
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert _display_zone() == ZoneInfo("UTC")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_default_time_zone_follows_a_non_utc_local_zone(local_zone_tokyo) -> None:
    config = SQLAuditConfig()
    now = datetime.now().astimezone()
    assert now.utcoffset().total_seconds() == 9 * 3600  # the machine really is in Tokyo now
    assert config.zone.utcoffset(now.replace(tzinfo=None)) == now.utcoffset()


def test_a_callback_without_register_hooks_warns_once_at_the_first_write(engine, Base, caplog) -> None:
    import logging

    from sqlalchemy import text

    from sqlaudit import hooks
    from sqlaudit.config import SQLAuditConfig, set_config

    from sample_models import readme_models

    hooks._missing_hooks_warned = False
    User, _ = readme_models(Base)
    Base.metadata.create_all(engine)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 1))
    with caplog.at_level(logging.WARNING, logger="sqlaudit"), engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        assert "register_hooks() was not called" not in caplog.text  # reads do not warn
        conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        conn.execute(text("INSERT INTO users (user_id) VALUES (2)"))
    assert caplog.text.count("register_hooks() was not called") == 1


def test_no_warning_when_the_hooks_are_registered(engine, Base, caplog) -> None:
    import logging

    from sqlalchemy import text

    from sqlaudit import hooks, register_hooks
    from sqlaudit.config import SQLAuditConfig, set_config

    from sample_models import readme_models

    hooks._missing_hooks_warned = False
    User, _ = readme_models(Base)
    Base.metadata.create_all(engine)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: 1))
    register_hooks()
    with caplog.at_level(logging.WARNING, logger="sqlaudit"), engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
    assert "register_hooks() was not called" not in caplog.text
