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
