"""The site credential a box got at enrolment, under data_dir (mode 0600), and `edgepbx enroll`."""
from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..cdr import now
from ..files import write_private_json
from ..config import Config
from .answers import enrolment
from .backups import Restored, restore_from_portal
from .client import PortalClient, Trust

FILE_NAME = "cloud.json"


@dataclass
class CloudLink:
    portal_url: str
    site: str
    credential: str
    enrolled_at: str
    backup_key: str | None = None  # base64: what the box seals its backups to the portal with


def link_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load_link(data_dir: Path) -> CloudLink | None:
    """The stored link, or None when the box is not enrolled."""
    path = link_path(data_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return CloudLink(**{k: data[k] for k in ("portal_url", "site", "credential", "enrolled_at")},
                     backup_key=data.get("backup_key"))


def save_link(data_dir: Path, link: CloudLink) -> None:
    write_private_json(link_path(data_dir), asdict(link))


def enroll(cfg: Config, portal_url: str, code: str, say: Callable[[str], None] = lambda _: None,
           restore: bool | None = None) -> tuple[CloudLink, Restored | None]:
    """Exchanges a one-time code for the site's credential and stores it; raises PortalUrlRefused
    (http without cloud.allow_http), PortalRefused (bad or used code), PortalUnreachable, or
    BackupRefused. When the site has a backup (a replacement code) and this box has no
    extensions of its own (a first-boot config) or `restore` is True, the backup is put on the
    box first, and what was restored is returned beside the link."""
    client = PortalClient(portal_url, trust=Trust.of(cfg.cloud))
    try:
        answer = enrolment(client.request("POST", "/api/v1/enroll", {"code": code, "hostname": socket.gethostname()}))
        say(f"enrolled as site {answer.site}")
        restored = None
        wanted = restore if restore is not None else not cfg.extensions
        if answer.backup and answer.backup_key and wanted:
            client.credential = answer.credential
            restored = restore_from_portal(cfg, client, answer.backup_key, answer.backup, say)
        elif answer.backup and answer.backup_key:
            say(f"the site has a backup of {answer.backup.created_at[:19].replace('T', ' ')} UTC; this box keeps its "
                f"own office config ({len(cfg.extensions)} extensions): enrol with --restore to replace it")
    finally:
        client.close()
    link = CloudLink(portal_url=portal_url.rstrip("/"), site=answer.site, credential=answer.credential,
                     enrolled_at=now(), backup_key=answer.backup_key)
    save_link((restored.config if restored else cfg).data_dir, link)
    return link, restored
