"""The customer's call report: an organisation's calls in a date range, by quick view, paged,
with a transfer's or a pickup's linked records shown as one conversation."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from .models import Call, Site

VIEWS = ("all", "inbound", "outbound", "internal", "answered", "missed")
SORTS = {"time": Call.started_at, "talk": Call.billsec, "caller": Call.src, "called": Call.dst}
PAGE_SIZE = 50
CSV_LIMIT = 100_000


@dataclass
class Query:
    """What the report shows: the box's local dates first..last, a quick view, the filters."""
    first: date
    last: date
    view: str = "all"
    extension: str = ""  # calls this extension made, took, picked up or was transferred
    number: str = ""  # any number of the call contains this
    recorded_only: bool = False
    sort: str = "time"
    descending: bool = True


@dataclass
class Conversation:
    """A call as the customer thinks of it: its first record, and the records linked to it
    (the leg a transfer made, the call as picked up)."""
    first: Call
    site: str
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


def _heads(org_id: int, query: Query):
    """The first records of the organisation's conversations that the query selects. Dates are the
    box's local dates (its CDR times carry the box's offset, so the text compares in order)."""
    heads = (select(Call, Site.name).join(Site, Site.id == Call.site_id)
             .where(Site.org_id == org_id, Call.linked_id.is_(None),
                    Call.started_at >= query.first.isoformat(),
                    Call.started_at < (query.last + timedelta(days=1)).isoformat()))
    condition = _view_filter(query.view)
    if condition is not None:
        heads = heads.where(condition)
    if query.extension:
        ext = query.extension
        heads = heads.where(or_(Call.src == ext, Call.dst == ext, Call.picked_up_by == ext, Call.transferred_to == ext))
    if query.number:
        pattern = "%" + query.number.replace("\\", "").replace("%", "").replace("_", "") + "%"
        heads = heads.where(or_(Call.src.like(pattern), Call.dst.like(pattern), Call.dst_number.like(pattern),
                                Call.src_name.like(pattern)))
    if query.recorded_only:
        heads = heads.where(Call.recording_sha256.is_not(None))
    column = SORTS.get(query.sort, Call.started_at)
    return heads.order_by(column.desc() if query.descending else column.asc(), Call.started_at.desc(), Call.id)


def conversations(session: Session, org_id: int, query: Query, page: int = 1) -> tuple[list[Conversation], int]:
    """The page's conversations and how many there are in all."""
    heads = _heads(org_id, query)
    total = session.scalar(select(func.count()).select_from(heads.order_by(None).subquery()))
    rows = session.execute(heads.limit(PAGE_SIZE).offset((max(page, 1) - 1) * PAGE_SIZE)).all()
    return _with_linked(session, org_id, [Conversation(call, site) for call, site in rows]), total


def all_conversations(session: Session, org_id: int, query: Query) -> list[Conversation]:
    """Every conversation the query selects (the CSV export), at most CSV_LIMIT."""
    rows = session.execute(_heads(org_id, query).limit(CSV_LIMIT)).all()
    return _with_linked(session, org_id, [Conversation(call, site) for call, site in rows])


def _with_linked(session: Session, org_id: int, result: list[Conversation]) -> list[Conversation]:
    """Each conversation's linked records (a transfer's leg, ...), asked for 1,000 at a time."""
    by_id = {(c.first.site_id, c.first.id): c for c in result}
    ids = [c.first.id for c in result]
    for start in range(0, len(ids), 1000):
        linked = session.scalars(select(Call).join(Site, Site.id == Call.site_id)
                                 .where(Site.org_id == org_id, Call.linked_id.in_(ids[start:start + 1000]))
                                 .order_by(Call.started_at)).all()
        for call in linked:
            head = by_id.get((call.site_id, call.linked_id))
            if head is not None:
                head.linked.append(call)
    return result


def call_of_org(session: Session, org_id: int, call_id: str) -> Call | None:
    """A call, only if it belongs to one of the organisation's sites: another organisation's id,
    guessed or copied, finds nothing."""
    return session.scalar(select(Call).join(Site, Site.id == Call.site_id)
                          .where(Site.org_id == org_id, Call.id == call_id))
