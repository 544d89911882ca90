"""The configurator behind the settings pages: the site's newest config version read as the
office's settings, and a form's change saved as the next version (the box's own checks first,
then the box pulls it within seconds and applies it when no call is up).

Two people editing at once: each form carries the version it was made from; a save against an
older one is refused (409) and the person is told who saved in between, so nobody's change is
silently overwritten."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import incoming
from .config_edit import EditRefused
from .configs import change_of, desired_config, masked, push_config, validation_errors
from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import Site, SiteConfig


@dataclass
class Workspace:
    """What a settings page shows and edits: the newest version and what it says."""
    site: Site
    version: int
    state: str
    errors: list[str]
    extensions: list[dict]
    features: dict = field(default_factory=dict)  # pickup, its codes, the transfer key, recording and its retention
    phones: dict[str, dict] = field(default_factory=dict)  # extension -> what the last heartbeat said of its phone
    incoming: dict = field(default_factory=dict)  # the incoming-calls page's view (portal/incoming.py)
    trunks: list[dict] = field(default_factory=list)  # without their passwords
    area: dict = field(default_factory=dict)  # the dial plan's country and area code


def workspace(session: Session, site: Site) -> Workspace | None:
    """None when the portal has no config of this site yet (the box sends its own at its first
    heartbeat after enrolment)."""
    newest = desired_config(session, site)
    if newest is None:
        return None
    status = json.loads(site.last_status) if site.last_status else {}
    phones = {p.get("extension"): p for p in status.get("phones", []) if isinstance(p, dict) and p.get("extension")}
    extensions, features, trunks, area = _settings(newest.text)
    try:
        inbound = incoming.read(newest.text)
    except EditRefused:
        inbound = {}  # not a mapping: edited as text on the site page
    return Workspace(site, newest.version, newest.state, json.loads(newest.errors) if newest.errors else [],
                     extensions, features, phones, inbound, trunks, area)


def _settings(text: str) -> tuple[list[dict], dict, list[dict], dict]:
    """The extensions and trunks (without their passwords), the features and the dialling area as
    the box reads them (its own parser, defaults included)."""
    from appliance.config import InvalidConfig, parse

    try:
        cfg = parse(text, Path("config"), on_box=False)
    except InvalidConfig:
        return [], {}, [], {}  # a version only a newer box understands: edited as text on the site page
    extensions = [{"number": e.number, "name": e.name, "permissions": e.permissions, "pickup_group": e.pickup_group,
                   "has_password": e.password is not None, "record": e.record,
                   "phone": {"mac": ":".join(e.phone.mac[i:i + 2] for i in range(0, 12, 2)).upper(),
                             "vendor": e.phone.vendor, "model": e.phone.model,
                             "keys": [{"type": k.type, "value": k.value, "label": k.label} for k in e.phone.keys or []]}
                   if e.phone else None}
                  for e in cfg.extensions]
    f = cfg.features
    features = {"pickup": f.pickup, "pickup_code": f.pickup_code, "directed_pickup_prefix": f.directed_pickup_prefix,
                "transfer_key": f.transfer_key, "recording": cfg.recording_enabled,
                "keep_days": cfg.recording_keep_days}
    trunks = [{"name": t.name, "host": t.host, "port": t.port, "transport": t.transport, "username": t.username,
               "has_password": bool(t.password), "register": t.register, "caller_id": t.caller_id,
               "number_format": t.number_format, "dids": t.dids} for t in cfg.trunks]
    return extensions, features, trunks, {"country": cfg.country, "area_code": cfg.area_code}


def dialplan_test(session: Session, site: Site, number: str, caller: str | None) -> dict | None:
    """What `edgepbx dialplan test` says for `number` (dialled by `caller`) under the newest
    version: the box's own dial plan code on the box's own config; None when there is none."""
    from appliance.config import InvalidConfig, parse
    from appliance.dialplan import DialPlan

    newest = desired_config(session, site)
    if newest is None:
        return None
    try:
        cfg = parse(newest.text, Path("config"), on_box=False)
    except InvalidConfig:
        return None
    if caller and cfg.extension(caller) is None:
        caller = None
    return DialPlan(cfg).route(number[:40], caller).as_dict() | {"from": caller}


def preview(session: Session, site_name: str, base: int, edit: Callable[[str], str]) -> str:
    """What saving the edit would change in version `base`: a unified diff with secrets masked
    ("" for nothing), after the box's own checks; refused as `save` would refuse it."""
    site = site_by_name(session, site_name)
    current = desired_config(session, site)
    if current is None or current.version != base:
        raise FleetError(409, f"version {current.version if current else 0} is not the one this change started "
                              f"from ({base})")
    text = edit(current.text)
    if errors := validation_errors(text):
        raise FleetError(422, "the config does not validate:\n" + "\n".join(errors))
    return "".join(difflib.unified_diff(masked(current.text).splitlines(keepends=True),
                                        masked(text).splitlines(keepends=True), f"v{base}", f"v{base + 1}"))


def save(session: Session, site_name: str, base: int, edit: Callable[[str], str], author: str, summary: str) -> int:
    """The edit applied to version `base` and saved as the next version; FleetError 409 when
    another was saved since, 422 with the box's own errors when the result would not run,
    EditRefused when the edit makes no sense (an extension that is not there)."""
    site = site_by_name(session, site_name)
    current = desired_config(session, site)
    if current is None:
        raise FleetError(409, "the box has not sent its config yet")
    if current.version != base:
        raise FleetError(409, f"version {current.version} was saved after the one this change started from ({base})")
    text = edit(current.text)
    if text == current.text:
        return current.version
    return push_config(session, site_name, text, author=author, summary=summary, base=base)


def saved_between(session: Session, site: Site, base: int) -> list[dict]:
    """Who saved which versions after `base` (what the second of two editors is told)."""
    rows = session.scalars(select(SiteConfig).where(SiteConfig.site_id == site.id, SiteConfig.version > base)
                           .order_by(SiteConfig.version))
    return [{"version": r.version, "author": r.author, "change": change_of(r.summary),
             "created_at": as_utc(r.created_at).isoformat()} for r in rows]

