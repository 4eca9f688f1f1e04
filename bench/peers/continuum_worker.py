"""Worker for SQLAlchemy-Continuum: ORM unit-of-work versioning, or (job mode
"native") its PostgreSQL trigger mode. Versions go to items_peer_version; the
acting user is the transaction's user_id, supplied by a plugin's
transaction_args() the way its Flask plugin does it. Runs on PostgreSQL, SQLite
and MariaDB (PyMySQL).
"""

from __future__ import annotations

import importlib.metadata

import sqlalchemy as sa
from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import _worker
from _worker import PeerSystem, harness

cfg = _worker.job()
native = cfg.get("mode") == "native"
my = harness.is_mariadb(cfg["dialect"])
#: Continuum's transaction table, quoted (a reserved word)
TX = "`transaction`" if my else '"transaction"'
from sqlalchemy_continuum import make_versioned  # noqa: E402
from sqlalchemy_continuum.plugins.base import Plugin  # noqa: E402

info = {"package": f"SQLAlchemy-Continuum {importlib.metadata.version('SQLAlchemy-Continuum')}"
                   + (" (native_versioning)" if native else ""), "notes": []}


class ActorPlugin(Plugin):
    def transaction_args(self, uow, session):
        return {"user_id": harness.ACTOR}


make_versioned(user_cls="User", plugins=[ActorPlugin()],
               options={"native_versioning": native})
engine = create_engine(cfg["url"])
if native:
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS hstore"))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "bench_users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)


ItemBaseline, Item = _worker.versioned_items(Base)


sa.orm.configure_mappers()
Base.metadata.create_all(engine)
with engine.begin() as conn:
    conn.execute(text("INSERT INTO bench_users (id) VALUES (:u)"), {"u": harness.ACTOR})

trunc = "TRUNCATE {}" if cfg["dialect"] == "postgresql" or my else "DELETE FROM {}"
systems = [
    harness.PlainSystem("baseline", engine, ItemBaseline, cfg["dialect"]),
    PeerSystem(cfg["peer"], engine, Item, cfg["dialect"],
               count_sql="SELECT count(*), count(t.user_id) FROM items_peer_version AS v "
                         f"LEFT JOIN {TX} AS t ON t.id = v.transaction_id",
               reset_sql=[trunc.format("items_peer_version"), trunc.format(TX)]),
]


def reads():
    """Generate the tracked table's share of :m records (versions) plus one transaction
    per three records, return the version queries (Item.versions, and by user)."""
    from sqlalchemy.orm import sessionmaker
    from sqlalchemy_continuum import version_class, versioning_manager

    d, m = cfg["dialect"], cfg["audit_records"]
    ItemVersion, Transaction = version_class(Item), versioning_manager.transaction_cls
    prefix, src = harness.series(d)
    tab, res, user = harness.g_exprs(d)
    ts, div, item = harness.g_time(d), (" DIV " if my else " / "), harness.concat(d, "'item '", "g")
    with engine.begin() as conn:
        for u in range(harness.USERS):
            if f"user-{u}" != harness.ACTOR:
                conn.execute(text("INSERT INTO bench_users (id) VALUES (:u)"), {"u": f"user-{u}"})
        conn.execute(text(
            f"{prefix} INSERT INTO {TX} (id, issued_at, user_id) "
            f"SELECT g{div}3, {ts}, {user} FROM {src} WHERE g % 3 = 0"), {"m": m + 3})
        conn.execute(text(
            f"{prefix} INSERT INTO items_peer_version (id, name, qty, transaction_id, "
            f"operation_type) SELECT {res}, {item}, g % 100, (g + 2){div}3, "
            f"CASE g % 10 WHEN 0 THEN 0 WHEN 1 THEN 2 ELSE 1 END FROM {src} WHERE {tab} = 0"),
            {"m": m})
        info["audit_rows"] = conn.execute(text("SELECT count(*) FROM items_peer_version")).scalar()
    harness.settle(engine)
    Session = sessionmaker(bind=engine)

    def bound(value):
        return value.replace(tzinfo=None)

    def q_resource(k):
        rid = harness.read_args(k)["resource"]
        with Session() as s:
            return len(s.query(ItemVersion).filter(ItemVersion.id == rid)
                       .order_by(ItemVersion.transaction_id.desc()).all())

    def q_user_day(k):
        a = harness.read_args(k)
        with Session() as s:
            return len(s.query(ItemVersion)
                       .join(Transaction, ItemVersion.transaction_id == Transaction.id)
                       .filter(Transaction.user_id == a["user"],
                               Transaction.issued_at.between(bound(a["start"]), bound(a["end"])))
                       .order_by(ItemVersion.transaction_id.desc()).all())

    info["notes"].append("one version table per model: items_peer_version holds the tracked "
                         "table's share of the records (1 in 20), \"transaction\" one row per 3")
    return {cfg["peer"]: {"read_resource": q_resource, "read_user_day": q_user_day}}


_worker.run(cfg, systems, info, None if native else reads)
