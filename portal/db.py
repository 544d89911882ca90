"""The portal's database: SQLite under the data directory by default, PostgreSQL in production.

Migrations (Alembic) run at start. On PostgreSQL an advisory lock serialises them, so several
portal instances starting together against one database migrate it once.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from .sealing import load_key

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SETTINGS_FILE = "portal.json"  # remembers --database-url for the other commands on the same data dir
MIGRATION_LOCK = 0x65647062  # "edpb": the advisory lock id for migrations


def database_url(data_dir: Path, given: str | None) -> str:
    """The URL given, else the one `run` remembered for this data dir, else SQLite inside it."""
    if given:
        url = given
    elif os.environ.get("EDGEPBX_PORTAL_DATABASE_URL"):
        url = os.environ["EDGEPBX_PORTAL_DATABASE_URL"]
    else:
        settings = data_dir / SETTINGS_FILE
        url = json.loads(settings.read_text()).get("database_url") if settings.exists() else None
        url = url or f"sqlite:///{(data_dir / 'portal.sqlite').resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not the psycopg2 default
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        shown = url.split("://", 1)[0] + "://" + url.rsplit("@", 1)[-1].split("://", 1)[-1]  # no password shown
        raise ValueError(f"database URL {shown!r}: the portal runs on SQLite (the default) or "
                         "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    return url


def remember_url(data_dir: Path, url: str | None) -> None:
    from appliance.files import write_private_json  # mode 0600: the URL may hold a password

    if url:
        write_private_json(data_dir / SETTINGS_FILE, {"database_url": url})


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest revision."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK})
                conn.commit()


def open_database(data_dir: Path, url: str | None = None) -> sessionmaker[Session]:
    data_dir.mkdir(parents=True, exist_ok=True)
    load_key(data_dir)  # before the migrations: they seal what older versions kept in clear
    engine = make_engine(database_url(data_dir, url))
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored moment is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)
