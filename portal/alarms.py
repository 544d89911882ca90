"""Alarms with a start and an end, and telling people of them.

Every few seconds one portal instance (a PostgreSQL advisory lock picks it; SQLite has only one)
compares what each site's last heartbeat says (fleet.alarms, and "offline" when heartbeats stop)
with the alarms open in the database: a new condition opens an alarm, one that is gone closes
it. Then each contact whose organisation and severity match is told of each start and end
once, by e-mail or by webhook (portal/notify.py), or once a day in a digest. A contact that cannot
be reached is tried again next round; the alarm is marked told only when every contact was.
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from . import fleet, quality, rollouts
from .db import as_utc
from .models import Alarm, AlarmContact, Organisation, Site, utcnow
from .notify import Event, Notifier, NotifyError

log = logging.getLogger("edgepbx.portal.alarms")

SEVERITY = {"offline": "critical", "trunk_failing": "critical", "toll": "critical",
            "disk_low": "warning", "set_aside": "warning", "firmware_halted": "critical",
            "poor_calls": "warning", "poor_trunk": "warning", "rollout_halted": "critical"}
LEVELS = {"warning": 0, "critical": 1}
ADVISORY_LOCK = 0x6564_6765  # "edge": one instance evaluates and notifies at a time
DIGEST_EVERY = timedelta(days=1)


def site_history(session: Session, site_id: int, limit: int = 20) -> list[dict]:
    """The site's latest alarms, newest first, for its page: what, how severe, when it began and ended."""
    rows = session.scalars(select(Alarm).where(Alarm.site_id == site_id).order_by(Alarm.started_at.desc(), Alarm.id.desc())
                           .limit(limit))
    return [{"key": a.key, "values": json.loads(a.detail), "severity": a.severity,
             "started_at": as_utc(a.started_at).isoformat(),
             "ended_at": as_utc(a.ended_at).isoformat() if a.ended_at else None,
             "told": a.told_end if a.ended_at else a.told_start} for a in rows]


def subject_of(key: str, values: dict) -> str:
    return str(values.get("name") or "")[:64] if key in ("trunk_failing", "poor_trunk") else ""


def evaluate(session: Session, now: datetime | None = None) -> int:
    """Opens and closes alarms from the sites' last heartbeats; returns how many changed."""
    now = now or utcnow()
    changed = 0
    rows = {r["site"]: r for r in fleet.site_rows(session, now)}
    poor = quality.poor_lines(session, now)  # from the calls, not the heartbeat: one grouped query
    halted = rollouts.alarm_keys(session)
    for site in session.scalars(select(Site).where(Site.last_heartbeat_at.is_not(None))):
        row = rows.get(site.name)
        found = (row["alarm_keys"] if row else []) + poor.get(site.id, []) + halted.get(site.id, [])
        current = {(key, subject_of(key, values)): values for key, values in found}
        open_ = {(a.key, a.subject): a for a in session.scalars(
            select(Alarm).where(Alarm.site_id == site.id, Alarm.ended_at.is_(None)))}
        for (key, subject), values in current.items():
            if (key, subject) not in open_:
                session.add(Alarm(site_id=site.id, key=key, subject=subject, severity=SEVERITY.get(key, "warning"),
                                  detail=json.dumps(values, ensure_ascii=False, default=str), started_at=now))
                changed += 1
            elif json.loads(open_[(key, subject)].detail) != values:  # e.g. less disk free: the newest figures
                open_[(key, subject)].detail = json.dumps(values, ensure_ascii=False, default=str)
        for identity, alarm in open_.items():
            if identity not in current:
                alarm.ended_at = now
                changed += 1
    session.flush()
    return changed


