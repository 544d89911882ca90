"""The customer's call report: an organisation's calls in a date range, by quick view, paged,
with a transfer's or a pickup's linked records shown as one conversation."""
from __future__ import annotations

import json
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, false, func, literal, or_, select
from sqlalchemy.orm import Session

from . import clock
from .models import Call, Site

VIEWS = ("all", "inbound", "outbound", "internal", "answered", "missed")
SORTS = {"time": Call.started_utc, "talk": Call.billsec, "caller": Call.src, "called": Call.dst}
PAGE_SIZE = 50
CSV_LIMIT = 100_000


@dataclass
class Query:
    """What the report shows: the sites' own days first..last, a quick view, the filters."""
    first: date
    last: date
    view: str = "all"
    extension: str = ""  # calls this extension made, answered, missed (it rang) or was transferred
    number: str = ""  # any number of the call contains this
    recorded_only: bool = False
    sort: str = "time"
    descending: bool = True
    zones: dict[int, zoneinfo.ZoneInfo] = field(default_factory=dict)  # each site's zone, by site id


@dataclass
class Conversation:
    """A call as the customer thinks of it: its first record, and the records linked to it
    (the leg a transfer made, the call as picked up)."""
    first: Call
    site: str          # the site's name as its box's config gives it
    started: datetime  # in the site's zone
    linked: list[Call] = field(default_factory=list)


def preset_range(preset: str, today: date) -> tuple[date, date]:
    """(first day, last day) of today, yesterday, this week (from Monday) or this month."""
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset == "week":
        return today - timedelta(days=today.weekday()), today
    if preset == "month":
        return today.replace(day=1), today
    return today, today


def _view_filter(view: str):
    if view in ("inbound", "outbound", "internal"):
        return Call.direction == view
    if view == "answered":
        return Call.disposition == "answered"
    if view == "missed":  # someone called the office and nobody took it
        return and_(Call.direction != "outbound", Call.disposition.is_not(None), Call.disposition != "answered")
    return None


def started_between(zones: dict[int, zoneinfo.ZoneInfo], first: date, last: date):
    """Calls that started on days first..last of their own site's clock (portal/clock.py)."""
    by_zone: dict[str, list[int]] = defaultdict(list)
    for site_id, where in zones.items():
        by_zone[str(where)].append(site_id)
    parts = []
    for name, site_ids in by_zone.items():
        start, end = clock.day_bounds(first, last, clock.zone(name))
        parts.append(and_(Call.site_id.in_(site_ids), Call.started_utc >= start, Call.started_utc < end))
    return or_(*parts) if parts else false()


def involves(extension: str):
    """Calls the extension made, answered, picked up, was transferred, or that rang it."""
    return or_(Call.src == extension, Call.dst == extension, Call.answered_by == extension,
               Call.picked_up_by == extension, Call.transferred_to == extension,
               (literal(",") + Call.rang + literal(",")).like(f"%,{extension},%"))


def _heads(org_id: int, query: Query):
    """The first records of the organisation's conversations that the query selects."""
    heads = (select(Call, Site.name).join(Site, Site.id == Call.site_id)
             .where(Site.org_id == org_id, Call.linked_id.is_(None),
                    started_between(query.zones, query.first, query.last)))
    condition = _view_filter(query.view)
    if condition is not None:
        heads = heads.where(condition)
    if query.extension:
        heads = heads.where(involves(query.extension.replace("%", "").replace("_", "").replace(",", "")))
    if query.number:
        pattern = "%" + query.number.replace("\\", "").replace("%", "").replace("_", "") + "%"
        heads = heads.where(or_(Call.src.like(pattern), Call.dst.like(pattern), Call.dst_number.like(pattern),
                                Call.src_name.like(pattern)))
    if query.recorded_only:
        heads = heads.where(Call.recording_sha256.is_not(None))
    column = SORTS.get(query.sort, Call.started_utc)
    return heads.order_by(column.desc() if query.descending else column.asc(), Call.started_utc.desc(), Call.id)


def conversations(session: Session, org_id: int, query: Query, page: int = 1) -> tuple[list[Conversation], int]:
    """The page's conversations and how many there are in all."""
    heads = _heads(org_id, query)
    total = session.scalar(select(func.count()).select_from(heads.order_by(None).subquery()))
    rows = session.execute(heads.limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE)).all()
    titles = site_titles(session, org_id)
    return _with_linked(session, org_id, [Conversation(call, titles.get(site, site), clock.local(call, query.zones))
                                          for call, site in rows]), total


def all_conversations(session: Session, org_id: int, query: Query) -> list[Conversation]:
    """Every conversation the query selects (the CSV export), at most CSV_LIMIT."""
    rows = session.execute(_heads(org_id, query).limit(CSV_LIMIT)).all()
    titles = site_titles(session, org_id)
    return _with_linked(session, org_id, [Conversation(call, titles.get(site, site), clock.local(call, query.zones))
                                          for call, site in rows])


def _with_linked(session: Session, org_id: int, result: list[Conversation]) -> list[Conversation]:
    """Each conversation's linked records (a transfer's leg, ...), asked for 1,000 at a time."""
    by_id = {(c.first.site_id, c.first.id): c for c in result}
    ids = [c.first.id for c in result]
    for start in range(0, len(ids), 1000):
        linked = session.scalars(select(Call).join(Site, Site.id == Call.site_id)
                                 .where(Site.org_id == org_id, Call.linked_id.in_(ids[start:start + 1000]))
                                 .order_by(Call.started_utc)).all()
        for call in linked:
            head = by_id.get((call.site_id, call.linked_id))
            if head is not None:
                head.linked.append(call)
    return result


def _settings(session: Session, org_id: int) -> dict[int, tuple[str, dict]]:
    """Each site's slug and the settings its box last reported (empty when none or unreadable)."""
    found = {}
    for site_id, slug, status in session.execute(select(Site.id, Site.name, Site.last_status)
                                                 .where(Site.org_id == org_id)).all():
        try:
            settings = json.loads(status or "{}").get("settings") or {}
        except (ValueError, AttributeError):
            settings = {}
        found[site_id] = (slug, settings if isinstance(settings, dict) else {})
    return found


def extension_names(session: Session, org_id: int) -> dict[int, dict[str, str]]:
    """Each site's extension names (number -> name), as its box last reported its settings."""
    return {site_id: {str(e.get("number")): str(e.get("name") or "") for e in settings.get("extensions") or []
                      if isinstance(e, dict)} for site_id, (_slug, settings) in _settings(session, org_id).items()}


def site_titles(session: Session, org_id: int) -> dict[str, str]:
    """Each site's name as its box's config gives it (`site.name`), by slug; the slug until it reported."""
    return {slug: str(settings.get("site") or slug) for slug, settings in _settings(session, org_id).values()}


def call_of_org(session: Session, org_id: int, call_id: str) -> Call | None:
    """A call, only if it belongs to one of the organisation's sites: another organisation's id,
    guessed or copied, finds nothing."""
    return session.scalar(select(Call).join(Site, Site.id == Call.site_id)
                          .where(Site.org_id == org_id, Call.id == call_id))
