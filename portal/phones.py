"""A site's phones as its box last reported them, and the operator's resync/reboot requests."""
from __future__ import annotations

import json

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import wake
from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import PhoneAction, Site, utcnow

ACTIONS = ("resync", "reboot")


def site_phones(session: Session, site_name: str) -> list[dict]:
    """Phones from the last heartbeat, each with its latest action and how it went."""
    site = site_by_name(session, site_name)
    status = json.loads(site.last_status) if site.last_status else {}
    latest: dict[str, PhoneAction] = {}
    for action in session.scalars(select(PhoneAction).where(PhoneAction.site_id == site.id).order_by(PhoneAction.id)):
        latest[action.mac] = action
    return [dict(phone, last_action=_action_row(latest[phone["mac"]]) if phone.get("mac") in latest else None)
            for phone in status.get("phones", [])]


def _action_row(action: PhoneAction) -> dict:
    return {"id": action.id, "action": action.action, "state": action.state, "result": action.result,
            "created_at": as_utc(action.created_at).isoformat(),
            "done_at": as_utc(action.done_at).isoformat() if action.done_at else None}


def request_action(session: Session, site_name: str, mac: str, action: str) -> int:
    if action not in ACTIONS:
        raise FleetError(422, f"action must be one of {', '.join(ACTIONS)}")
    mac = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    if len(mac) != 12:
        raise FleetError(422, "a MAC address has 12 hex digits")
    site = site_by_name(session, site_name)
    row = PhoneAction(site_id=site.id, mac=mac, action=action)
    session.add(row)
    wake.notify(session, site.id)
    session.commit()
    return row.id


def hand_out(session: Session, site: Site) -> list[dict]:
    """Pending actions for the box that just sent a heartbeat (in its transaction); each is
    handed out once."""
    pending = session.scalars(select(PhoneAction).where(PhoneAction.site_id == site.id,
                                                        PhoneAction.state == "pending")).all()
    handed = []
    for action in pending:
        taken = session.execute(update(PhoneAction).where(PhoneAction.id == action.id, PhoneAction.state == "pending")
                                .values(state="sent", sent_at=utcnow()))
        if taken.rowcount == 1:  # another instance may have handed it out in the same instant
            handed.append({"id": action.id, "mac": action.mac, "action": action.action})
    return handed


def record_result(session: Session, site: Site, action_id: int, code: int | None, detail: str) -> None:
    done = session.execute(update(PhoneAction).where(PhoneAction.id == action_id, PhoneAction.site_id == site.id)
                           .values(state="done" if code and 200 <= code < 300 else "failed",
                                   result=str(detail)[:500], done_at=utcnow()))
    if done.rowcount != 1:
        session.rollback()
        raise FleetError(404, f"no phone action {action_id} for this site")
    session.commit()
