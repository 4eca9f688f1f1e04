"""MariaDB (and MySQL), the third dialect: what is specific to it.

Modules of the rest of the suite that pass on MariaDB set ``MARIADB_PORTED = True``
and run there as a third dialect; this module holds what only MariaDB has (its
write statements, session user variables, its holes). It runs on MariaDB only,
from ``SQLAUDIT_TEST_MARIADB_URL`` (see tests/conftest.py).
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

pytestmark = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


def test_each_test_gets_a_fresh_empty_database(engine) -> None:
    with engine.connect() as conn:
        database = conn.execute(text("SELECT DATABASE()")).scalar()
        charset = conn.execute(text(
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()")).scalar()
    assert database == engine.info_schema and database.startswith("sqlaudit_t_")
    assert charset == "utf8mb4"
    assert inspect(engine).get_table_names() == []


# ------------------------------------------------------------------ the log table


def test_log_and_seal_tables_create_with_innodb_utf8mb4_and_microseconds(engine) -> None:
    from datetime import datetime

    from sqlalchemy import MetaData, insert, select

    from sqlaudit.schema import audit_table, seal_table

    metadata = MetaData()
    log, seal = audit_table(metadata), seal_table(metadata)
    metadata.create_all(engine)

    with engine.connect() as conn:
        tables = dict(conn.execute(text(
            "SELECT TABLE_NAME, CONCAT(ENGINE, ' ', TABLE_COLLATION) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()")).all())
        types = dict(conn.execute(text(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log'")).all())
        collations = dict(conn.execute(text(
            "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log' "
            "AND COLUMN_NAME IN ('table_name', 'resource_id', 'changed_by')")).all())
        indexes = conn.execute(text(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'sqlaudit_log' "
            "ORDER BY INDEX_NAME, SEQ_IN_INDEX")).all()
    assert tables == {"sqlaudit_log": "InnoDB utf8mb4_general_ci",
                      "sqlaudit_seal": "InnoDB utf8mb4_general_ci"}
    assert types["changed_at"] == "datetime(6)"
    assert collations == dict.fromkeys(("table_name", "resource_id", "changed_by"), "utf8mb4_bin")
    assert [tuple(r) for r in indexes] == [
        ("ix_sqlaudit_log_changed_at", "changed_at", None),
        ("ix_sqlaudit_log_resource", "table_name", None),
        ("ix_sqlaudit_log_resource", "resource_id", 255),
        ("ix_sqlaudit_log_resource", "changed_at", None),
        ("ix_sqlaudit_log_transaction", "transaction_id", None),
        ("ix_sqlaudit_log_user", "changed_by", 200),
        ("ix_sqlaudit_log_user", "changed_at", None),
        ("PRIMARY", "id", None),
    ]

    when = datetime(2024, 5, 6, 7, 8, 9, 123456)
    with engine.begin() as conn:
        conn.execute(insert(log).values(
            table_name="t", resource_id="r\U0001F600", operation="insert", changed_at=when,
            changed_by="\U0001F600" * 300, new_data={"name": "\U0001F600"}))
        conn.execute(insert(seal).values(
            format_version=1, kind="seal", sealed_at=when, row_count=0, columns="[]",
            rows_digest="0" * 64, previous_digest="0" * 64, digest="0" * 64))
    with engine.connect() as conn:
        row = conn.execute(select(log.c.resource_id, log.c.changed_at, log.c.changed_by,
                                  log.c.new_data)).one()
        sealed_at = conn.execute(select(seal.c.sealed_at)).scalar()
    assert tuple(row) == ("r\U0001F600", when, "\U0001F600" * 300, {"name": "\U0001F600"})
    assert sealed_at == when
