"""Office configs pushed from the portal: versioned per site, checked with the box's own
validator before they are accepted, pulled by the box, and its verdict recorded."""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path

import yaml
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .db import as_utc
from .fleet import FleetError, site_by_name
from .models import Site, SiteConfig, utcnow

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


def push_config(session: Session, site_name: str, text: str, check: bool = True) -> int:
    """Stores a new version for the site's box to pull; refuses one that does not validate.
    `check=False` leaves the checking to the box (a box newer than the portal knows more keys)."""
    site = site_by_name(session, site_name)
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise FleetError(413, f"a config may be at most {MAX_CONFIG_BYTES} bytes")
    if check and (errors := validation_errors(text)):
        raise FleetError(422, "the config does not validate:\n" + "\n".join(errors))
    for _ in range(3):  # two operators pushing at once: the unique (site, version) decides
        version = (session.scalar(select(func.max(SiteConfig.version)).where(SiteConfig.site_id == site.id)) or 0) + 1
        session.add(SiteConfig(site_id=site.id, version=version, text=text,
                               sha256=hashlib.sha256(text.encode()).hexdigest()))
        try:
            session.commit()
            return version
        except Exception:  # noqa: BLE001 - IntegrityError from either database driver
            session.rollback()
    raise FleetError(409, "another config was pushed at the same moment; push again")


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
             "reported_at": as_utc(r.reported_at).isoformat() if r.reported_at else None} for r in rows]


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
