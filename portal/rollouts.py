"""Box software from the portal (issue 23): an operator uploads a signed RAUC bundle (a release),
then rolls it out to sites: the canaries first, then waves of the rest, each wave only when every
box of the one before is on the release. A box is offered the release in its heartbeat's answer,
downloads it (`GET /api/v1/releases/SHA256`, resumable), installs it inside the rollout's window
(its own time zone) when no call is up, reboots, confirms its new slot and says the new version in
its next heartbeat. A box that rolls back, says it failed, or is not back on the release within
the deadline halts the rollout: nothing more is offered until an operator resumes it, and the
site has a `rollout_halted` alarm meanwhile.

The portal checks each bundle with RAUC itself (`rauc info --keyring`): its signature against the
provider's certificate, its compatible string and its version. RAUC on the box checks it again,
and its payload (dm-verity), before it writes a slot."""
from __future__ import annotations

import json
import math
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import Release, Rollout, RolloutSite, Site, utcnow
from .storage import Storage, put_copy

MAX_BUNDLE_BYTES = 2 << 30
COMPATIBLE = re.compile(r"edgepbx-[a-z0-9]{1,32}")
WINDOW = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
UNFINISHED = ("running", "paused", "halted")
FINAL = ("done", "failed", "skipped")
OFFERED = ("offered", "downloading", "ready")  # the box is told of the release while in these
BOX_STATES = ("downloading", "ready", "installing", "failed")  # what a box may say it is doing


# --- releases ---------------------------------------------------------------------------------
def bundle_info(path: Path, keyring: Path) -> dict:
    """What RAUC says of a bundle after checking its signature against the keyring."""
    try:
        done = subprocess.run(["rauc", "info", f"--keyring={keyring}", "--output-format=json", str(path)],
                              capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise FleetError(500, "RAUC is not installed on this portal host (apt install rauc): "
                              "bundles cannot be checked") from None
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if "rauc-Message" not in line]
        raise FleetError(422, f"{path.name} is not a bundle signed for this fleet: {' '.join(said).strip()[:300]}")
    signer = re.search(r"Verified (?:inline|detached) signature by '([^']*)'", done.stderr)
    info = json.loads(done.stdout)
    info["signer"] = signer.group(1) if signer else ""
    return info


def add_release(session: Session, store: Storage, source: Path, keyring: Path, by: str) -> Release:
    """Checks the bundle, copies it into the store (hashing as it goes) and records it."""
    size = source.stat().st_size
    if not 0 < size <= MAX_BUNDLE_BYTES:
        raise FleetError(413 if size else 422, f"a bundle holds 1 byte to {MAX_BUNDLE_BYTES >> 20} MB")
    info = bundle_info(source, keyring)
    version, compatible = str(info.get("version") or ""), str(info.get("compatible") or "")
    if not COMPATIBLE.fullmatch(compatible):
        raise FleetError(422, f"{source.name}: compatible {compatible!r} is not an edgepbx board")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}", version):  # as a heartbeat's version
        raise FleetError(422, f"{source.name}: version {version!r} (letters, digits, '.', '_', '+', '~', '-')")
    if session.scalar(select(Release.id).where(Release.version == version)) is not None:
        raise FleetError(409, f"release {version} is there already")
    sha256 = put_copy(store, source, "releases")
    row = Release(version=version, compatible=compatible, sha256=sha256, size=size,
                  signer=info["signer"][:200], uploaded_by=by, uploaded_at=utcnow())
    session.add(row)
    session.commit()
    return row


def releases(session: Session) -> list[dict]:
    return [{"version": r.version, "compatible": r.compatible, "sha256": r.sha256, "size": r.size, "signer": r.signer,
             "uploaded_by": r.uploaded_by, "uploaded_at": as_utc(r.uploaded_at).isoformat()}
            for r in session.scalars(select(Release).order_by(Release.uploaded_at.desc()))]


