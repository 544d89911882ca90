"""Call quality across a site's calls (issue 26): the share of poor calls (the worse leg's MOS
under POOR_MOS, G.107's "many users dissatisfied") per day in the site's time, the extensions and
trunks with the most, and the alarms a provider is told of when a site's or a trunk's share of
poor calls in the last ALARM_WINDOW crosses ALARM_SHARE, before the customer calls."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from . import clock
from .db import as_utc
from .models import Call, Site, utcnow

POOR_MOS = 3.6
ALARM_WINDOW = timedelta(hours=24)
ALARM_SHARE = 0.2  # a fifth of the calls poor: the line, not one bad handset
ALARM_MIN_CALLS = 10  # fewer calls say nothing either way
DAYS = 14
WORST = 5


def _poor():
    return func.sum(case((Call.mos_min < POOR_MOS, 1), else_=0))


def poor_lines(session: Session, now: datetime | None = None) -> dict[int, list[tuple[str, dict]]]:
    """Per site, the alarms its calls of the last ALARM_WINDOW call for: ("poor_calls", ...) for
    the whole site, ("poor_trunk", ...) for each trunk (one grouped query over every site)."""
    since = (now or utcnow()) - ALARM_WINDOW
    rows = session.execute(select(Call.site_id, Call.trunk, func.count(), _poor())
                           .where(Call.started_utc >= since, Call.mos_min.is_not(None))
                           .group_by(Call.site_id, Call.trunk)).all()
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    found: dict[int, list[tuple[str, dict]]] = defaultdict(list)
    for site_id, trunk, calls, poor in rows:
        totals[site_id][0] += calls
        totals[site_id][1] += poor or 0
        if trunk and calls >= ALARM_MIN_CALLS and (poor or 0) >= ALARM_SHARE * calls:
            found[site_id].append(("poor_trunk", {"name": trunk, "share": round(100 * poor / calls), "calls": calls}))
    for site_id, (calls, poor) in totals.items():
        if calls >= ALARM_MIN_CALLS and poor >= ALARM_SHARE * calls:
            found[site_id].insert(0, ("poor_calls", {"share": round(100 * poor / calls), "calls": calls}))
    return dict(found)


def site_quality(session: Session, site: Site, now: datetime | None = None) -> dict:
    """The site's last DAYS days: per day (its own time) calls measured and poor; the extensions
    and trunks with the largest share of poor calls; this week's share against the week before."""
    now = now or utcnow()
    zone = clock.zone(site.timezone)
    calls = session.execute(select(Call.started_utc, Call.mos_min, Call.trunk, Call.direction, Call.src, Call.answered_by)
                            .where(Call.site_id == site.id, Call.mos_min.is_not(None),
                                   Call.started_utc >= now - timedelta(days=DAYS))).all()
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    extensions: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    trunks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    weeks = [[0, 0], [0, 0]]  # this week, the week before
    for started, mos, trunk, direction, src, answered_by in calls:
        poor = int(mos < POOR_MOS)
        started = as_utc(started)
        for bucket in (days[started.astimezone(zone).date().isoformat()],
                       weeks[0 if now - started <= timedelta(days=7) else 1]):
            bucket[0] += 1
            bucket[1] += poor
        extension = src if direction == "outbound" else answered_by
        if extension:
            extensions[extension][0] += 1
            extensions[extension][1] += poor
        if trunk:
            trunks[trunk][0] += 1
            trunks[trunk][1] += poor
    share = lambda n, poor: round(100 * poor / n, 1) if n else None  # noqa: E731
    worst = lambda table: sorted(({"name": k, "calls": n, "poor": p, "share": share(n, p)}  # noqa: E731
                                  for k, (n, p) in table.items() if p), key=lambda r: (-r["share"], -r["calls"]))[:WORST]
    return {"days": [{"day": d, "calls": n, "poor": p, "share": share(n, p)} for d, (n, p) in sorted(days.items())],
            "extensions": worst(extensions), "trunks": worst(trunks),
            "this_week": share(*weeks[0]), "week_before": share(*weeks[1]), "calls": len(calls)}
