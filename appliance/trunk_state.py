"""The trunks' registration state, kept by the registration process (appliance/trunks.py) in
data_dir/trunks.sqlite and read by `edgepbx status`, the cloud agent and the feature server
(which tries trunks whose registration fails last). SQLite only: readers need no pjsua2."""
from __future__ import annotations

import sqlite3

from .config import Config

SCHEMA = """CREATE TABLE IF NOT EXISTS trunks (name TEXT PRIMARY KEY, state TEXT, code INTEGER, reason TEXT,
updated_at TEXT, expires INTEGER)"""


def state_db(cfg: Config) -> sqlite3.Connection:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(cfg.data_dir / "trunks.sqlite"), timeout=2.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    return db


def trunk_states(cfg: Config) -> list[dict]:
    """For `edgepbx status`: every trunk of the config with its registration state."""
    rows = {}
    path = cfg.data_dir / "trunks.sqlite"
    if path.exists():
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = {r[0]: r for r in db.execute("SELECT name, state, code, reason, updated_at FROM trunks")}
        except sqlite3.OperationalError:
            rows = {}
        finally:
            db.close()
    out = []
    for trunk in cfg.trunks:
        row = rows.get(trunk.name)
        state = "not registering" if not trunk.register else (row[1] if row else "unknown")
        out.append({"name": trunk.name, "host": f"{trunk.host}:{trunk.port}", "register": trunk.register,
                    "state": state, "last_code": row[2] if row and trunk.register else None,
                    "last_reason": row[3] if row and trunk.register else None,
                    "updated_at": row[4] if row and trunk.register else None})
    return out