# --- rollouts ---------------------------------------------------------------------------------
def start(session: Session, version: str, site_names: list[str] | None, by: str, *, canary: int = 1,
          wave_percent: int = 25, window: str | None = None, deadline_seconds: int = 1800) -> Rollout:
    """A rollout of a release to the named sites (in the order given: the first `canary` are the
    canaries) or to every site (by name). A site already in an unfinished rollout is refused."""
    release = session.scalar(select(Release).where(Release.version == version))
    if release is None:
        raise FleetError(404, f"no release {version}: add it first")
    if window is not None and not WINDOW.fullmatch(window):
        raise FleetError(422, f"window {window!r}: HH:MM-HH:MM (e.g. 01:00-05:00; it may pass midnight)")
    if not 1 <= wave_percent <= 100:
        raise FleetError(422, "a wave is 1 to 100 percent of the sites after the canaries")
    if canary < 0:
        raise FleetError(422, "canaries: 0 or more")
    if not 60 <= deadline_seconds <= 86400:
        raise FleetError(422, "the deadline is 60 s to a day")
    if site_names is None:
        sites = list(session.scalars(select(Site).order_by(Site.name)))
    else:
        sites = [site_by_name(session, name) for name in dict.fromkeys(site_names)]
    if not sites:
        raise FleetError(422, "no sites to update")
    busy = session.execute(select(Site.name, Rollout.id).join(RolloutSite, RolloutSite.site_id == Site.id)
                           .join(Rollout, Rollout.id == RolloutSite.rollout_id)
                           .where(Rollout.state.in_(UNFINISHED), RolloutSite.state.not_in(FINAL),
                                  Site.id.in_([s.id for s in sites]))).first()
    if busy is not None:
        raise FleetError(409, f"site {busy.name} is in rollout {busy.id}, not finished: abort it first")
    rollout = Rollout(release_id=release.id, state="running", window=window, canary=min(canary, len(sites)),
                      wave_percent=wave_percent, deadline_seconds=deadline_seconds, created_by=by, created_at=utcnow())
    session.add(rollout)
    session.flush()
    rest = sites[rollout.canary:]
    per_wave = max(1, math.ceil(len(rest) * wave_percent / 100))
    for index, site in enumerate(sites):
        wave = 0 if index < rollout.canary else 1 + (index - rollout.canary) // per_wave
        session.add(RolloutSite(rollout_id=rollout.id, site_id=site.id, wave=wave, state="waiting"))
    session.commit()
    return rollout


def current(session: Session, rollout_id: int | None) -> Rollout:
    """The rollout asked for, or the newest unfinished one."""
    if rollout_id is not None:
        rollout = session.get(Rollout, rollout_id)
    else:
        rollout = session.scalar(select(Rollout).where(Rollout.state.in_(UNFINISHED)).order_by(Rollout.id.desc()))
    if rollout is None:
        raise FleetError(404, f"no rollout {rollout_id}" if rollout_id is not None else "no rollout under way")
    return rollout


def control(session: Session, rollout_id: int | None, action: str) -> Rollout:
    """pause (nothing more offered; a box already installing finishes), resume (also after a
    halt: the failed boxes stay failed, the waves go on), abort (for good)."""
    rollout = current(session, rollout_id)
    allowed = {"pause": ("running",), "resume": ("paused", "halted"), "abort": UNFINISHED}
    if action not in allowed:
        raise FleetError(422, f"unknown action {action!r}: pause, resume or abort")
    if rollout.state not in allowed[action]:
        raise FleetError(409, f"rollout {rollout.id} is {rollout.state}: it cannot {action}")
    if action == "pause":
        rollout.state = "paused"
    elif action == "resume":
        rollout.state, rollout.reason = "running", None
        _advance(session, rollout, utcnow())
    else:
        rollout.state, rollout.ended_at = "aborted", utcnow()
    session.commit()
    return rollout


def _wave_now(session: Session, rollout: Rollout) -> int | None:
    """The lowest wave with a box not yet finished; None when every box is."""
    return session.scalar(select(func.min(RolloutSite.wave)).where(RolloutSite.rollout_id == rollout.id,
                                                                   RolloutSite.state.not_in(FINAL)))


def _advance(session: Session, rollout: Rollout, now: datetime) -> None:
    session.flush()
    if rollout.state == "running" and _wave_now(session, rollout) is None:
        rollout.state, rollout.ended_at = "done", now


def _halt(session: Session, rollout: Rollout, row: RolloutSite, detail: str, now: datetime) -> None:
    row.state, row.detail, row.finished_at = "failed", detail[:500], now
    if rollout.state in ("running", "paused"):
        site = session.get(Site, row.site_id)
        rollout.state, rollout.reason = "halted", f"{site.name}: {detail}"[:500]


def on_heartbeat(session: Session, site: Site, status: dict, now: datetime | None = None) -> dict | None:
    """Follows the site's box through its rollout from what its heartbeat says, and returns the
    release to offer it (the heartbeat's answer), or None. In the heartbeat's transaction."""
    now = now or utcnow()
    found = session.execute(select(RolloutSite, Rollout, Release).join(Rollout, Rollout.id == RolloutSite.rollout_id)
                            .join(Release, Release.id == Rollout.release_id)
                            .where(RolloutSite.site_id == site.id, Rollout.state.in_(UNFINISHED),
                                   RolloutSite.state.not_in(FINAL))).first()
    if found is None:
        return None
    row, rollout, release = found
    before = row.state
    running = str(status.get("version") or "")
    said = status.get("update") if isinstance(status.get("update"), dict) else None
    said = said if said and said.get("version") == release.version and said.get("state") in BOX_STATES else None
    if running == release.version:
        row.state, row.detail, row.finished_at = "done", f"slot {status.get('slot') or '?'}", now
    elif status.get("compatible") != release.compatible and row.state == "waiting":
        board = status.get("compatible") or "not an image with RAUC"
        row.state, row.detail, row.finished_at = "skipped", f"the box is {board}, the release {release.compatible}", now
    elif said and said["state"] == "failed":
        _halt(session, rollout, row, str(said.get("detail") or "the box says the update failed"), now)
    elif row.state == "installing" and said is None:
        _halt(session, rollout, row, f"came back on {running or 'an unknown version'}, not {release.version} "
                                     f"(rolled back)", now)
    elif said and row.state != "waiting":
        if said["state"] == "installing" and row.installing_at is None:
            row.installing_at = now
        row.state, row.detail = said["state"], str(said.get("detail") or "")[:500]
    if rollout.state == "running" and row.state == "waiting" and row.wave <= (_wave_now(session, rollout) or 0):
        row.state, row.offered_at = "offered", now
    if row.state in FINAL and before not in FINAL:
        # The last boxes of a rollout finish in parallel transactions, each seeing the others
        # unfinished: the rollout's row lock makes one of them see the rest and end it.
        session.flush()
        rollout = session.scalars(select(Rollout).where(Rollout.id == rollout.id).with_for_update()
                                  .execution_options(populate_existing=True)).one()
        _advance(session, rollout, now)
    if rollout.state != "running" or row.state not in OFFERED:
        return None
    return {"rollout": rollout.id, "version": release.version, "sha256": release.sha256, "size": release.size,
            "window": rollout.window}


