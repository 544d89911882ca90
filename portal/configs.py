"""Office configs pushed from the portal: versioned per site, checked with the box's own
validator before they are accepted, pulled by the box, and its verdict recorded."""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path

import yaml
from markupsafe import Markup, escape
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import wake
from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import CallbackRequest, Capture, PhoneAction, Site, SiteConfig, utcnow

MAX_CONFIG_BYTES = 1 << 20


def validation_errors(text: str) -> list[str]:
    """The errors `edgepbx check` would print for this config (as `config:LINE: message`), but
    for the files it names (greetings, certificates): those are on the box, which checks them."""
    from appliance.config import InvalidConfig, parse

    try:
        parse(text, Path("config"), on_box=False)
    except InvalidConfig as exc:
        return [str(e) for e in exc.errors]
    return []


def push_config(session: Session, site_name: str, text: str, check: bool = True, author: str | None = None,
                summary: str | None = None, base: int | None = None) -> int:
    """Stores a new version for the site's box to pull and wakes the box; refuses one that does
    not validate. `check=False` leaves the checking to the box (a box newer than the portal knows
    more keys). `base`: the version the editor started from; when another was saved since, 409
    (two people editing at once: the second is told, the first's change stays)."""
    site = site_by_name(session, site_name)
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise FleetError(413, f"a config may be at most {MAX_CONFIG_BYTES} bytes")
    if check and (errors := validation_errors(text)):
        raise FleetError(422, "the config does not validate:\n" + "\n".join(errors))
    for _ in range(1 if base is not None else 3):  # two saves at once: the unique (site, version) decides
        latest = latest_version(session, site)
        if base is not None and latest != base:
            raise FleetError(409, f"version {latest} was saved after the one this change started from ({base})")
        session.add(SiteConfig(site_id=site.id, version=latest + 1, text=text, author=author, summary=summary,
                               sha256=hashlib.sha256(text.encode()).hexdigest()))
        wake.notify(session, site.id)
        try:
            session.commit()
            return latest + 1
        except Exception:  # noqa: BLE001 - IntegrityError from either database driver
            session.rollback()
    raise FleetError(409, "another config was saved at the same moment; save again")


def change_said(do: str, **values: object) -> str:
    """What a version changed, kept as data (`{"do": "add", "number": "105", "name": ...}`) so each
    reader sees it in their own language (i18n `change_add`, ...). Names are at most 64 characters:
    it fits the 200 of the column."""
    return json.dumps({"do": do} | values, ensure_ascii=False)


def change_of(summary: str | None) -> dict:
    """A version's change as data; a version saved as text says so."""
    try:
        said = json.loads(summary) if summary else None
    except ValueError:
        said = None
    return said if isinstance(said, dict) and isinstance(said.get("do"), str) else {"do": "text"}


def change_words(change: dict, words: dict[str, str], html: bool = False) -> str:
    """A version's change (change_of) said in the words of one language (portal/i18n.py); `html`:
    as markup for a page, in which the names people typed are marked translate="no"."""
    on = lambda flag: words["word_on"] if flag else words["word_off"]  # noqa: E731
    said = words.get("change_" + change["do"], words["change_text"])
    name = str(change.get("name", ""))
    if html:
        said, name = Markup(escape(said)), Markup('<span translate="no">{}</span>').format(name)
    return said.format(number=change.get("number", ""), name=name, version=change.get("version", ""),
                       pickup=on(change.get("pickup")), recording=on(change.get("recording")),
                       keep_days=change.get("keep_days", ""), slot=words.get(f"slot_{change.get('slot')}", ""),
                       hours=change.get("hours", ""), holidays=change.get("holidays", ""))


def latest_version(session: Session, site: Site) -> int:
    return session.scalar(select(func.max(SiteConfig.version)).where(SiteConfig.site_id == site.id)) or 0


