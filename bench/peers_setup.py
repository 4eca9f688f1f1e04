"""Peer libraries: their virtualenvs (bench/.venvs/NAME, from PyPI), their worker runs,
and the machine facts for the report."""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import harness

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"

#: name -> how to install and run it. "python" is the lowest Python the package accepts.
PEERS: Dict[str, Dict[str, Any]] = {
    "sqlaudit-0.3.1": {
        "title": "sqlaudit 0.3.1 (original, ORM hooks)", "venv": "sqlaudit-0.3.1",
        "requirements": ["sqlaudit==0.3.1"], "python": (3, 13),
        "worker": "sqlaudit_worker.py", "dialects": ("postgresql", "sqlite"),
    },
    "sqlaudit-latest": {
        "title": "sqlaudit latest on PyPI (ORM hooks)", "venv": "sqlaudit-latest",
        "requirements": ["sqlaudit"], "python": (3, 13),
        "worker": "sqlaudit_worker.py", "dialects": ("postgresql", "sqlite"),
    },
    "postgresql-audit": {
        "title": "postgresql-audit (triggers)", "venv": "postgresql-audit",
        "requirements": ["postgresql-audit"], "python": (3, 9),
        "worker": "pga_worker.py", "dialects": ("postgresql",),
    },
    "continuum": {
        "title": "SQLAlchemy-Continuum (ORM)", "venv": "continuum",
        "requirements": ["SQLAlchemy-Continuum", "PyMySQL"], "python": (3, 11),
        "worker": "continuum_worker.py", "dialects": ("postgresql", "sqlite", "mariadb"),
    },
    "continuum-native": {
        "title": "SQLAlchemy-Continuum native_versioning (triggers)", "venv": "continuum",
        "requirements": ["SQLAlchemy-Continuum", "PyMySQL"], "python": (3, 11),
        "worker": "continuum_worker.py", "mode": "native", "dialects": ("postgresql",),
    },
    # bench/history.py only (not part of run.py's "all"): the History API reads
    "continuum-history": {
        "title": "SQLAlchemy-Continuum (history reads)", "venv": "continuum",
        "requirements": ["SQLAlchemy-Continuum", "PyMySQL"], "python": (3, 11),
        "worker": "continuum_history_worker.py", "dialects": ("postgresql", "sqlite", "mariadb"),
        "history": True,
    },
}
#: every peer venv gets a PostgreSQL driver and the benchmark's SQLAlchemy version when it fits
COMMON = ["psycopg[binary]>=3.1"]


# ------------------------------------------------------------------ interpreters

