"""Reconstructing past states: get_resource_state and get_table_state (issue section 3)."""

from __future__ import annotations

import time as clock
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import pytest
from sqlalchemy import JSON, DateTime, Float, Integer, LargeBinary, Numeric, String, Uuid, text, update
from sqlalchemy.dialects.mysql import DOUBLE
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import audit_context, register_hooks, track_table
from sqlaudit.ddl import drop_audit_triggers, install_audit_triggers
from sqlaudit.retrieval import get_resource_state, get_table_state, get_transactions

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

TINY = timedelta(microseconds=1000)  # SQLite records milliseconds


def account_model(Base: Any) -> type:
    @track_table(tracked_fields=["owner", "balance", "note", "data", "raw", "ratio", "seen"])
    class Account(Base):
        __tablename__ = "accounts"
        id: Mapped[int] = mapped_column(primary_key=True)
        owner: Mapped[str] = mapped_column(String(50))
        balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
        note: Mapped[str | None] = mapped_column(String(200), nullable=True)
        data: Mapped[Any] = mapped_column(JSON, nullable=True)
        raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
        # a double on every dialect (SQLAlchemy's Float is a 4-byte FLOAT on MariaDB)
        ratio: Mapped[float | None] = mapped_column(
            Float().with_variant(DOUBLE(asdecimal=False), "mysql", "mariadb"), nullable=True)
        seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    return Account


@pytest.fixture
def Account(engine, Base) -> type:
    model = account_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    return model


def stamp(engine: Any) -> datetime:
    """The time of the first change of the newest transaction (what an investigator
    would pick: ``at`` this time the transaction's first change is in, ``at`` a
    moment before, none of it)."""
    with Session(engine) as s:
        return get_transactions(s, limit=1)[0].timestamp


def commit(engine: Any, work: Callable[[Session], None]) -> datetime:
    clock.sleep(0.003)  # keeps successive commits in distinct milliseconds on SQLite
    with Session(engine) as s, audit_context(user_id="u"):
        work(s)
        s.commit()
    return stamp(engine)


def state(engine: Any, model: type, rid: Any, at: datetime) -> Any:
    with Session(engine) as s:
        return get_resource_state(model, rid, at=at, session=s)


def test_state_before_insert_is_none_and_after_each_change_is_the_row(engine, Account) -> None:
    t_insert = commit(engine, lambda s: s.add(Account(id=1, owner="ann", balance=Decimal("10.00"))))
    t_update = commit(engine, lambda s: s.execute(update(Account).values(balance=Decimal("12.50"))))
    assert state(engine, Account, 1, t_insert - TINY) is None
    assert state(engine, Account, 1, t_insert)["balance"] == Decimal("10.00")
    assert state(engine, Account, 1, t_update - TINY)["balance"] == Decimal("10.00")
    now = state(engine, Account, 1, t_update)
    assert now == {"owner": "ann", "balance": Decimal("12.50"), "note": None, "data": None,
                   "raw": None, "ratio": None, "seen": None}


def test_state_of_a_row_older_than_auditing_rolls_back_from_the_live_row(engine, Account) -> None:
    drop_audit_triggers(engine, Account)
    with Session(engine) as s:  # written before auditing: no record of it
        s.add(Account(id=1, owner="old", balance=Decimal("1.00"), note="before"))
        s.commit()
    install_audit_triggers(engine, Account)
    t1 = commit(engine, lambda s: s.execute(update(Account).values(note="after")))
    before = state(engine, Account, 1, t1 - TINY)
    assert before["note"] == "before" and before["owner"] == "old"
    assert state(engine, Account, 1, t1)["note"] == "after"


def test_state_of_a_deleted_row_comes_from_its_delete_snapshot(engine, Account) -> None:
    commit(engine, lambda s: s.add(Account(id=1, owner="ann", note="x")))
    t_update = commit(engine, lambda s: s.execute(update(Account).values(note="y")))
    t_delete = commit(engine, lambda s: s.delete(s.get(Account, 1)))
    assert state(engine, Account, 1, t_delete) is None
    assert state(engine, Account, 1, t_delete - TINY)["note"] == "y"
    assert state(engine, Account, 1, t_update - TINY)["note"] == "x"


