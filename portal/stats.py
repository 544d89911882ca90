"""The customer's statistics for a date range: incoming, outgoing and missed calls per day and per
extension, the busiest hours, answer and talk time, and the missed callers nobody called back.
Computed over the range's records in Python: an office's month is a few thousand rows."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .db import as_utc
from .models import Call, Site
from .reports import CSV_LIMIT, Query, started_between

EXTENSION = re.compile(r"^\d{2,6}$")


def number_key(number: str | None) -> str:
    """The last 10 digits: +7 916 123-45-67, 8 916 1234567 and 79161234567 are one caller."""
    digits = re.sub(r"\D", "", number or "")
    return digits[-10:]


def is_missed(call: Call) -> bool:
    return call.direction != "outbound" and call.disposition not in (None, "answered")


@dataclass
class Stats:
    days: list[tuple[str, dict[str, int]]] = field(default_factory=list)  # day -> inbound, outbound, internal, missed
    extensions: list[tuple[str, dict[str, int]]] = field(default_factory=list)  # made, received, missed
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    answered: int = 0
    answer_seconds_total: int = 0
    talk_seconds_total: int = 0
    not_called_back: list[Call] = field(default_factory=list)

    @property
    def answer_seconds_average(self) -> float:
        return self.answer_seconds_total / self.answered if self.answered else 0.0

    @property
    def busiest_hour(self) -> int | None:
        return max(range(24), key=lambda h: self.hours[h]) if any(self.hours) else None


def later_contact(calls: list[Call], missed: Call) -> Call | None:
    """The first later call that reached the missed caller's number: an outgoing call to it, or
    the caller's own later call that someone answered."""
    key = number_key(missed.src)
    if len(key) < 5:
        return None
    for call in calls:
        if as_utc(call.started_utc) <= as_utc(missed.started_utc):
            continue
        if call.direction == "outbound" and number_key(call.dst_number or call.dst) == key:
            return call
        if call.direction == "inbound" and call.disposition == "answered" and number_key(call.src) == key:
            return call
    return None


def answered_by(call: Call) -> str | None:
    """The office extension that answered (records from boxes before `answered_by`: the one that
    picked it up, else the extension dialled)."""
    if call.answered_by or call.rang:
        return call.answered_by
    if call.disposition != "answered" or call.direction == "outbound":
        return None
    return call.picked_up_by or (call.dst if EXTENSION.match(call.dst or "") else None)


def rang(call: Call) -> list[str]:
    """The extensions the call rang (older records: the extension dialled)."""
    if call.rang:
        return call.rang.split(",")
    return [call.dst] if EXTENSION.match(call.dst or "") and call.direction != "outbound" else []


def compute(session: Session, org_id: int, query: Query) -> Stats:
    rows = session.scalars(select(Call).join(Site, Site.id == Call.site_id)
                           .where(Site.org_id == org_id, Call.linked_id.is_(None),
                                  started_between(query.zones, query.first, query.last))
                           .order_by(Call.started_utc).limit(CSV_LIMIT)).all()
    # A callback may come after the range ends: look a week past it for those.
    after = session.scalars(select(Call).join(Site, Site.id == Call.site_id)
                            .where(Site.org_id == org_id,
                                   started_between(query.zones, query.last + timedelta(days=1),
                                                   query.last + timedelta(days=7)))
                            .order_by(Call.started_utc).limit(CSV_LIMIT)).all()
    stats = Stats()
    days: dict[str, Counter] = defaultdict(Counter)
    extensions: dict[str, Counter] = defaultdict(Counter)
    for call in rows:
        started = clock.local(call, query.zones)
        day = days[started.date().isoformat()]
        day[call.direction] += 1
        if is_missed(call):
            day["missed"] += 1
        stats.hours[started.hour] += 1
        if EXTENSION.match(call.src or "") and call.direction != "inbound":
            extensions[call.src]["made"] += 1
        taker = answered_by(call)
        if taker:
            extensions[taker]["received"] += 1
        if is_missed(call):
            for member in rang(call):
                extensions[member]["missed"] += 1
        if call.disposition == "answered" and call.answered_at and call.direction != "outbound":
            stats.answered += 1  # answered by the office (an outgoing call's answer is the far end's)
            waited = datetime.fromisoformat(call.answered_at) - datetime.fromisoformat(call.started_at)
            stats.answer_seconds_total += max(0, round(waited.total_seconds()))
        stats.talk_seconds_total += call.billsec or 0
    contacts = list(rows) + list(after)
    stats.not_called_back = [c for c in rows if c.direction == "inbound" and is_missed(c)
                             and later_contact(contacts, c) is None]
    stats.days = sorted((d, dict(c)) for d, c in days.items())
    stats.extensions = sorted((e, dict(c)) for e, c in extensions.items())
    return stats


def callbacks_for(session: Session, org_id: int, calls: list[Call]) -> dict[str, Call | None]:
    """For each missed incoming call of a report page: the later call that reached that caller, or None."""
    missed = [c for c in calls if c.direction == "inbound" and is_missed(c)]
    if not missed:
        return {}
    since = min(as_utc(c.started_utc) for c in missed)
    later = session.scalars(select(Call).join(Site, Site.id == Call.site_id)
                            .where(Site.org_id == org_id, Call.started_utc > since)
                            .order_by(Call.started_utc).limit(CSV_LIMIT)).all()
    return {c.id: later_contact(later, c) for c in missed}
