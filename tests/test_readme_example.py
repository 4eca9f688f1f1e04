"""The original sqlaudit README, followed to the letter (typos fixed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.hooks import register_hooks
from sqlaudit.retrieval import SQLAuditRecord, get_resource_changes

from sample_models import readme_models

#: Runs on MariaDB too (tests/conftest.py).
MARIADB_PORTED = True

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def test_quickstart_script_prints_the_rename_with_the_user(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(QUICKSTART)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Customer 1 added with name John Doe and email jdoe@example.com."
    assert lines[1] == "Customer 2 added with name Jane Doe and email jane@example.com."
    rename = [line for line in lines if line.startswith("FIELD: 'name'") and "Jane Smith" in line]
    assert len(rename) == 1
    assert rename[0].endswith("TO Jane Smith (OLD: Jane Doe) BY USER ID 1")
    assert len([line for line in lines if line.startswith("FIELD:")]) == 4


def test_full_readme_flow(engine, Base) -> None:
    User, Customer = readme_models(Base)
    SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)

    def get_db():
        db = SessionLocal()
        try:
            yield db
        finally:
            db.close()

    user = User()

    def get_user_id_from_instance() -> int:
        return user.user_id  # expired after every commit: re-loaded by the session

    set_config(
        SQLAuditConfig(
            session_factory=get_db,
            user_model=User,
            user_model_user_id_field="user_id",
            get_user_id_callback=get_user_id_from_instance,
            time_zone="Europe/Kyiv",
        )
    )
    Base.metadata.create_all(engine)
    with next(get_db()) as session:
        register_hooks()
        session.add(user)
        session.commit()
        john = Customer(name="John Doe", email="jdoe@example.com", user_id=user.user_id)
        session.add(john)
        session.commit()
        jane = Customer(name="Jane Doe", email="jane@example.com", user_id=user.user_id)
        session.add(jane)
        session.commit()
        session.refresh(jane)
        jane.name = "Jane Smith"
        session.commit()
        jane_id = jane.customer_id
        acting_user_id = user.user_id

    # no session: the configured session_factory is used
    records = get_resource_changes(model_class=Customer, filter_resource_ids=jane_id)
    assert all(isinstance(r, SQLAuditRecord) for r in records)
    assert [(r.operation, r.field_name, r.old_value, r.new_value, r.changed_by) for r in records] == [
        ("update", "name", "Jane Doe", "Jane Smith", "1"),
        ("insert", "email", None, "jane@example.com", "1"),
        ("insert", "name", None, "Jane Doe", "1"),
        ("insert", "user_id", None, 1, "1"),
    ]
    assert {r.table_name for r in records} == {"customers"}
    assert {r.table_label for r in records} == {"Customer"}
    assert {r.resource_id for r in records} == {str(jane_id)}
    assert all(str(r.timestamp.tzinfo) == "Europe/Kyiv" for r in records)
    # the README's own filters: several ids (one with its typo fixed) and a user id string
    both = get_resource_changes(
        model_class=Customer, filter_resource_ids=["1", "2"], filter_user_ids=str(acting_user_id)
    )
    assert {r.resource_id for r in both} == {"1", "2"}
    assert len(both) == 7

