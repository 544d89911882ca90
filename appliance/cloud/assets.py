"""The sounds a config from the portal names by their content (greetings, music on hold, as
"sha256:<hash>"): fetched before the config is checked, kept only when their bytes hash to their
name, stored as data_dir/assets/<hash>.wav, and dropped once no config the box may go back to
names them."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..config import ASSETS_DIR, Config, InvalidConfig, parse
from ..config.disk import file_sha256
from ..files import write_private
from .client import PortalClient, PortalRefused

log = logging.getLogger("edgepbx.cloud")

MAX_SOUND_BYTES = 24 << 20  # the portal takes sounds up to 10 minutes: 19.2 MB as 16 kHz 16-bit WAV


def named_sounds(cfg: Config, text: str) -> set[str]:
    """The hashes `text` names, read with the box's own parser (a config it cannot read names
    none: its check will say why)."""
    try:
        return parse(text, cfg.path, on_box=False).assets
    except InvalidConfig:
        return set()


def fetch_sounds(client: PortalClient, cfg: Config, text: str) -> list[str]:
    """Fetches each sound `text` names that the box lacks; the errors that keep the config off
    the box (the portal has no such file, or sent other bytes). PortalUnreachable is raised: the
    next round tries again."""
    folder = cfg.data_dir / ASSETS_DIR
    errors = []
    for sha256 in sorted(named_sounds(cfg, text)):
        path = folder / f"{sha256}.wav"
        if path.is_file() and file_sha256(path) == sha256:
            continue
        try:
            data = client.download(f"/api/v1/assets/{sha256}", MAX_SOUND_BYTES)
        except PortalRefused as exc:
            if exc.status == 401:
                raise
            errors.append(f"sound sha256:{sha256}: the portal does not give it ({exc})")
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            errors.append(f"sound sha256:{sha256}: the portal sent {len(data)} bytes of something else")
            continue
        write_private(path, data)
        log.info("sound sha256:%s fetched from the portal (%d bytes)", sha256[:12], len(data))
    return errors


def drop_unused_sounds(cfg: Config, *texts: str) -> None:
    """Deletes the sounds none of `texts` (the config now installed and the one kept as
    .previous) names: a box whose greeting changes weekly does not fill its flash."""
    keep = set().union(*(named_sounds(cfg, text) for text in texts))
    folder: Path = cfg.data_dir / ASSETS_DIR
    for path in folder.glob("*.wav") if folder.is_dir() else ():
        if path.stem not in keep:
            path.unlink(missing_ok=True)
