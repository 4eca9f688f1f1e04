"""get_resource_changes: filters, time zones, sorting, paging, sessions and errors."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sqlaudit import audit_context, register_hooks
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.decorators import track_table
from sqlaudit.exceptions import (
    SQLAuditConfigError,
    SQLAuditTableNotInDatabaseError,
    SQLAuditTableNotTrackedError,
)
from sqlaudit.retrieval import SQLAuditRecord, get_resource_changes

from conftest import changes, summary

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True


def customer_model(Base):
    @track_table(tracked_fields=["name", "email", "city"], table_label="Customer")
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        email: Mapped[Optional[str]]
        city: Mapped[Optional[str]]
        notes: Mapped[Optional[str]]  # not tracked

    return Customer


@pytest.fixture
def Customer(engine, Base):
    model = customer_model(Base)
    Base.metadata.create_all(engine)
    return model


def add_customers_one_by_one(engine, Customer, names: list[str]) -> None:
    """One insert (one record: its name) per transaction, a few ms apart."""
    with Session(engine) as s:
        for i, name in enumerate(names, start=1):
            s.add(Customer(id=i, name=name))
            s.commit()
            time.sleep(0.01)  # SQLite's clock has millisecond resolution


# ---------------------------------------------------------------- records


@pytest.mark.parametrize("paged", [False, True], ids=["whole", "paged"])
def test_records_are_frozen_and_equal_to_constructed_ones(engine, Customer, paged) -> None:
    add_customers_one_by_one(engine, Customer, ["Ann"])
    with Session(engine) as s:
        (record,) = get_resource_changes(Customer, session=s, limit=10 if paged else None)
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(SQLAuditRecord)}
    assert record == SQLAuditRecord(**values)
    assert repr(record) == repr(SQLAuditRecord(**values))
    assert (values["field_name"], values["new_value"], values["table_label"]) == ("name", "Ann", "Customer")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.new_value = "Bob"  # type: ignore[misc]


# ---------------------------------------------------------------- filter_user_ids


@pytest.fixture
def changes_by_three_users(engine, Customer):
    """Customer n is inserted (name only) by user n, for n = 1, 2, 3."""
    register_hooks()
    with Session(engine) as s:
        for user in (1, 2, 3):
            with audit_context(user_id=user):
                s.add(Customer(id=user, name=f"by {user}"))
                s.commit()
    return Customer


def test_filter_user_ids_accepts_an_int(engine, changes_by_three_users) -> None:
    with Session(engine) as s:
        records = changes(changes_by_three_users, s, filter_user_ids=1)
    assert summary(records) == [("insert", "1", "name", None, "by 1", "1")]


def test_filter_user_ids_accepts_a_str(engine, changes_by_three_users) -> None:
    with Session(engine) as s:
        records = changes(changes_by_three_users, s, filter_user_ids="2")
    assert summary(records) == [("insert", "2", "name", None, "by 2", "2")]


def test_filter_user_ids_accepts_a_mixed_list(engine, changes_by_three_users) -> None:
    with Session(engine) as s:
        records = changes(changes_by_three_users, s, filter_user_ids=["1", 2])
    assert summary(records) == [
        ("insert", "1", "name", None, "by 1", "1"),
        ("insert", "2", "name", None, "by 2", "2"),
    ]


def test_filter_user_ids_accepts_a_tuple(engine, changes_by_three_users) -> None:
    # filter_user_ids is documented as ``id | Sequence[id]``: a tuple is a sequence of ids
    with Session(engine) as s:
        records = changes(changes_by_three_users, s, filter_user_ids=("1", 3))
    assert summary(records) == [
        ("insert", "1", "name", None, "by 1", "1"),
        ("insert", "3", "name", None, "by 3", "3"),
    ]


# ---------------------------------------------------------------- filter_fields


@pytest.fixture
def one_full_customer(engine, Customer):
    with Session(engine) as s:
        s.add(Customer(id=1, name="Ann", email="ann@example.com", city="Kyiv", notes="n"))
        s.commit()
    return Customer


def test_filter_fields_accepts_a_single_name(engine, one_full_customer) -> None:
    with Session(engine) as s:
        records = changes(one_full_customer, s, filter_fields="email")
    assert summary(records) == [("insert", "1", "email", None, "ann@example.com", None)]


def test_filter_fields_accepts_a_list(engine, one_full_customer) -> None:
    with Session(engine) as s:
        records = changes(one_full_customer, s, filter_fields=["city", "name"])
    assert summary(records) == [
        ("insert", "1", "city", None, "Kyiv", None),
        ("insert", "1", "name", None, "Ann", None),
    ]


def test_filter_fields_accepts_a_tuple(engine, one_full_customer) -> None:
    # filter_fields is documented as ``str | Sequence[str]``: a tuple is a sequence of names
    with Session(engine) as s:
        records = changes(one_full_customer, s, filter_fields=("city", "name"))
    assert summary(records) == [
        ("insert", "1", "city", None, "Kyiv", None),
        ("insert", "1", "name", None, "Ann", None),
    ]


def test_filter_fields_with_an_unknown_field_names_it(engine, one_full_customer) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="'nickname' is not a column attribute"):
            changes(one_full_customer, s, filter_fields=["name", "nickname"])


def test_filter_fields_uses_attribute_names_not_column_names(engine, Base) -> None:
    @track_table(tracked_fields=["display_name", "city"])
    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        display_name: Mapped[str] = mapped_column("Mixed Case", String)
        city: Mapped[str]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Customer(id=1, display_name="Ann", city="Kyiv"))
        s.commit()
        assert summary(changes(Customer, s, filter_fields="display_name")) == [
            ("insert", "1", "display_name", None, "Ann", None),
        ]
        with pytest.raises(ValueError, match="'Mixed Case'"):
            changes(Customer, s, filter_fields="Mixed Case")


# ---------------------------------------------------------------- filter_resource_ids


@pytest.fixture
def three_customers(engine, Customer):
    add_customers_one_by_one(engine, Customer, ["Ann", "Bob", "Cid"])
    return Customer


def test_filter_resource_ids_accepts_a_scalar(engine, three_customers) -> None:
    with Session(engine) as s:
        records = changes(three_customers, s, filter_resource_ids=2)
    assert summary(records) == [("insert", "2", "name", None, "Bob", None)]


def test_filter_resource_ids_accepts_a_list(engine, three_customers) -> None:
    with Session(engine) as s:
        records = changes(three_customers, s, filter_resource_ids=[1, "3"])
    assert summary(records) == [
        ("insert", "1", "name", None, "Ann", None),
        ("insert", "3", "name", None, "Cid", None),
    ]


def test_filter_resource_ids_rejects_a_float(engine, three_customers) -> None:
    with Session(engine) as s:
        with pytest.raises(TypeError, match="resource ids must be str, int or UUID"):
            changes(three_customers, s, filter_resource_ids=1.5)


# ---------------------------------------------------------------- filter_date_range


@pytest.fixture
def four_changes_in_tokyo(engine, Customer):
    """Four inserts at four distinct moments, read with time_zone=Asia/Tokyo."""
    set_config(SQLAuditConfig(time_zone="Asia/Tokyo"))
    add_customers_one_by_one(engine, Customer, ["Ann", "Bob", "Cid", "Dan"])
    with Session(engine) as s:
        records = changes(Customer, s)
    stamps = [r.timestamp for r in records]
    assert [r.new_value for r in records] == ["Ann", "Bob", "Cid", "Dan"]
    assert stamps == sorted(set(stamps))  # four distinct, increasing moments
    return Customer, stamps


def names_in_range(engine, Customer, start, end) -> list[str]:
    with Session(engine) as s:
        return [r.new_value for r in changes(Customer, s, filter_date_range=(start, end))]


def test_date_range_is_inclusive_on_both_ends(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    assert names_in_range(engine, Customer, t[1], t[2]) == ["Bob", "Cid"]


def test_date_range_with_the_same_start_and_end_keeps_that_moment(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    assert names_in_range(engine, Customer, t[2], t[2]) == ["Cid"]


def test_date_range_accepts_bounds_in_any_zone(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    start, end = t[1].astimezone(timezone.utc), t[2].astimezone(ZoneInfo("America/New_York"))
    assert names_in_range(engine, Customer, start, end) == ["Bob", "Cid"]


def test_naive_date_range_bounds_are_read_in_the_configured_zone(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    start, end = t[1].replace(tzinfo=None), t[2].replace(tzinfo=None)  # Tokyo wall-clock times
    assert names_in_range(engine, Customer, start, end) == ["Bob", "Cid"]


def test_naive_date_range_bounds_are_not_read_as_utc(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    start = t[0].astimezone(timezone.utc).replace(tzinfo=None)  # UTC wall clock = 9 h earlier in Tokyo
    end = t[3].astimezone(timezone.utc).replace(tzinfo=None)
    assert names_in_range(engine, Customer, start, end) == []


def test_date_range_without_a_start(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    assert names_in_range(engine, Customer, None, t[1]) == ["Ann", "Bob"]


def test_date_range_without_an_end(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    assert names_in_range(engine, Customer, t[2], None) == ["Cid", "Dan"]


def test_date_range_with_neither_side(engine, four_changes_in_tokyo) -> None:
    Customer, _ = four_changes_in_tokyo
    assert names_in_range(engine, Customer, None, None) == ["Ann", "Bob", "Cid", "Dan"]


def test_date_range_start_after_end_is_a_value_error(engine, four_changes_in_tokyo) -> None:
    Customer, t = four_changes_in_tokyo
    with Session(engine) as s:
        with pytest.raises(ValueError, match="filter_date_range start .* is after end"):
            changes(Customer, s, filter_date_range=(t[2], t[1]))


# ---------------------------------------------------------------- timestamps


def test_timestamps_are_aware_and_in_the_configured_zone(engine, Customer) -> None:
    set_config(SQLAuditConfig(time_zone="Asia/Tokyo"))
    before = datetime.now(timezone.utc)
    add_customers_one_by_one(engine, Customer, ["Ann"])
    after = datetime.now(timezone.utc)
    with Session(engine) as s:
        (record,) = changes(Customer, s)
    assert str(record.timestamp.tzinfo) == "Asia/Tokyo"
    assert record.timestamp.utcoffset() == timedelta(hours=9)
    # the same instant as the clock said, not just a relabelled wall time
    assert before - timedelta(seconds=1) <= record.timestamp <= after + timedelta(seconds=1)


# ---------------------------------------------------------------- sorting


@pytest.fixture
def customers_2_1_3(engine, Customer):
    """Customers inserted in the order 2, 1, 3 (name only), then 1 gets an email."""
    with Session(engine) as s:
        for i in (2, 1, 3):
            s.add(Customer(id=i, name=f"c{i}"))
            s.commit()
            time.sleep(0.01)
        s.get(Customer, 1).email = "c1@example.com"
        s.commit()
    return Customer


def test_default_sort_is_newest_first(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        records = get_resource_changes(customers_2_1_3, session=s)
    assert [(r.resource_id, r.field_name) for r in records] == [
        ("1", "email"), ("3", "name"), ("1", "name"), ("2", "name"),
    ]


def test_sort_by_timestamp_asc(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        records = get_resource_changes(customers_2_1_3, session=s, sort_by="timestamp",
                                       sort_direction="asc")
    assert [(r.resource_id, r.field_name) for r in records] == [
        ("2", "name"), ("1", "name"), ("3", "name"), ("1", "email"),
    ]


def test_sort_by_resource_id_asc_breaks_ties_by_time(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        records = get_resource_changes(customers_2_1_3, session=s, sort_by="resource_id",
                                       sort_direction="asc")
    assert [(r.resource_id, r.field_name) for r in records] == [
        ("1", "name"), ("1", "email"), ("2", "name"), ("3", "name"),
    ]


def test_sort_by_resource_id_desc(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        records = get_resource_changes(customers_2_1_3, session=s, sort_by="resource_id",
                                       sort_direction="desc")
    assert [(r.resource_id, r.field_name) for r in records] == [
        ("3", "name"), ("2", "name"), ("1", "email"), ("1", "name"),
    ]


def test_sort_by_field_name(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        records = get_resource_changes(customers_2_1_3, session=s, sort_by="field_name",
                                       sort_direction="asc")
    assert [(r.field_name, r.resource_id) for r in records] == [
        ("email", "1"), ("name", "2"), ("name", "1"), ("name", "3"),
    ]


def test_invalid_sort_by_is_a_value_error(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="sort_by must be one of .*got 'name'"):
            get_resource_changes(customers_2_1_3, session=s, sort_by="name")


def test_invalid_sort_direction_is_a_value_error(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="sort_direction must be 'asc' or 'desc', got 'up'"):
            get_resource_changes(customers_2_1_3, session=s, sort_direction="up")


def test_sort_direction_is_case_sensitive(engine, customers_2_1_3) -> None:
    with Session(engine) as s:
        with pytest.raises(ValueError, match="sort_direction"):
            get_resource_changes(customers_2_1_3, session=s, sort_direction="ASC")


# ---------------------------------------------------------------- paging


@pytest.fixture
def many_changes_in_one_transaction(engine, Customer):
    """30 customers (name and city: 60 records) from ONE multi-row INSERT statement,
    so on PostgreSQL every record carries the very same timestamp."""
    with Session(engine) as s:
        s.execute(insert(Customer).values(
            [{"id": i, "name": f"c{i}", "city": f"city {i}"} for i in range(1, 31)]
        ))
        s.commit()
    return Customer


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_one_statement_gives_postgres_records_one_timestamp(engine, many_changes_in_one_transaction) -> None:
    with Session(engine) as s:
        records = changes(many_changes_in_one_transaction, s)
    assert len(records) == 60
    assert len({r.timestamp for r in records}) == 1  # every tie is real: paging must not rely on time


@pytest.mark.parametrize(
    "sort_by", ["timestamp", "field_name", "operation", "resource_id", "changed_by", "transaction_id"]
)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_walking_pages_returns_the_full_list_exactly(
    engine, many_changes_in_one_transaction, sort_by, direction
) -> None:
    Customer = many_changes_in_one_transaction
    with Session(engine) as s:
        full = get_resource_changes(Customer, session=s, sort_by=sort_by, sort_direction=direction)
        pages, offset = [], 0
        while True:
            page = get_resource_changes(Customer, session=s, sort_by=sort_by,
                                        sort_direction=direction, limit=7, offset=offset)
            if not page:
                break
            pages.append(page)
            offset += 7
    walked = [r for page in pages for r in page]
    assert len(full) == 60
    assert [len(p) for p in pages] == [7] * 8 + [4]
    assert walked == full
    assert len({(r.resource_id, r.field_name) for r in walked}) == 60


@pytest.fixture
def mixed_history(engine, Customer):
    """Inserts with NULL fields, updates to and from NULL, an untracked-only update
    and a delete, over three customers."""
    with Session(engine) as s:
        s.add_all([Customer(id=1, name="a", email=None, city="x"),
                   Customer(id=2, name="b", email="b@x", city=None),
                   Customer(id=3, name="c")])
        s.commit()
        one, two, three = s.get(Customer, 1), s.get(Customer, 2), s.get(Customer, 3)
        one.email, one.city = "a@x", None
        two.email, two.notes = None, "untracked"
        three.notes = "untracked only"
        s.commit()
        s.delete(two)
        s.commit()
    return Customer


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_whole_history_equals_the_walk_record_by_record(engine, mixed_history, direction) -> None:
    """A call without paging expands audit rows into records itself; a paged call
    pages over the records in SQL. Both must give the same records in the same order."""
    with Session(engine) as s:
        full = get_resource_changes(mixed_history, session=s, sort_direction=direction)
        walked = [r for offset in range(len(full) + 1)
                  for r in get_resource_changes(mixed_history, session=s, sort_direction=direction,
                                                limit=1, offset=offset)]
        by_field = get_resource_changes(mixed_history, session=s, sort_direction=direction,
                                        filter_fields=["name", "email", "city"])
    assert walked == full
    assert by_field == full
    audit_rows = [  # oldest first; the fields of one audit row in name order either way
        [("insert", "1", "city", None, "x"), ("insert", "1", "name", None, "a")],
        [("insert", "2", "email", None, "b@x"), ("insert", "2", "name", None, "b")],
        [("insert", "3", "name", None, "c")],
        [("update", "1", "city", "x", None), ("update", "1", "email", None, "a@x")],
        [("update", "2", "email", "b@x", None)],
        [("delete", "2", "name", "b", None)],
    ]
    expected = [r for row in (audit_rows if direction == "asc" else audit_rows[::-1]) for r in row]
    assert [(r.operation, r.resource_id, r.field_name, r.old_value, r.new_value)
            for r in full] == expected


def test_repeated_queries_return_the_same_order(engine, many_changes_in_one_transaction) -> None:
    Customer = many_changes_in_one_transaction
    with Session(engine) as s:
        first = get_resource_changes(Customer, session=s)
        second = get_resource_changes(Customer, session=s)
    assert first == second


def test_ties_break_by_the_order_changes_happened(engine, many_changes_in_one_transaction) -> None:
    Customer = many_changes_in_one_transaction
    with Session(engine) as s:
        records = changes(Customer, s, filter_fields="name")
    assert [r.resource_id for r in records] == [str(i) for i in range(1, 31)]


def test_limit_zero_returns_nothing(engine, three_customers) -> None:
    with Session(engine) as s:
        assert get_resource_changes(three_customers, session=s, limit=0) == []


def test_limit_and_offset(engine, three_customers) -> None:
    with Session(engine) as s:
        records = changes(three_customers, s, limit=1, offset=1)
    assert summary(records) == [("insert", "2", "name", None, "Bob", None)]


def test_nothing_recorded_yet_returns_an_empty_list(engine, Customer) -> None:
    with Session(engine) as s:
        assert get_resource_changes(Customer, session=s) == []


# ---------------------------------------------------------------- sessions


def test_session_none_uses_the_configured_session_factory(engine, three_customers) -> None:
    SessionLocal = sessionmaker(bind=engine)
    closed: list[bool] = []

    def get_db():
        db = SessionLocal()
        try:
            yield db
        finally:
            db.close()
            closed.append(True)

    set_config(SQLAuditConfig(session_factory=get_db))
    records = get_resource_changes(three_customers, sort_direction="asc")
    assert [r.new_value for r in records] == ["Ann", "Bob", "Cid"]
    assert closed == [True]


def test_session_none_without_a_config_raises(engine, three_customers) -> None:
    with pytest.raises(SQLAuditConfigError, match="not configured"):
        get_resource_changes(three_customers)


def test_session_none_with_a_config_without_session_factory_raises(engine, three_customers) -> None:
    set_config(SQLAuditConfig(time_zone="UTC"))
    with pytest.raises(SQLAuditConfigError, match="session_factory"):
        get_resource_changes(three_customers)


def test_a_connection_works_as_the_session(engine, three_customers) -> None:
    with engine.connect() as conn:
        records = get_resource_changes(three_customers, session=conn, sort_direction="asc")
    assert [r.new_value for r in records] == ["Ann", "Bob", "Cid"]


@pytest.mark.parametrize("bound", ["base class", "model", "table"])
def test_a_session_with_binds_instead_of_one_bind_finds_the_models_database(
    engine, three_customers, Base, bound
) -> None:
    key = {"base class": Base, "model": three_customers, "table": three_customers.__table__}[bound]
    with Session(binds={key: engine}) as s:
        records = changes(three_customers, s)
    assert [r.new_value for r in records] == ["Ann", "Bob", "Cid"]


def test_a_session_reads_its_own_uncommitted_changes(engine, three_customers) -> None:
    with Session(engine) as s:
        s.get(three_customers, 2).name = "Bea"
        s.flush()
        records = changes(three_customers, s, filter_resource_ids=2)
        assert summary(records)[-1] == ("update", "2", "name", "Bob", "Bea", None)
        s.rollback()
        assert len(changes(three_customers, s, filter_resource_ids=2)) == 1


def test_a_field_that_is_no_longer_a_column_comes_back_as_its_recorded_value(engine, Base) -> None:
    """Old audit rows keep fields the model has since dropped; they are returned
    as recorded (JSON values), next to the typed values of the current columns."""

    @track_table(tracked_fields=["name", "rank"], table_label="Member")
    class Member(Base):
        __tablename__ = "members"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        rank: Mapped[Optional[int]]

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Member(id=1, name="Ann", rank=7))
        s.commit()

    class LaterBase(DeclarativeBase):
        pass

    @track_table(tracked_fields=["name"], table_label="Member")
    class MemberWithoutRank(LaterBase):
        __tablename__ = "members"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    with Session(engine) as s:
        records = changes(MemberWithoutRank, s, sort_by="field_name")
    assert summary(records) == [
        ("insert", "1", "name", None, "Ann", None),
        ("insert", "1", "rank", None, 7, None),
    ]


# ---------------------------------------------------------------- errors


def test_untracked_model_raises_table_not_tracked(engine, Base) -> None:
    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        with pytest.raises(SQLAuditTableNotTrackedError, match="Note is not tracked"):
            get_resource_changes(Note, session=s)


def test_missing_audit_table_raises_table_not_in_database(engine, Base) -> None:
    Customer = customer_model(Base)
    other = MetaData()  # the same customers table, untracked: no sqlaudit_log is created
    Table("customers", other, Column("id", Integer, primary_key=True), Column("name", String),
          Column("email", String), Column("city", String), Column("notes", String))
    other.create_all(engine)
    with Session(engine) as s:
        with pytest.raises(SQLAuditTableNotInDatabaseError, match="'sqlaudit_log' does not exist"):
            get_resource_changes(Customer, session=s)


# ---------------------------------------------------------------- indexes


def plan_of_retrieval(engine, model, filters) -> str:
    """The plan of the statement get_resource_changes sends (sequential scans disabled
    on PostgreSQL so that a tiny table cannot hide an index it cannot use)."""
    from sqlalchemy import event

    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "sqlaudit_log" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as s:
            assert get_resource_changes(model, session=s, **filters)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = sent[-1]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        elif engine.dialect.name in ("mysql", "mariadb"):  # the index chosen, per table read
            return "\n".join(str(r.key) for r in conn.exec_driver_sql(
                "EXPLAIN " + statement, parameters).all())
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return "\n".join(str(r[-1]) for r in rows)


INDEXED_FILTERS = [
    ({"filter_resource_ids": 2}, "ix_sqlaudit_log_resource"),
    ({"filter_user_ids": 2}, "ix_sqlaudit_log_user"),
]


@pytest.mark.parametrize(("filters", "index"), INDEXED_FILTERS)
def test_retrieval_queries_are_served_by_the_audit_indexes(
    engine, changes_by_three_users, filters, index
) -> None:
    plan = plan_of_retrieval(engine, changes_by_three_users, filters)
    assert index in plan, plan


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("filters", "index"), INDEXED_FILTERS)
def test_retrieval_uses_the_indexes_of_an_audit_table_with_the_database_collation(
    engine, changes_by_three_users, filters, index
) -> None:
    """An audit table whose text columns have the database's collation (as made by
    sqlaudit before it used "C") is still read through its indexes."""
    with engine.begin() as conn:
        for column, type_ in (("table_schema", "varchar(255)"), ("table_name", "varchar(255)"),
                              ("resource_id", "text"), ("changed_by", "text")):
            conn.exec_driver_sql(
                f'ALTER TABLE sqlaudit_log ALTER COLUMN {column} TYPE {type_} COLLATE "default"')
    plan = plan_of_retrieval(engine, changes_by_three_users, filters)
    assert index in plan, plan


def test_filter_date_range_takes_dates_for_whole_days(engine, one_full_customer) -> None:
    from datetime import date as day_type

    today = datetime.now(timezone.utc).date()
    with Session(engine) as s:
        everything = changes(one_full_customer, s)
        assert changes(one_full_customer, s, filter_date_range=(today, today)) == everything
        assert changes(one_full_customer, s, filter_date_range=(None, day_type(2000, 1, 1))) == []


@pytest.mark.parametrize("bad", ["2026-12-01", (None, None, None), (None,)])
def test_filter_date_range_of_the_wrong_shape_shows_the_expected_form(engine, one_full_customer,
                                                                      bad) -> None:
    with Session(engine) as s, pytest.raises(ValueError, match=r"filter_date_range must be a \(start, end\) pair"):
        changes(one_full_customer, s, filter_date_range=bad)


def test_filter_fields_naming_an_untracked_column_lists_the_tracked_fields(engine, one_full_customer) -> None:
    untracked = next(c.key for c in one_full_customer.__mapper__.column_attrs
                     if c.key not in {f for f in ("name", "email", "city")} and c.key != "id")
    with Session(engine) as s, pytest.raises(ValueError, match="is not tracked .*tracked fields: "):
        changes(one_full_customer, s, filter_fields=untracked)
