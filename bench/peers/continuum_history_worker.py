"""Worker for bench/history.py: SQLAlchemy-Continuum's equivalents of the History API
reads, on the same spread of generated records as sqlaudit's (its share: the
tracked table's, one version table per model)."""

from __future__ import annotations

import importlib.metadata

import sqlalchemy as sa
from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import _worker
from _worker import harness

cfg = _worker.job()
from sqlalchemy_continuum import make_versioned, version_class, versioning_manager  # noqa: E402
from sqlalchemy_continuum.plugins.base import Plugin  # noqa: E402


class ActorPlugin(Plugin):
    def transaction_args(self, uow, session):
        return {"user_id": harness.ACTOR}


make_versioned(user_cls="User", plugins=[ActorPlugin()])
engine = create_engine(cfg["url"])


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "bench_users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)


_, Item = _worker.versioned_items(Base)
sa.orm.configure_mappers()
Base.metadata.create_all(engine)
info = {"package": f"SQLAlchemy-Continuum {importlib.metadata.version('SQLAlchemy-Continuum')}",
        "notes": []}


def reads():
    d, m = cfg["dialect"], cfg["audit_records"]
    my = harness.is_mariadb(d)
    ItemVersion, Transaction = version_class(Item), versioning_manager.transaction_cls
    prefix, src = harness.series(d)
    ts = harness.g_time(d)
    tab, res, user = harness.g_exprs(d)
    tx, div, item = ("`transaction`" if my else '"transaction"', " DIV " if my else " / ",
                     harness.concat(d, "'item '", "g"))
    with engine.begin() as conn:
        for u in range(harness.USERS):
            conn.execute(text("INSERT INTO bench_users (id) VALUES (:u)"), {"u": f"user-{u}"})
        conn.execute(text(
            f"{prefix} INSERT INTO {tx} (id, issued_at, user_id) "
            f"SELECT g{div}3, {ts}, {user} FROM {src} WHERE g % 3 = 0"), {"m": m + 3})
        conn.execute(text(
            f"{prefix} INSERT INTO items_peer_version (id, name, qty, transaction_id, "
            f"operation_type) SELECT {res}, {item}, g % 100, (g + 2){div}3, "
            f"CASE g % 10 WHEN 0 THEN 0 WHEN 1 THEN 2 ELSE 1 END FROM {src} WHERE {tab} = 0"),
            {"m": m})
        info["audit_rows"] = conn.execute(text("SELECT count(*) FROM items_peer_version")).scalar()
    harness.settle(engine)
    Session = sessionmaker(bind=engine)
    transactions = max(1, m // 3)

    def naive(value):
        return value.replace(tzinfo=None)

    def tx(k):
        with Session() as s:
            return len(s.query(ItemVersion)
                       .filter(ItemVersion.transaction_id == (k * 7919) % transactions).all())

    def user_latest(k):
        with Session() as s:
            return len(s.query(ItemVersion)
                       .join(Transaction, ItemVersion.transaction_id == Transaction.id)
                       .filter(Transaction.user_id == harness.read_args(k)["user"])
                       .order_by(ItemVersion.transaction_id.desc()).limit(100).all())

    def user_transactions(k):
        with Session() as s:
            return len(s.query(Transaction)
                       .filter(Transaction.user_id == harness.read_args(k)["user"])
                       .order_by(Transaction.id.desc()).limit(10).all())

    def state(k):
        a = harness.read_args(k)
        with Session() as s:
            version = (s.query(ItemVersion)
                       .join(Transaction, ItemVersion.transaction_id == Transaction.id)
                       .filter(ItemVersion.id == a["resource"],
                               Transaction.issued_at <= naive(a["start"]))
                       .order_by(ItemVersion.transaction_id.desc()).first())
            return 0 if version is None or version.operation_type == 2 else 1

    info["notes"].append("items_peer_version holds the tracked table's share of the records "
                         "(1 in 20), \"transaction\" one row per 3")
    return {"continuum": {"tx": tx, "user_latest": user_latest,
                          "user_transactions": user_transactions, "state": state}}


result = {"peer": cfg["peer"], "dialect": cfg["dialect"], "info": info}
try:
    queries = reads()
    raw = harness.run_read_rounds(queries, rounds=cfg["read_rounds"], calls=cfg["read_calls"],
                                  label=f"continuum {cfg['dialect']:<10} ")
    result["read"] = harness.summarize(raw["samples"])
except Exception as exc:
    import sys
    import traceback

    result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    traceback.print_exc(file=sys.stderr)
harness.emit(result)