def record_box_config(session: Session, site: Site, text: str) -> int:
    """The config the box runs, sent by the box when it was written on site (not pulled from
    here): kept as the newest version, already applied, so the configurator edits what the
    office really has. The same text as the newest version is not stored twice."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise FleetError(413, f"a config may be at most {MAX_CONFIG_BYTES} bytes")
    sha = hashlib.sha256(text.encode()).hexdigest()
    newest = desired_config(session, site)
    if newest is not None and newest.sha256 == sha:
        return newest.version
    if newest is not None and newest.state == "pending":  # saved here, not yet pulled: it is the newer
        raise FleetError(409, f"version {newest.version} saved in the portal waits for this box")
    version = (newest.version if newest else 0) + 1
    session.add(SiteConfig(site_id=site.id, version=version, text=text, sha256=sha, author="box",
                           summary=change_said("box"), state="applied", reported_at=utcnow()))
    try:
        session.commit()
    except Exception:  # noqa: BLE001 - a save in the portal at the same moment: it wins, the box pulls it
        session.rollback()
        raise FleetError(409, "a config was saved in the portal at the same moment; it is the newer one") from None
    return version


def restore(session: Session, site_name: str, version: int, author: str, base: int | None = None) -> int:
    """Version `version`'s text saved again as the newest (checked again: the portal may know
    more than when it was saved)."""
    site = site_by_name(session, site_name)
    old = session.scalar(select(SiteConfig).where(SiteConfig.site_id == site.id, SiteConfig.version == version))
    if old is None:
        raise FleetError(404, f"no config version {version} for this site")
    return push_config(session, site_name, old.text, author=author, summary=change_said("restore", version=version),
                       base=base)


def has_work(session: Session, site_id: int, known_version: int | None) -> bool:
    """Whether the box, which has config `known_version`, has anything to collect now: a newer
    config, a call-back, a phone action or a capture (one query: each held box asks it every 25 s)."""
    newest = select(func.max(SiteConfig.version)).where(SiteConfig.site_id == site_id).scalar_subquery()
    pending = [select(model.id).where(model.site_id == site_id, model.state == "pending").exists()
               for model in (CallbackRequest, PhoneAction, Capture)]
    row = session.execute(select(newest, *pending)).one()
    return (row[0] or 0) > (known_version or 0) or any(row[1:])


def desired_config(session: Session, site: Site) -> SiteConfig | None:
    return session.scalar(select(SiteConfig).where(SiteConfig.site_id == site.id)
                          .order_by(SiteConfig.version.desc()).limit(1))


def report(session: Session, site: Site, version: int, applied: bool, errors: list[str]) -> None:
    result = session.execute(update(SiteConfig).where(SiteConfig.site_id == site.id, SiteConfig.version == version)
                             .values(state="applied" if applied else "rejected",
                                     errors=json.dumps([str(e)[:500] for e in errors][:100]) if errors else None,
                                     reported_at=utcnow()))
    if result.rowcount != 1:
        session.rollback()
        raise FleetError(404, f"no config version {version} for this site")
    session.commit()


def config_rows(session: Session, site_name: str) -> list[dict]:
    """The site's versions, newest first, without their text (it holds passwords)."""
    site = site_by_name(session, site_name)
    rows = session.scalars(select(SiteConfig).where(SiteConfig.site_id == site.id).order_by(SiteConfig.version.desc()))
    return [{"version": r.version, "sha256": r.sha256, "created_at": as_utc(r.created_at).isoformat(),
             "state": r.state, "errors": json.loads(r.errors) if r.errors else [],
             "reported_at": as_utc(r.reported_at).isoformat() if r.reported_at else None,
             "author": r.author, "change": change_of(r.summary)} for r in rows]


SECRET_KEY = re.compile(r"(?i)password|secret|token|key")
MASK = "••••"


def masked(text: str) -> str:
    """The config with the value of every password, secret, token and key field replaced: what an
    operator's diff may show. Found in the YAML's own node tree, so quoted keys, flow mappings
    (`{password: x}`) and block scalars are masked alike; a text that is not YAML is not shown."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return "(this version is not valid YAML; it is not shown, as it may hold secrets)\n"
    spans: list[tuple[int, int]] = []

    def walk(node: yaml.Node | None) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and SECRET_KEY.search(str(key.value)) \
                        and not isinstance(value, (yaml.MappingNode, yaml.SequenceNode)):
                    spans.append((value.start_mark.index, value.end_mark.index))
                else:
                    walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
    walk(root)
    for start, end in sorted(spans, reverse=True):
        value = text[start:end]
        keep = value[len(value.rstrip()):]  # a block scalar's span ends with its line break: kept
        text = text[:start] + MASK + keep + text[end:]
    return text


def version_diffs(session: Session, site_name: str) -> list[dict]:
    """config_rows, each with a unified diff (secrets masked) against the version before it."""
    site = site_by_name(session, site_name)
    texts = dict(session.execute(select(SiteConfig.version, SiteConfig.text).where(SiteConfig.site_id == site.id)).all())
    rows = config_rows(session, site_name)
    for row in rows:
        before = masked(texts.get(row["version"] - 1, "")).splitlines(keepends=True)
        after = masked(texts[row["version"]]).splitlines(keepends=True)
        row["diff"] = "".join(difflib.unified_diff(before, after, f"v{row['version'] - 1}", f"v{row['version']}"))
    return rows
