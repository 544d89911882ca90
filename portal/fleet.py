"""Organisations, sites, enrolment and credentials: what an operator does and what a box proves."""
from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select, update
from sqlalchemy import text as text_sql
from sqlalchemy.orm import Session

from . import i18n, tokens
from .db import as_utc
from .models import EnrolmentCode, Heartbeat, Organisation, Site, SiteCredential, utcnow

CODE_LIFETIME = timedelta(days=7)
OFFLINE_AFTER_MISSED = 3  # heartbeats
HEARTBEAT_HISTORY = timedelta(days=30)  # at most 8,640 rows a box a day (one per HISTORY_SPACING): kept this long
HISTORY_SPACING_SECONDS = 10  # a box beating faster still updates its status; history keeps one in each 10 s


class FleetError(Exception):
    """A request the portal refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def add_site(session: Session, org_name: str, site_name: str) -> str:
    """Creates the organisation (if new) and the site (if new); returns a fresh one-time
    enrolment code. For an existing site the code lets a replacement box take its place."""
    org = session.scalar(select(Organisation).where(Organisation.name == org_name))
    if org is None:
        org = Organisation(name=org_name)
        session.add(org)
        session.flush()
    site = session.scalar(select(Site).where(Site.name == site_name))
    if site is None:
        site = Site(org_id=org.id, name=site_name)
        session.add(site)
        session.flush()
    elif site.org_id != org.id:
        raise FleetError(409, f"site {site_name!r} belongs to another organisation")
    code = tokens.new_enrolment_code()
    session.add(EnrolmentCode(site_id=site.id, code_hash=tokens.digest(code), expires_at=utcnow() + CODE_LIFETIME))
    session.commit()
    return code


def enrol(session: Session, code: str) -> tuple[Site, str]:
    """Spends a code (once, atomically) and returns the site and its new credential; a box
    enrolled before for the site loses its credential."""
    code_hash = tokens.digest(tokens.normalise_code(code))
    now = utcnow()
    row = session.scalar(select(EnrolmentCode).where(EnrolmentCode.code_hash == code_hash))
    if row is None or as_utc(row.expires_at) < now:
        raise FleetError(403, "unknown or expired enrolment code")
    spent = session.execute(update(EnrolmentCode).where(EnrolmentCode.id == row.id, EnrolmentCode.used_at.is_(None))
                            .values(used_at=now))
    if spent.rowcount != 1:
        session.rollback()
        raise FleetError(403, "enrolment code already used")
    # A code for a site that has a box is a replacement's: the old box's credential stops working
    # (it could still read configs, which carry SIP and trunk passwords).
    session.execute(update(SiteCredential).where(SiteCredential.site_id == row.site_id,
                                                 SiteCredential.revoked_at.is_(None)).values(revoked_at=now))
    credential = tokens.new_credential()
    session.add(SiteCredential(site_id=row.site_id, token_hash=tokens.digest(credential)))
    site = session.get(Site, row.site_id)
    session.commit()
    return site, credential


def authenticate(session: Session, credential: str) -> Site:
    """The site a credential belongs to (one query: it runs on every request a box makes)."""
    row = session.execute(select(Site, SiteCredential.revoked_at).join(SiteCredential, SiteCredential.site_id == Site.id)
                          .where(SiteCredential.token_hash == tokens.digest(credential))).first()
    if row is None:
        raise FleetError(401, "unknown credential")
    if row.revoked_at is not None:
        raise FleetError(401, "credential revoked; enrol the box again")
    return row.Site


def site_by_name(session: Session, name: str) -> Site:
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise FleetError(404, f"no site {name!r}")
    return site


def revoke(session: Session, site_name: str) -> int:
    """Revokes every credential of the site (its box must enrol again); returns how many."""
    site = site_by_name(session, site_name)
    result = session.execute(update(SiteCredential).where(SiteCredential.site_id == site.id,
                                                          SiteCredential.revoked_at.is_(None))
                             .values(revoked_at=utcnow()))
    session.commit()
    return result.rowcount


def record_heartbeat(session: Session, site: Site, status: dict) -> bool:
    """Adds the heartbeat in the caller's transaction; True when it is the site's first of an
    hour (the caller's cue for the site's hourly housekeeping). A box beating faster than
    HISTORY_SPACING_SECONDS (a bug, a hostile box) updates its status every time but adds one
    history row per 10-second slot. On PostgreSQL that transaction does not wait for its WAL
    flush (synchronous_commit off): a heartbeat lost to a database crash is replaced a minute
    later, and a fleet's heartbeats would otherwise queue on fsync."""
    if session.bind.dialect.name == "postgresql":
        session.execute(text_sql("SET LOCAL synchronous_commit = off"))
    text = json.dumps(status, sort_keys=True)
    now = utcnow()
    last = as_utc(site.last_heartbeat_at)
    slot = lambda moment: int(moment.timestamp()) // HISTORY_SPACING_SECONDS  # noqa: E731
    if last is None or slot(last) != slot(now):
        session.add(Heartbeat(site_id=site.id, at=now, status=text))
    hour_turned = last is None or last.replace(minute=0, second=0, microsecond=0) != now.replace(minute=0, second=0,
                                                                                                 microsecond=0)
    if hour_turned:  # the site's history past HEARTBEAT_HISTORY goes
        session.execute(delete(Heartbeat).where(Heartbeat.site_id == site.id, Heartbeat.at < now - HEARTBEAT_HISTORY))
    changes = {"last_heartbeat_at": now, "last_status": text}
    zone = (status.get("settings") or {}).get("timezone")
    if zone != site.timezone and known_zone(zone):
        changes["timezone"] = zone
    session.execute(update(Site).where(Site.id == site.id).values(**changes))
    return hour_turned