def pending_events(session: Session) -> list[Event]:
    """Starts and ends not yet told to everyone, oldest first."""
    rows = session.execute(
        select(Alarm, Site.name, Organisation.name, Organisation.id, Site.timezone)
        .join(Site, Site.id == Alarm.site_id).join(Organisation, Organisation.id == Site.org_id)
        .where(or_(Alarm.told_start.is_(False), Alarm.ended_at.is_not(None) & Alarm.told_end.is_(False)))
        .order_by(Alarm.started_at, Alarm.id)).all()
    events = []
    for alarm, site, org, org_id, zone in rows:
        if not alarm.told_start:
            events.append(Event(alarm, site, org, org_id, zone, ended=False))
        if alarm.ended_at is not None:
            events.append(Event(alarm, site, org, org_id, zone, ended=True))
    return events


def contacts_for(contacts: list[AlarmContact], event: Event) -> list[AlarmContact]:
    return [c for c in contacts if not c.digest and (c.org_id is None or c.org_id == event.org_id)
            and LEVELS[event.alarm.severity] >= LEVELS.get(c.severity, 0)]


def tell(session: Session, notifier: Notifier, now: datetime | None = None) -> int:
    """Tells each contact of each start and end once; returns how many messages went out."""
    contacts = list(session.scalars(select(AlarmContact)))
    sent = 0
    for event in pending_events(session):
        failed = False
        for contact in contacts_for(contacts, event):
            try:
                notifier.send(contact, event)
                sent += 1
            except NotifyError as exc:
                log.error("alarm %d: telling %s %s failed: %s", event.alarm.id, contact.kind, contact.target, exc)
                failed = True
        if failed:
            continue  # all of this event again next round: a told contact may hear it twice, none never
        if event.ended:
            event.alarm.told_end = True
            event.alarm.told_start = True  # an alarm that began and ended between two rounds
        else:
            event.alarm.told_start = True
        session.flush()
    sent += send_digests(session, notifier, contacts, now or utcnow())
    return sent


def send_digests(session: Session, notifier: Notifier, contacts: list[AlarmContact], now: datetime) -> int:
    sent = 0
    for contact in (c for c in contacts if c.digest):
        since = contact.last_digest_at
        if since is not None and now - as_utc(since) < DIGEST_EVERY:
            continue
        since = now - DIGEST_EVERY if since is None else as_utc(since)
        query = (select(Alarm, Site.name, Organisation.name, Organisation.id, Site.timezone)
                 .join(Site, Site.id == Alarm.site_id).join(Organisation, Organisation.id == Site.org_id)
                 .where(or_(Alarm.started_at >= since, Alarm.ended_at.is_(None)))
                 .order_by(Alarm.started_at))
        events = [Event(a, s, o, oid, z, ended=a.ended_at is not None) for a, s, o, oid, z in session.execute(query)
                  if contact.org_id in (None, oid) and LEVELS[a.severity] >= LEVELS.get(contact.severity, 0)]
        try:
            notifier.send_digest(contact, events)
        except NotifyError as exc:
            log.error("alarm digest to %s failed: %s", contact.target, exc)
            continue
        contact.last_digest_at = now
        session.flush()
        sent += 1
    return sent


def one_round(sessions: sessionmaker[Session], notifier: Notifier) -> int:
    """Evaluate and tell, on one instance at a time (the lock is held for the transaction)."""
    with sessions() as session:
        if session.bind.dialect.name == "postgresql" and \
                not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK}).scalar():
            return 0
        rollouts.check_deadlines(session)  # a box not back from its update halts its rollout
        evaluate(session)
        session.commit()  # the alarms are on record before anyone is told
        sent = tell(session, notifier)
        session.commit()
        return sent


class AlarmWatch(threading.Thread):
    """`edgepbx-portal run`'s background round every `interval` seconds."""

    def __init__(self, sessions: sessionmaker[Session], notifier: Notifier, interval: float):
        super().__init__(name="alarms", daemon=True)
        self.sessions, self.notifier, self.interval = sessions, notifier, interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                one_round(self.sessions, self.notifier)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the watch
                log.exception("alarm round failed; trying again in %.0f s", self.interval)