def test_state_of_a_deleted_row_older_than_auditing(engine, Account) -> None:
    drop_audit_triggers(engine, Account)
    with Session(engine) as s:
        s.add(Account(id=1, owner="old", note="legacy"))
        s.commit()
    install_audit_triggers(engine, Account)
    t_delete = commit(engine, lambda s: s.delete(s.get(Account, 1)))
    assert state(engine, Account, 1, t_delete - TINY)["note"] == "legacy"


def test_a_changed_key_gives_each_key_its_own_past(engine, Account) -> None:
    commit(engine, lambda s: s.add(Account(id=1, owner="ann")))
    t_rekey = commit(engine, lambda s: s.execute(update(Account).values(id=2)))
    assert state(engine, Account, 1, t_rekey - TINY)["owner"] == "ann"
    assert state(engine, Account, 1, t_rekey) is None
    assert state(engine, Account, 2, t_rekey - TINY) is None
    assert state(engine, Account, 2, t_rekey)["owner"] == "ann"


def test_values_come_back_typed_and_exact(engine, Account) -> None:
    seen = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    hostile = "it's \"quoted\" \\ 😀 '); DROP TABLE accounts; --"
    commit(engine, lambda s: s.add(Account(
        id=1, owner=hostile, balance=Decimal("1234567890.12"), data={"a": [1, None, "x"]},
        raw=b"\x00\x01\xff", ratio=0.1 + 0.2, seen=seen)))
    with Session(engine) as s:
        orm_seen = s.get(Account, 1).seen  # naive on SQLite, which keeps no zone
    t1 = commit(engine, lambda s: s.execute(update(Account).values(owner="plain", ratio=2.0)))
    got = state(engine, Account, 1, t1 - TINY)
    assert got["owner"] == hostile
    assert got["balance"] == Decimal("1234567890.12")
    assert got["data"] == {"a": [1, None, "x"]}
    assert got["raw"] == b"\x00\x01\xff"
    assert got["ratio"] == 0.1 + 0.2
    if engine.dialect.name in ("mysql", "mariadb"):
        seen = seen.replace(microsecond=0)  # a DATETIME without precision keeps whole seconds
    assert got["seen"] == orm_seen and orm_seen.replace(tzinfo=timezone.utc) == seen


def test_naive_at_is_read_in_the_configured_time_zone(engine, Account) -> None:
    t1 = commit(engine, lambda s: s.add(Account(id=1, owner="ann")))
    naive_utc = t1.astimezone(timezone.utc).replace(tzinfo=None)  # default zone is UTC
    assert state(engine, Account, 1, naive_utc)["owner"] == "ann"


def test_at_must_be_a_datetime(engine, Account) -> None:
    with Session(engine) as s, pytest.raises(TypeError, match="at must be a datetime"):
        get_resource_state(Account, 1, at="2026-01-01", session=s)


def test_a_resource_id_of_the_wrong_shape_is_refused(engine, Account) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="not a valid int"):
            get_resource_state(Account, "abc", at=datetime.now(timezone.utc), session=s)
        with pytest.raises(TypeError, match="key of 1 column"):
            get_resource_state(Account, (1, 2), at=datetime.now(timezone.utc), session=s)


def keyed_models(Base: Any) -> tuple[type, type]:
    @track_table(tracked_fields=["value"])
    class Pair(Base):
        __tablename__ = "pairs"
        tenant: Mapped[str] = mapped_column(String(20), primary_key=True)
        number: Mapped[int] = mapped_column(Integer, primary_key=True)
        value: Mapped[str] = mapped_column(String(20))

    @track_table(tracked_fields=["value"])
    class Thing(Base):
        __tablename__ = "things"
        id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
        value: Mapped[str] = mapped_column(String(20))

    return Pair, Thing


def test_composite_and_uuid_keys(engine, Base) -> None:
    Pair, Thing = keyed_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    thing_id = uuid.uuid4()
    commit(engine, lambda s: (s.add(Pair(tenant="t", number=1, value="a")),
                              s.add(Thing(id=thing_id, value="a"))))
    t1 = commit(engine, lambda s: (s.execute(update(Pair).values(value="b")),
                                   s.execute(update(Thing).values(value="b"))))
    assert state(engine, Pair, ("t", 1), t1 - TINY) == {"value": "a"}
    assert state(engine, Thing, thing_id, t1 - TINY) == {"value": "a"}
    assert state(engine, Thing, str(thing_id), datetime.now(timezone.utc)) == {"value": "b"}
    with Session(engine) as s:
        table = dict(get_table_state(Thing, at=t1 - TINY, session=s))
    assert table == {str(thing_id): {"value": "a"}}