def known_zone(name: object) -> bool:
    """An IANA time zone name this machine knows (what the box's config checked too)."""
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        return False
    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return False


DISK_LOW_FRACTION = 0.10  # an alarm when less than this share of the box's data partition is free


def alarms(online: bool, status: dict) -> list[tuple[str, dict]]:
    """What an operator must look at: the site offline, its disk nearly full, a trunk failing,
    records the portal refused, a toll-fraud limit tripped in the last day, phone upgrades stopped
    because a phone did not come back on its new firmware. Each is an i18n key
    (`alarm_` + key) and its values: the pages say it in the reader's language."""
    found: list[tuple[str, dict]] = [] if online else [("offline", {})]
    disk = status.get("disk") or {}
    if disk.get("total_bytes") and disk.get("free_bytes", 0) < DISK_LOW_FRACTION * disk["total_bytes"]:
        found.append(("disk_low", {"mb": disk["free_bytes"] >> 20}))
    for trunk in status.get("trunks") or []:
        if trunk.get("state") == "failing":
            found.append(("trunk_failing", {"name": trunk.get("name"), "code": trunk.get("last_code")}))
    aside = (status.get("outbox") or {}).get("rejected", 0)
    if aside:
        found.append(("set_aside", {"count": aside}))
    toll = status.get("toll_alarm") or {}
    if toll.get("reason"):
        found.append(("toll", {"at": str(toll.get("at", ""))[:16].replace("T", " "), "reason": toll["reason"]}))
    halted = (status.get("firmware_upgrades") or {}).get("halted") or {}
    if halted.get("mac"):
        found.append(("firmware_halted", {"mac": str(halted["mac"])[:17], "extension": str(halted.get("extension") or "?"),
                                          "version": str(halted.get("version", ""))[:64]}))
    return found


def alarm_texts(found: list[tuple[str, dict]], lang: str = "en") -> list[str]:
    return [i18n.WORDS[lang]["alarm_" + key].format(**values) for key, values in found]


def site_rows(session: Session, now: datetime | None = None) -> list[dict]:
    """Every site with its organisation and whether it is online (heartbeats not missed)."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for site, org in session.execute(select(Site, Organisation).join(Organisation).order_by(Organisation.name, Site.name)):
        status = json.loads(site.last_status) if site.last_status else {}
        last = as_utc(site.last_heartbeat_at)
        interval = status.get("heartbeat_seconds", 60)
        online = last is not None and (now - last).total_seconds() < OFFLINE_AFTER_MISSED * interval
        found = alarms(online, status)
        rows.append({"org": org.name, "site": site.name, "online": online, "timezone": site.timezone,
                     "version": status.get("version"), "slot": status.get("slot"),
                     "last_heartbeat_at": last.isoformat() if last else None, "status": status,
                     "alarms": alarm_texts(found), "alarm_keys": found})
    return rows


def heartbeat_history(session: Session, site_name: str, limit: int = 50) -> list[dict]:
    """The site's latest heartbeats, newest first: when, and what the box said."""
    site = site_by_name(session, site_name)
    rows = session.scalars(select(Heartbeat).where(Heartbeat.site_id == site.id)
                           .order_by(Heartbeat.at.desc()).limit(limit))
    return [{"at": as_utc(r.at).isoformat(), "status": json.loads(r.status)} for r in rows]
