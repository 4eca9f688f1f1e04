"""grant_audit_read(): a database role (PostgreSQL) or account (MariaDB) that may
read the audit history and do nothing else with it.

Each test logs in as a fresh role or account, made here with no privilege of its
own, and removed afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sqlaudit import audit_context, register_hooks
from sqlaudit.ddl import grant_audit_read
from sqlaudit.exceptions import SQLAuditArgumentError, SQLAuditError, SQLAuditTableNotInDatabaseError
from sqlaudit.schema import seal_table

from conftest import changes
from sample_models import readme_models

SERVERS = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
MARIADB = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


@pytest.fixture
def Customer(engine: Engine, Base: Any) -> type:
    """The tracked customers table with one customer, Ann, written by alice."""
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    register_hooks()
    with Session(engine) as s, audit_context(user_id="alice"):
        s.add(User(user_id=1))
        s.flush()
        s.add(Customer(name="Ann", user_id=1))
        s.commit()
    return Customer


def _login(engine: Engine, dialect: str, name: str, host: str = "%") -> Iterator[Engine]:
    """A login with no privilege at all, and an engine on it; dropped afterwards."""
    password = uuid.uuid4().hex
    admin = engine.url
    if dialect == "postgresql":
        quoted = '"' + name.replace('"', '""') + '"'
        with engine.begin() as conn:
            conn.execute(text(f"CREATE ROLE {quoted} LOGIN"))
        login = create_engine(admin.set(username=name),
                              connect_args={"options": f"-csearch_path={engine.info_schema}"})
    else:
        account = "'" + name.replace("'", "''") + "'@'" + host + "'"
        with engine.begin() as conn:
            conn.execute(text(f"CREATE USER {account} IDENTIFIED BY '{password}'"))
        login = create_engine(admin.set(username=name, password=password))
    try:
        yield login
    finally:
        login.dispose()
        with engine.begin() as conn:
            if dialect == "postgresql":
                conn.execute(text(f"DROP OWNED BY {quoted}"))
                conn.execute(text(f"DROP ROLE {quoted}"))
            else:
                conn.execute(text(f"DROP USER {account}"))


@pytest.fixture
def reader(engine: Engine, dialect: str) -> Iterator[tuple[str, Engine]]:
    """(the name to pass to grant_audit_read, an engine logged in as it)."""
    name = f"sqlaudit_reader_{uuid.uuid4().hex[:8]}"
    for login in _login(engine, dialect, name):
        yield (name if dialect == "postgresql" else f"{name}@%"), login


@SERVERS
def test_a_granted_account_reads_the_history_through_retrieval(engine, Customer, reader) -> None:
    grantee, login = reader
    grant_audit_read(engine, grantee)
    with Session(login) as s:
        found = changes(Customer, s, filter_fields="name")
    assert [(r.new_value, r.changed_by) for r in found] == [("Ann", "alice")]


@SERVERS
@pytest.mark.parametrize("statement", [
    "INSERT INTO sqlaudit_log (table_name, operation, changed_at) VALUES ('customers', 'insert', "
    "CURRENT_TIMESTAMP)",
    "UPDATE sqlaudit_log SET changed_by = 'mallory'",
    "DELETE FROM sqlaudit_log",
    "TRUNCATE TABLE sqlaudit_log",
    "SELECT * FROM customers",
    "UPDATE customers SET name = 'Eve'",
    "INSERT INTO customers (name, user_id) VALUES ('Eve', 1)",
    "DELETE FROM customers",
], ids=["insert-log", "update-log", "delete-log", "truncate-log", "select-table",
        "update-table", "insert-table", "delete-table"])
def test_a_granted_account_cannot_change_the_log_nor_touch_the_tracked_tables(
        engine, Customer, reader, statement) -> None:
    grantee, login = reader
    grant_audit_read(engine, grantee)
    with pytest.raises(DBAPIError, match="denied"):
        with login.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar() == 1
        assert conn.execute(text("SELECT name FROM customers")).scalars().all() == ["Ann"]


@MARIADB
def test_on_mariadb_the_grant_is_select_on_the_log_and_nothing_else(engine, Customer, reader) -> None:
    grantee, _ = reader
    user = grantee.rpartition("@")[0]
    grant_audit_read(engine, grantee)
    with engine.connect() as conn:
        grants = sorted(conn.execute(text(f"SHOW GRANTS FOR '{user}'@'%'")).scalars())
    assert [g.split(" IDENTIFIED BY")[0] for g in grants] == [
        f"GRANT SELECT ON `{engine.info_schema}`.`sqlaudit_log` TO `{user}`@`%`",
        f"GRANT USAGE ON *.* TO `{user}`@`%`",  # what CREATE USER gives: the right to log in
    ]


@MARIADB
def test_on_mariadb_a_sealed_logs_seal_table_is_granted_too(engine, Customer, reader) -> None:
    grantee, login = reader
    with engine.begin() as conn:
        seal_table(MetaData()).create(conn)
    grant_audit_read(engine, grantee)
    with login.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_seal")).scalar() == 0


@MARIADB
def test_on_mariadb_a_role_is_granted_by_its_name(engine, Customer) -> None:
    role = f"sqlaudit_role_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE `{role}`"))
    try:
        grant_audit_read(engine, role)
        with engine.connect() as conn:
            grants = conn.execute(text(f"SHOW GRANTS FOR `{role}`")).scalars().all()
        assert f"GRANT SELECT ON `{engine.info_schema}`.`sqlaudit_log` TO `{role}`" in grants
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP ROLE `{role}`"))


@MARIADB
@pytest.mark.parametrize("grantee", ["no_such_account_x1@%", "no_such_role_x1"])
def test_on_mariadb_an_unknown_account_is_a_clear_error(engine, Customer, grantee) -> None:
    with pytest.raises(SQLAuditArgumentError, match="no account or role `no_such_.*create it first"):
        grant_audit_read(engine, grantee)


@MARIADB
def test_on_mariadb_the_account_name_is_quoted_never_pasted_into_the_sql(
        engine, Customer, reader) -> None:
    """An attempt to close the name and append SQL names an account that does not
    exist, and runs nothing else; a real account whose name holds quotes, a backtick
    and an @ is granted as it is."""
    grantee, _ = reader
    attack = f"x'@'%' ; GRANT ALL ON *.* TO {grantee}; -- @%"
    with pytest.raises(SQLAuditArgumentError, match="no account or role"):
        grant_audit_read(engine, attack)
    user = grantee.rpartition("@")[0]
    with engine.connect() as conn:
        assert len(conn.execute(text(f"SHOW GRANTS FOR '{user}'@'%'")).all()) == 1  # USAGE only

    odd = f"o'd`d@\"r_{uuid.uuid4().hex[:6]}"
    for login in _login(engine, "mariadb", odd):
        grant_audit_read(engine, f"{odd}@%")
        with login.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar() == 1


@MARIADB
def test_on_mariadb_granting_before_the_log_exists_is_a_clear_error(engine, reader) -> None:
    grantee, _ = reader
    with pytest.raises(SQLAuditTableNotInDatabaseError, match="create it"):
        grant_audit_read(engine, grantee)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_on_sqlite_there_is_nobody_to_grant_to(engine, Customer) -> None:
    with pytest.raises(SQLAuditError, match="needs PostgreSQL roles; sqlite has none"):
        grant_audit_read(engine, "reader")
