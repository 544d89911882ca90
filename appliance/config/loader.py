"""Loading an office config: its text read as YAML nodes (nodes.py), each section read
(sections.py), the checks across sections (checks.py), then, on the box, the files it names
(disk.py). Every error comes back at once as FILE:LINE: message."""
from __future__ import annotations

from pathlib import Path

from . import disk, sections
from .checks import check_call_capacity, check_firmware_dir, check_ports
from .fields import FileRef
from .nodes import ConfigError, InvalidConfig, Reader, compose
from .schema import TOP_LEVEL_KEYS, Config
from .sections import CALLS, RECORDING


def load(path: str | Path) -> Config:
    """Loads and validates a config file on the box; raises InvalidConfig listing every error."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidConfig([ConfigError(shown, 0, f"cannot read config: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise InvalidConfig([ConfigError(shown, 1, "config is not UTF-8 text")]) from None
    return parse(text, path, on_box=True)


def parse(text: str, path: Path, on_box: bool = True) -> Config:
    """Validates a config's text as if it were the file `path` (relative paths in it are taken
    from that file's folder). `on_box=False` skips the checks against the box's disk (the files
    it names), which is what a portal without those files can run."""
    shown = str(path)
    root = compose(text, shown)
    r = Reader(shown)
    files: list[FileRef] = []
    cfg = Config(path=path.resolve())
    top = r.mapping(root, TOP_LEVEL_KEYS, "config")
    data_dir = r.text(top["data_dir"][1], "data_dir") if "data_dir" in top else "./var"
    # Relative to the config file, so the same file works whatever the current directory (first:
    # the sounds the portal sent live under it).
    cfg.data_dir = (path.resolve().parent / (data_dir or "./var")).resolve()
    if "site" in top:
        sections.read_site(r, top["site"][1], cfg)
    if "features" in top:
        sections.read_features(r, top["features"][1], cfg, files)
    firmware_dir = sections.read_provisioning(r, top["provisioning"][1], cfg) if "provisioning" in top else None
    if "network" in top:
        sections.read_network(r, top["network"][1], cfg.network)
    if "recording" in top:
        sections.read_simple(r, top["recording"][1], "recording", cfg, RECORDING)
    if "calls" in top:
        sections.read_simple(r, top["calls"][1], "calls", cfg, CALLS)
    if "security" in top:
        sections.read_security(r, top["security"][1], cfg, files)
    if "cloud" in top:
        sections.read_cloud(r, top["cloud"][1], cfg, files)
    if "logging" in top:
        sections.read_logging(r, top["logging"][1], cfg)
    if "extensions" in top:
        cfg.extensions = sections.read_extensions(r, top["extensions"][1])
    if "trunks" in top:
        cfg.trunks = sections.read_trunks(r, top["trunks"][1])
    if "dialplan" in top:
        sections.read_dialplan(r, top["dialplan"][1], cfg)
    if "inbound" in top:  # after calls (its default timeout) and extensions (who may ring)
        sections.read_inbound(r, top["inbound"][1], cfg, files)
    network = top["network"][1] if "network" in top else root
    check_ports(r, network, cfg)
    check_call_capacity(r, network, cfg)
    if firmware_dir is not None:
        check_firmware_dir(r, firmware_dir, cfg)
    if on_box:
        disk.check_files(r, files)
    else:
        disk.accept_files(files)
    if r.errors:
        raise InvalidConfig(r.errors)
    return cfg
