"""The site credential a box got at enrolment, under data_dir (mode 0600), and `edgepbx enroll`."""
from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cdr import now
from ..files import write_private_json
from ..config import Config
from .answers import enrolment
from .client import PortalClient, Trust

FILE_NAME = "cloud.json"


@dataclass
class CloudLink:
    portal_url: str
    site: str
    credential: str
    enrolled_at: str


def link_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load_link(data_dir: Path) -> CloudLink | None:
    """The stored link, or None when the box is not enrolled."""
    path = link_path(data_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return CloudLink(**{k: data[k] for k in ("portal_url", "site", "credential", "enrolled_at")})


def enroll(cfg: Config, portal_url: str, code: str) -> CloudLink:
    """Exchanges a one-time code for the site's credential and stores it; raises PortalUrlRefused
    (http without cloud.allow_http), PortalRefused (bad or used code) or PortalUnreachable."""
    client = PortalClient(portal_url, trust=Trust.of(cfg.cloud))
    try:
        answer = enrolment(client.request("POST", "/api/v1/enroll", {"code": code, "hostname": socket.gethostname()}))
    finally:
        client.close()
    link = CloudLink(portal_url=portal_url.rstrip("/"), site=answer.site, credential=answer.credential,
                     enrolled_at=now())
    write_private_json(link_path(cfg.data_dir), asdict(link))
    return link