def _version_of(python: str) -> Optional[tuple]:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python(minimum: tuple) -> Optional[str]:
    """This interpreter if it is new enough, else the oldest installed one that is."""
    if sys.version_info[:2] >= minimum:
        return sys.executable
    candidates = [shutil.which(f"python3.{m}") for m in range(minimum[1], 20)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    candidates += sorted(glob.glob("/usr/local/bin/python3.*")) + sorted(glob.glob("/usr/bin/python3.*"))
    found = []
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        v = _version_of(c)
        if v is not None and v >= minimum:
            found.append((v, c))
    return min(found)[1] if found else None


# ------------------------------------------------------------------ virtualenvs

def _sqlalchemy_version() -> str:
    import sqlalchemy
    return sqlalchemy.__version__


def prepare_venvs(names: List[str]) -> Dict[str, Dict[str, Any]]:
    """Create (once) and return {peer: {"python": path} or {"error": text}}."""
    out: Dict[str, Dict[str, Any]] = {}
    for name in names:
        spec = PEERS[name]
        venv = VENVS / spec["venv"]
        python = venv / "bin" / "python"
        reqs = spec["requirements"] + COMMON
        pinned = reqs + [f"SQLAlchemy=={_sqlalchemy_version()}"]
        stamp = venv / ".bench-requirements"
        if python.exists() and stamp.exists() and stamp.read_text() in (
                json.dumps(pinned), json.dumps(reqs)):
            out[name] = {"python": str(python)}
            continue
        base = find_python(spec["python"])
        if base is None:
            out[name] = {"error": "needs Python >= %d.%d; none found" % spec["python"]}
            harness.progress(f"peer {name}: skipped, {out[name]['error']}")
            continue
        harness.progress(f"peer {name}: creating {venv.relative_to(HERE.parent)} with {base} "
                         f"and installing {' '.join(reqs)} from PyPI")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        used = pinned
        result = subprocess.run(pip + pinned, capture_output=True, text=True)
        if result.returncode != 0:  # the peer needs another SQLAlchemy: let pip choose
            used = reqs
            result = subprocess.run(pip + reqs, capture_output=True, text=True)
        if result.returncode != 0:
            out[name] = {"error": "pip install failed: " + result.stderr.strip().splitlines()[-1]}
            harness.progress(f"peer {name}: {out[name]['error']}")
            continue
        stamp.write_text(json.dumps(used))
        out[name] = {"python": str(python)}
    return out


# ------------------------------------------------------------------ worker runs

def check_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise SystemExit(f"PostgreSQL at {url} is unreachable ({type(exc).__name__}); set "
                         f"SQLAUDIT_BENCH_POSTGRES_URL or pass --dialects sqlite") from exc
    finally:
        engine.dispose()


def check_mariadb(url: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise SystemExit(f"MariaDB at {url} is unreachable ({type(exc).__name__}); set "
                         f"SQLAUDIT_BENCH_MARIADB_URL or leave mariadb out of --dialects") from exc
    finally:
        engine.dispose()


def _fresh_mariadb_database(url: str) -> "tuple[str, Any]":
    """A new MariaDB database (utf8mb4) for one peer, and its dropper."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    name = f"sqlaudit_bench_peer_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()

    target = make_url(url).set(database=name)
    if "charset" not in target.query:
        target = target.update_query_dict({"charset": "utf8mb4"})
    return target.render_as_string(hide_password=False), drop


def _fresh_database(url: str) -> "tuple[str, Any]":
    """A new PostgreSQL database for one peer (some peers write to schema public)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    name = f"sqlaudit_bench_peer_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def run_peer(name: str, dialect: str, venv: Dict[str, Any], s: Dict[str, Any],
             pg_url: str, mariadb_url: Optional[str] = None) -> Dict[str, Any]:
    spec = PEERS[name]
    base = {"peer": name, "dialect": dialect, "title": spec["title"]}
    if "error" in venv:
        return dict(base, error=venv["error"])
    import tempfile
    tmp = tempfile.mkdtemp(prefix=f"sqlaudit-bench-{name}-")
    drop = None
    try:
        if dialect == "postgresql":
            url, drop = _fresh_database(pg_url)
        elif dialect == "mariadb":
            url, drop = _fresh_mariadb_database(
                mariadb_url or "mysql+pymysql://root@127.0.0.1:3306/test")
        else:
            url = f"sqlite:///{tmp}/peer.db"
        job = {"peer": name, "dialect": dialect, "url": url, "mode": spec.get("mode"),
               "rows": s["rows"], "transactions": s["transactions"], "rounds": s["peer_rounds"],
               "audit_records": s["audit_records"], "read_rounds": s["peer_read_rounds"],
               "read_calls": s["peer_read_calls"], "oltp_budget": s.get("peer_oltp_budget")}
        harness.progress(f"peer {name} on {dialect}: worker starting ({venv['python']})")
        # the worker must import the peer from its venv, never this repository's sqlaudit
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        proc = subprocess.Popen([venv["python"], str(HERE / "peers" / spec["worker"]),
                                 json.dumps(job)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=str(HERE / "peers"), env=env)
        tail: List[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        # the result (one JSON line) can outgrow the pipe's buffer: read it alongside,
        # or the worker blocks writing it while we wait for its stderr to close
        out: List[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
        reader.start()
        for line in proc.stderr:  # forward the worker's progress as it comes
            line = line.rstrip()
            if line.startswith("["):
                print(f"    {line}", file=sys.stderr, flush=True)
            else:
                tail.append(line)
        reader.join()
        proc.wait()
        stdout = out[0] if out else ""
        lines = [l for l in stdout.splitlines() if l.startswith("{")]
        if not lines:
            detail = next((l for l in reversed(tail) if l.strip()), f"exit {proc.returncode}")
            return dict(base, error=f"worker failed: {detail[:300]}")
        result = json.loads(lines[-1])
        if result.get("error"):
            harness.progress(f"peer {name} on {dialect}: {result['error']}")
        result["python"] = _version_of(venv["python"])
        return dict(base, **result)
    finally:
        if drop is not None:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ machine facts

def machine_facts() -> Dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    import sqlalchemy
    import sqlite3
    try:
        import psycopg
        driver = f"psycopg {psycopg.__version__}"
    except ImportError:
        driver = "n/a"
    try:
        import pymysql
        driver += f", PyMySQL {pymysql.__version__}"
    except ImportError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": ram, "os": os_name,
            "python": platform.python_version(), "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version, "driver": driver, "sqlaudit": sqlaudit_source()}


def sqlaudit_source() -> str:
    """Which sqlaudit was measured: its version, and the git commit of its checkout."""
    import sqlaudit
    root = Path(sqlaudit.__file__).resolve().parent.parent
    text = f"sqlaudit {getattr(sqlaudit, '__version__', '?')} from {root}"
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return text
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "sqlaudit", "sql_templates"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return f"{text} at commit {commit.stdout.strip()}" + (
            " with uncommitted changes to sqlaudit/ or sql_templates/" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return text