def check_deadlines(session: Session, now: datetime | None = None) -> int:
    """Boxes that went to install and are not back on the release within the rollout's deadline
    fail, which halts their rollout (run by the alarms' loop). Returns how many failed."""
    now = now or utcnow()
    late = session.execute(select(RolloutSite, Rollout).join(Rollout, Rollout.id == RolloutSite.rollout_id)
                           .where(Rollout.state.in_(UNFINISHED), RolloutSite.state == "installing")).all()
    failed = 0
    for row, rollout in late:
        if as_utc(row.installing_at) + timedelta(seconds=rollout.deadline_seconds) < now:
            _halt(session, rollout, row, f"not back within {rollout.deadline_seconds // 60} min of installing", now)
            failed += 1
    return failed


def for_box(session: Session, site: Site, sha256: str) -> Release:
    """A bundle the site's box may fetch: the one its running rollout offers it."""
    release = session.scalar(select(Release).join(Rollout, Rollout.release_id == Release.id)
                             .join(RolloutSite, RolloutSite.rollout_id == Rollout.id)
                             .where(Release.sha256 == sha256, RolloutSite.site_id == site.id,
                                    Rollout.state == "running", RolloutSite.state.in_(OFFERED)).limit(1))
    if release is None:
        raise FleetError(404, "no such release offered to this site")
    return release


def alarm_keys(session: Session) -> dict[int, list[tuple[str, dict]]]:
    """`rollout_halted` on each site whose failure halted a rollout, while it stays halted."""
    rows = session.execute(select(RolloutSite.site_id, RolloutSite.detail, Rollout.id, Release.version)
                           .join(Rollout, Rollout.id == RolloutSite.rollout_id)
                           .join(Release, Release.id == Rollout.release_id)
                           .where(Rollout.state == "halted", RolloutSite.state == "failed")).all()
    found: dict[int, list[tuple[str, dict]]] = {}
    for site_id, detail, rollout_id, version in rows:
        found.setdefault(site_id, []).append(("rollout_halted", {"rollout": rollout_id, "version": version,
                                                                 "detail": (detail or "")[:200]}))
    return found


def status(session: Session, rollout_id: int | None = None, with_sites: bool = True) -> list[dict]:
    """Rollouts, newest first (or the one asked for): state, counts by state, the wave under way
    and, with_sites, each site's wave and state."""
    query = select(Rollout, Release).join(Release, Release.id == Rollout.release_id).order_by(Rollout.id.desc())
    if rollout_id is not None:
        query = query.where(Rollout.id == rollout_id)
    out = []
    for rollout, release in session.execute(query.limit(50)):
        rows = session.execute(select(RolloutSite, Site.name).join(Site, Site.id == RolloutSite.site_id)
                               .where(RolloutSite.rollout_id == rollout.id)
                               .order_by(RolloutSite.wave, Site.name)).all()
        counts: dict[str, int] = {}
        for row, _ in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        entry = {"id": rollout.id, "version": release.version, "compatible": release.compatible,
                 "state": rollout.state, "reason": rollout.reason, "window": rollout.window,
                 "canary": rollout.canary, "wave_percent": rollout.wave_percent,
                 "deadline_seconds": rollout.deadline_seconds, "wave": _wave_now(session, rollout),
                 "waves": 1 + max((row.wave for row, _ in rows), default=0), "sites_total": len(rows),
                 "counts": counts, "created_by": rollout.created_by,
                 "created_at": as_utc(rollout.created_at).isoformat(),
                 "ended_at": as_utc(rollout.ended_at).isoformat() if rollout.ended_at else None}
        if with_sites:
            entry["sites"] = [{"site": name, "wave": row.wave, "state": row.state, "detail": row.detail or ""}
                              for row, name in rows]
        out.append(entry)
    if rollout_id is not None and not out:
        raise FleetError(404, f"no rollout {rollout_id}")
    return out
