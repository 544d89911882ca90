"""The office's clock on the portal: every time a person reads, every date range and every
per-day or per-hour figure is in the site's own zone (`site.timezone` of its box's config, which
heartbeats carry), never the portal's. Calls are selected by their UTC instant (`started_utc`),
so records stamped in another offset (a box before its zone was set) fall on the right day."""
from __future__ import annotations

import zoneinfo
from collections import Counter
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import as_utc
from .models import Call, Site

UTC = zoneinfo.ZoneInfo("UTC")


def zone(name: str | None) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return UTC


def site_zones(session: Session, org_id: int) -> dict[int, zoneinfo.ZoneInfo]:
    """Each of the organisation's sites' zones, by site id."""
    return {site_id: zone(name) for site_id, name in
            session.execute(select(Site.id, Site.timezone).where(Site.org_id == org_id)).all()}


def org_zone(zones: dict[int, zoneinfo.ZoneInfo]) -> zoneinfo.ZoneInfo:
    """The zone the organisation's pages speak: its sites' (the most common one if they differ)."""
    counted = Counter(str(z) for z in zones.values())
    return zone(counted.most_common(1)[0][0]) if counted else UTC


def today(zones: dict[int, zoneinfo.ZoneInfo]) -> date:
    return datetime.now(org_zone(zones)).date()


def day_bounds(first: date, last: date, where: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of midnight starting `first` and midnight ending `last`, in zone `where`."""
    start = datetime.combine(first, time(0), where)
    end = datetime.combine(last + timedelta(days=1), time(0), where)
    return start.astimezone(UTC), end.astimezone(UTC)


def local(call: Call, zones: dict[int, zoneinfo.ZoneInfo]) -> datetime:
    """When the call started, in its site's zone."""
    return as_utc(call.started_utc).astimezone(zones.get(call.site_id, UTC))


def offset_label(where: zoneinfo.ZoneInfo) -> str:
    """`Europe/Moscow, UTC+03:00` (the offset of now)."""
    offset = datetime.now(where).strftime("%z")
    return f"{where}, UTC{offset[:3]}:{offset[3:]}"
