"""The "call back" button on a missed call: the request waits for the site's next heartbeat, the
box rings the user's extension and dials the caller, and says whether the phone is ringing.

A request the box has not collected within CALLBACK_TTL expires: a phone must not ring minutes
after its user gave up waiting (the box was offline, say).
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import wake
from .db import as_utc
from .fleet import FleetError
from .models import CallbackRequest, Site, utcnow
from .reports import call_of_org
from .stats import is_missed

CALLBACK_TTL = timedelta(minutes=2)


def request_call_back(session: Session, org_id: int, user_id: int, extension: str | None, call_id: str) -> CallbackRequest:
    """Queues a call back of a missed incoming call of this organisation for the user's extension."""
    if not extension:
        raise FleetError(409, "your user has no extension to ring")
    call = call_of_org(session, org_id, call_id)
    if call is None:
        raise FleetError(404, "no such call")
    if call.direction != "inbound" or not is_missed(call) or not call.src or call.src == "anonymous":
        raise FleetError(409, "only a missed call with a caller's number can be called back")
    row = CallbackRequest(site_id=call.site_id, call_id=call.id, user_id=user_id, extension=extension, number=call.src)
    session.add(row)
    wake.notify(session, call.site_id)
    session.commit()
    return row


def hand_out(session: Session, site: Site) -> list[dict]:
    """Pending requests for the box that just sent a heartbeat (in its transaction), each once;
    stale ones expire instead."""
    now = utcnow()
    handed = []
    for row in session.scalars(select(CallbackRequest).where(CallbackRequest.site_id == site.id,
                                                              CallbackRequest.state == "pending")).all():
        stale = as_utc(row.created_at) < now - CALLBACK_TTL
        taken = session.execute(update(CallbackRequest).where(CallbackRequest.id == row.id,
                                                              CallbackRequest.state == "pending")
                                .values(state="expired" if stale else "sent",
                                        done_at=now if stale else None,
                                        detail="the box did not collect it in time" if stale else None))
        if taken.rowcount == 1 and not stale:  # another instance may have handed it out meanwhile
            handed.append({"id": row.id, "extension": row.extension, "number": row.number})
    return handed


def record_result(session: Session, site: Site, request_id: int, started: bool, detail: str) -> None:
    done = session.execute(update(CallbackRequest).where(CallbackRequest.id == request_id,
                                                         CallbackRequest.site_id == site.id)
                           .values(state="ringing" if started else "refused", detail=detail[:500], done_at=utcnow()))
    if done.rowcount != 1:
        session.rollback()
        raise FleetError(404, f"no call-back request {request_id} for this site")
    session.commit()


def latest_for(session: Session, site_calls: list[tuple[int, str]]) -> dict[str, CallbackRequest]:
    """The newest call-back request of each of these calls (site id, call id), by call id."""
    if not site_calls:
        return {}
    ids = [call_id for _site, call_id in site_calls]
    latest: dict[str, CallbackRequest] = {}
    for row in session.scalars(select(CallbackRequest).where(CallbackRequest.call_id.in_(ids))
                               .order_by(CallbackRequest.id)):
        if (row.site_id, row.call_id) in site_calls:
            latest[row.call_id] = row
    return latest
