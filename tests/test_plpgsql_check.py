"""plpgsql_check over every PL/pgSQL function sqlaudit generates (PostgreSQL only).

The extension comes from the Debian package postgresql-15-plpgsql-check; CI
installs it. Where it is not installed the module is skipped with that reason.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from typing import Optional

import pytest
from sqlalchemy import JSON, LargeBinary, Numeric, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sqlaudit.decorators import track_table

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@pytest.fixture
def plpgsql_check(engine):
    with engine.begin() as conn:
        available = conn.execute(text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'"
        )).scalar()
        if not available:
            message = "plpgsql_check is not installed (apt-get install postgresql-15-plpgsql-check)"
            if os.environ.get("SQLAUDIT_REQUIRE_PLPGSQL_CHECK") == "1":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        conn.execute(text(f'CREATE EXTENSION IF NOT EXISTS plpgsql_check SCHEMA "{engine.info_schema}"'))
    return engine


def _problems(engine, function: str, table: Optional[str]) -> list[tuple]:
    args = "relid => CAST(:table AS regclass), oldtable => 'sqlaudit_old_rows', newtable => 'sqlaudit_new_rows'" if table else "relid => CAST(:table AS regclass)"
    sql = text(
        f"SELECT level, message, detail FROM plpgsql_check_function_tb("
        f"CAST(:function AS regprocedure), {args}, fatal_errors => false, other_warnings => true)"
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sql, {"function": function, "table": table})]


def test_generated_trigger_functions_pass_plpgsql_check(plpgsql_check, Base) -> None:
    engine = plpgsql_check

    @track_table()
    class Everything(Base):
        __tablename__ = "everything"
        id: Mapped[int] = mapped_column(primary_key=True)
        code: Mapped[str] = mapped_column(String(10), primary_key=True)
        name: Mapped[Optional[str]]
        price: Mapped[Optional[Decimal]] = mapped_column(Numeric(10, 2))
        doc: Mapped[Optional[dict]] = mapped_column(JSON)
        docb: Mapped[Optional[dict]] = mapped_column(JSONB)
        tags: Mapped[Optional[list]] = mapped_column(ARRAY(String))
        blob: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
        ref: Mapped[Optional[uuid.UUID]]

    Base.metadata.create_all(engine)
    trigger_table = _problems(engine, "sqlaudit_fn_everything()", "everything")
    assert trigger_table == []
    protect = _problems(engine, "sqlaudit_log_protect()", "sqlaudit_log")
    assert protect == []


def test_fail_closed_functions_pass_plpgsql_check(plpgsql_check, Base) -> None:
    from sqlaudit.config import SQLAuditConfig, set_config

    set_config(SQLAuditConfig(require_user_id=True))

    @track_table(tracked_fields=["name"])
    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    Base.metadata.create_all(plpgsql_check)
    assert _problems(plpgsql_check, "sqlaudit_fn_items()", "items") == []
