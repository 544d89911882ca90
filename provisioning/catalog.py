"""The phone vendors' metadata from firmware_templates/<vendor>/meta.yaml, loaded once."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

TEMPLATES = Path(__file__).resolve().parent.parent / "firmware_templates"


@dataclass(frozen=True)
class FileRule:
    pattern: re.Pattern
    kind: str      # "device": per-MAC, carries secrets; "common": no secrets, any phone
    template: str


@dataclass(frozen=True)
class Family:
    """Firmware versions whose configuration keys one template branch fits: the family number
    (a field of the version) below `below`, or any for the last."""
    name: str
    below: int | None


@dataclass(frozen=True)
class Vendor:
    name: str
    display: str
    ouis: tuple[str, ...]
    dhcp_vendor_class: tuple[str, ...]
    user_agent: tuple[str, ...]
    format: str
    files: tuple[FileRule, ...]
    key_types: tuple[str, ...]
    models: dict[str, dict]
    mac_case: str
    folder: Path
    notify: dict[str, str]  # action (resync, reboot) -> the SIP NOTIFY Event header value
    encryption: bool = False  # its template can set SIP over TLS and SRTP (provisioning.encryption)
    firmware_pattern: re.Pattern | None = None  # the version in a User-Agent, groups `version` and `family`
    families: tuple[Family, ...] = ()  # oldest first; the newest fits a phone whose version is unknown

    def firmware_in(self, user_agent: str | None) -> tuple[str, int] | None:
        """(version, family number) a phone reports in its User-Agent, e.g. ("108.86.0.70", 86)."""
        found = self.firmware_pattern.search(user_agent) if self.firmware_pattern and user_agent else None
        return (found.group("version"), int(found.group("family"))) if found else None

    def family_of(self, family_number: int | None) -> str | None:
        """The template family for a firmware family number (None: the newest)."""
        if not self.families:
            return None
        if family_number is not None:
            for family in self.families:
                if family.below is not None and family_number < family.below:
                    return family.name
        return self.families[-1].name

    def matches(self, filename: str) -> list[tuple[FileRule, dict[str, str]]]:
        """Every rule whose pattern matches the whole file name (case-insensitive), with its groups."""
        out = []
        for rule in self.files:
            found = rule.pattern.fullmatch(filename)
            if found:
                out.append((rule, {k: v for k, v in found.groupdict().items() if v is not None}))
        return out

    def model_named(self, name: str) -> str | None:
        return next((m for m in self.models if m.lower() == name.lower()), None)


def _load(folder: Path) -> Vendor:
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    return Vendor(
        name=meta["vendor"], display=meta["display"], ouis=tuple(o.upper() for o in meta["ouis"]),
        dhcp_vendor_class=tuple(meta.get("dhcp_vendor_class", [])), user_agent=tuple(meta.get("user_agent", [])),
        format=meta["format"],
        files=tuple(FileRule(re.compile(f["pattern"], re.IGNORECASE), f["kind"], f["template"]) for f in meta["files"]),
        key_types=tuple(meta["key_types"]), models={str(k): v for k, v in meta["models"].items()},
        mac_case=meta.get("mac_case", "lower"), folder=folder,
        notify=dict(meta.get("notify") or {"resync": "check-sync;reboot=false", "reboot": "check-sync;reboot=true"}),
        encryption=bool(meta.get("encryption", False)),
        firmware_pattern=re.compile(meta["firmware_in_user_agent"]) if meta.get("firmware_in_user_agent") else None,
        families=tuple(Family(str(f["name"]), f.get("below")) for f in meta.get("families", [])))


@functools.cache
def catalog() -> dict[str, Vendor]:
    return {v.name: v for v in (_load(d) for d in sorted(TEMPLATES.iterdir()) if (d / "meta.yaml").exists())}


def vendor_by_oui(mac: str) -> Vendor | None:
    prefix = mac[:6].upper()
    return next((v for v in catalog().values() if prefix in v.ouis), None)


def vendor_by_hint(text: str) -> Vendor | None:
    """From a DHCP option 60 vendor class or a User-Agent."""
    lowered = text.lower()
    for vendor in catalog().values():
        if any(h.lower() in lowered for h in vendor.dhcp_vendor_class + vendor.user_agent):
            return vendor
    return None