def test_table_state_lists_every_row_that_existed_then(engine, Account) -> None:
    commit(engine, lambda s: s.add_all([Account(id=i, owner=f"o{i}") for i in range(1, 6)]))
    t_middle = commit(engine, lambda s: s.execute(update(Account).where(Account.id == 2)
                                                  .values(owner="changed")))
    commit(engine, lambda s: (s.delete(s.get(Account, 3)), s.add(Account(id=9, owner="new"))))
    with Session(engine) as s:
        then = dict(get_table_state(Account, at=t_middle, session=s))
        for rid, row in then.items():  # the same answer as one resource at a time
            assert get_resource_state(Account, int(rid), at=t_middle, session=s) == row
    assert sorted(then) == ["1", "2", "3", "4", "5"]
    assert then["2"]["owner"] == "changed" and then["3"]["owner"] == "o3"


def test_table_state_streams(engine, Account) -> None:
    """The rows come through a streaming result: the first arrives before the rest are read."""
    # ids from 1: MariaDB gives an AUTO_INCREMENT key written as 0 the next value instead
    commit(engine, lambda s: s.add_all([Account(id=i, owner="x") for i in range(1, 2501)]))
    with Session(engine) as s:
        rows = get_table_state(Account, at=datetime.now(timezone.utc) + timedelta(days=1), session=s)
        first = next(rows)
        assert first[1]["owner"] == "x"
        assert sum(1 for _ in rows) == 2499


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_after_a_truncate_state_is_rebuilt_forwards_from_recorded_changes(engine, Account) -> None:
    commit(engine, lambda s: s.add_all([Account(id=1, owner="a"), Account(id=2, owner="b")]))
    t1 = commit(engine, lambda s: s.execute(update(Account).where(Account.id == 1).values(owner="a2")))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE accounts"))
    with Session(engine) as s:
        assert dict(get_table_state(Account, at=t1, session=s)) == {
            "1": {"owner": "a2", "balance": Decimal("0.00"), "note": None, "data": None,
                  "raw": None, "ratio": None, "seen": None},
            "2": {"owner": "b", "balance": Decimal("0.00"), "note": None, "data": None,
                  "raw": None, "ratio": None, "seen": None},
        }
        assert get_resource_state(Account, 1, at=t1 - TINY, session=s)["owner"] == "a"


def test_a_field_tracked_later_shows_its_oldest_known_value(engine, Base) -> None:
    """Documented: changes made before a field was tracked are not in the log."""
    Account = account_model(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    t_insert = commit(engine, lambda s: s.add(Account(id=1, owner="ann", note="n1")))
    drop_audit_triggers(engine, Account)
    with Session(engine) as s:  # an unaudited change
        s.execute(update(Account).values(note="n2"))
        s.commit()
    install_audit_triggers(engine, Account)
    assert state(engine, Account, 1, t_insert)["note"] == "n2"


def _peak_while_streaming(engine: Any, model: type) -> tuple[int, int]:
    import tracemalloc

    with Session(engine) as s:
        tracemalloc.start()
        try:
            count = sum(1 for _ in get_table_state(
                model, at=datetime.now(timezone.utc) + timedelta(days=1), session=s))
            return count, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_table_state_memory_does_not_grow_with_the_table(engine, Account) -> None:
    """Constant memory: streaming ten times the rows peaks at about the same Python
    memory (the result is fetched in batches, each state handed out as it is built)."""
    from sqlalchemy import insert

    def add(lo: int, hi: int) -> None:
        with engine.begin() as conn:
            conn.execute(insert(Account), [{"id": i, "owner": f"owner {i}"} for i in range(lo, hi)])

    add(1, 3001)  # not 0: MariaDB would auto-number it
    small = _peak_while_streaming(engine, Account)
    add(3001, 30001)
    large = _peak_while_streaming(engine, Account)
    assert (small[0], large[0]) == (3000, 30000)
    assert large[1] < 2 * small[1], (small, large)
