"""An organisation's statistics and its boxes' settings."""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import captures, clock, dialwords, quality, reports, stats, users
from ..bodies import SettingsSummary
from ..db import as_utc
from ..deps import db, org_user, report_query
from ..models import Site
from ..pages import moment, render

router = APIRouter(include_in_schema=False)


def readable_settings(reported: object) -> dict | None:
    """The box's reported settings in the shape the page reads, or None when they are not (a box
    of another version, or one sending nonsense): the page says it has none rather than failing."""
    if not reported:
        return None
    try:
        return SettingsSummary.model_validate(reported).model_dump(by_alias=True)
    except ValidationError:
        return None


@router.get("/settings")
def settings_page(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db)) -> Response:
    """The box's running settings as it last reported them (read-only; no password is ever sent)."""
    sites = session.scalars(select(Site).where(Site.org_id == me.org_id).order_by(Site.name)).all()
    shown = []
    taken = captures.listing(session, [site.id for site in sites])  # the office is told its calls were captured
    for site in sites:
        status = json.loads(site.last_status) if site.last_status else {}
        phones = {p.get("extension"): p for p in status.get("phones", []) if p.get("extension")}
        shown.append({"name": site.name, "settings": readable_settings(status.get("settings")), "phones": phones,
                      "timezone": site.timezone, "captures": [c for c in taken if c["site_id"] == site.id],
                      "at": moment(as_utc(site.last_heartbeat_at).isoformat(), site.timezone)
                      if site.last_heartbeat_at else None})
    return render(request, "settings.html", me=me, sites=shown, dial_shape=dialwords.shape)


@router.get("/stats")
def stats_page(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db),
               asked: tuple[reports.Query, str | None] = Depends(report_query)) -> Response:
    query, preset = asked
    figures = stats.compute(session, me.org_id, query)
    peak = max([sum(v for k, v in counts.items() if k != "missed") for _, counts in figures.days] + [1])
    return render(request, "stats.html", me=me, s=figures, query=query, preset=preset, peak=peak,
                  hour_peak=max(figures.hours + [1]), local=lambda call: clock.local(call, query.zones),
                  zone_label=clock.offset_label(clock.org_zone(query.zones)),
                  names={ext: name for site_names in reports.extension_names(session, me.org_id).values()
                         for ext, name in site_names.items()})


@router.get("/quality")
def quality_page(request: Request, me: users.SignedIn = Depends(org_user), session: Session = Depends(db)) -> Response:
    """The organisation's sites' call quality: poor calls per day, the worst extensions and trunks."""
    sites = session.scalars(select(Site).where(Site.org_id == me.org_id).order_by(Site.name)).all()
    return render(request, "quality.html", me=me,
                  sites=[{"name": s.name, "quality": quality.site_quality(session, s)} for s in sites])
