"""Turns a requested file name into the phone's configuration, rendered on the fly.

`resolve()` is the one entry point for TFTP and HTTP alike: a per-MAC file is rendered only for a
MAC the office config lists (with its vendor); a common file (no secrets) for any phone; anything
else is None, i.e. "not found".
"""
from __future__ import annotations

import posixpath
import zoneinfo
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2
import markupsafe

from appliance.config import Config
from appliance.tls import box_certificate

from appliance.firmware_cache import may_upgrade, pinned

from .catalog import Vendor, catalog, vendor_by_oui
from .lan import office_lan
from .macs import normalise_mac
from .registry import Device, Registry

DTMF_PAYLOAD = 101
LANGUAGES = {"english": ("en", "English_United_States"), "russian": ("ru", "Russian_Russia"),
             "german": ("de", "German_Germany"), "french": ("fr", "French_France")}
CONTENT_TYPES = {"ini": "text/plain", "fanvil": "text/plain", "gs_xml": "application/xml",
                 "polycom_xml": "application/xml", "cisco_xml": "application/xml", "snom_xml": "application/xml"}


def one_line(value: object) -> object:
    """A value in a `key = value` file: control characters (a newline would start a key of its
    own, e.g. one pointing the phone's provisioning server elsewhere) become spaces."""
    if isinstance(value, str):
        return "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in value)
    return value


class XmlAttributeLines(markupsafe.Markup):
    """Text the box made itself (its certificate), escaped for an XML attribute with its line
    breaks kept as `&#10;` (a parser would fold a literal one into a space): xml_text leaves it be."""

    @classmethod
    def of(cls, text: str) -> XmlAttributeLines:
        return cls(str(markupsafe.escape(text)).replace("\n", "&#10;"))


def xml_text(value: object) -> object:
    """A value in an XML file: escaped (&, <, >, quotes; once: `| e` in a template already did),
    control characters made spaces as above, and no "--" (it would end an XML comment)."""
    if not isinstance(value, str) or isinstance(value, XmlAttributeLines):
        return value
    escaped = value if isinstance(value, markupsafe.Markup) else markupsafe.escape(value)
    return markupsafe.Markup(one_line(str(escaped)).replace("--", "- -"))


def template_environment(vendor: Vendor) -> jinja2.Environment:
    """Each vendor's templates escape every value for their own file format, whatever a value
    holds (the config refuses control characters too; this is the second wall)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(vendor.folder)), trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined, autoescape=False,
                              finalize=xml_text if vendor.format.endswith("xml") else one_line)


@dataclass
class Rendered:
    body: bytes
    content_type: str
    vendor: str
    kind: str              # "device" or "common"
    device: Device | None  # set for per-MAC files


class Renderer:
    def __init__(self, cfg: Config, registry: Registry):
        self.cfg = cfg
        self.registry = registry
        self.env = {name: template_environment(v) for name, v in catalog().items()}
        self.office = self._office_context()
        self.lan = office_lan(cfg)

    # -- the context every template gets ------------------------------------------------------

    def _office_context(self) -> dict:
        cfg = self.cfg
        server = cfg.network.bind
        offset = datetime.now(zoneinfo.ZoneInfo(cfg.timezone)).utcoffset()
        seconds = int(offset.total_seconds()) if offset else 0
        sign = "+" if seconds >= 0 else "-"
        hours, minutes = divmod(abs(seconds) // 60, 60)
        lang_code, polycom_lang = LANGUAGES.get(cfg.language.lower(), ("en", "English_United_States"))
        numbers = [e.number for e in cfg.extensions] or ["100"]
        length = max(set(map(len, numbers)), key=[len(n) for n in numbers].count)
        firsts = sorted({n[0] for n in numbers if len(n) == length})
        first = firsts[0] if len(firsts) == 1 else f"[{''.join(firsts)}]"
        ext_x = first + "x" * (length - 1)
        pickup, directed = cfg.features.pickup_code, cfg.features.directed_pickup_prefix
        prov = cfg.provisioning
        base = f"http://{server}:{prov.http_port}" if prov.http_port else f"tftp://{server}:{prov.tftp_port}"
        return {
            "server": server, "sip_port": cfg.network.sip_port, "http_port": prov.http_port,
            "profile_base_url": base, "ntp_server": server, "dtmf_payload": DTMF_PAYLOAD,
            "pickup_code": pickup, "directed_pickup_prefix": directed, "extension_pattern_x": ext_x,
            # Cisco/Polycom digit map: pickup and extensions dial at once, the memo's external rules after.
            "digit_map": f"({pickup}|{pickup}#|{ext_x}|{directed}{ext_x}|8xxxxxxxxxx|[2-7]xxxxxx|810x.T|x.T)",
            "tz_name": cfg.timezone, "utc_offset_seconds": seconds,
            "utc_offset_hours": f"{sign}{hours}" + (f":{minutes:02d}" if minutes else ""),
            "tz_posix": f"<{sign}{hours:02d}{minutes:02d}>{'-' if sign == '+' else '+'}{hours}" + (f":{minutes:02d}" if minutes else ""),
            "cisco_tz": f"GMT{sign}{hours:02d}:{minutes:02d}", "snom_tz": f"GMT{sign}{hours}",
            "fanvil_tz": seconds // 3600, "language": cfg.language, "language_code": lang_code,
            "polycom_language": polycom_lang,
        }

    def _transport(self, vendor: Vendor) -> dict:
        """UDP and RTP, or, with provisioning.encryption and a template that can, SIP over TLS to
        network.tls_port with SRTP compulsory (the box gives such a phone SRTP on every call)."""
        net = self.cfg.network
        encryption = self.cfg.provisioning.encryption and vendor.encryption and bool(net.tls_port)
        if not encryption:
            return {"encryption": False, "self_signed_certificate": False, "box_certificate_pem": ""}
        certificate = box_certificate(self.cfg)
        return {"encryption": True, "sip_port": net.tls_port, "self_signed_certificate": certificate.self_signed,
                # public, not secret: a phone that trusts only listed CAs (Poly) is given the box's own
                "box_certificate_pem": XmlAttributeLines.of(certificate.cert.read_text().strip())
                if certificate.self_signed else ""}

    def _keys(self, device: Device) -> list[dict]:
        phone, own = device.phone, device.extension.number
        capacity = catalog()[phone.vendor].models[phone.model]["keys"]
        if phone.keys is not None:
            return [{"type": k.type, "value": k.value, "label": k.label} for k in phone.keys][:capacity]
        keys = [{"type": "blf", "value": e.number, "label": e.name}
                for e in self.cfg.extensions if e.number != own][:max(0, capacity - 1)]
        if len(keys) < capacity:
            keys.append({"type": "transfer", "value": "", "label": "Transfer"})
        return keys

    def _pinned_firmware(self, vendor: Vendor, model: str | None, device: Device | None) -> str | None:
        """The URL of the firmware the portal pinned for the phone's model, once the box has it and
        the phone's upgrade wave came (appliance/cloud/upgrades.py); else None. Only a phone's own
        file carries it: a common file would upgrade every phone of the model at once."""
        pin = pinned(self.cfg.data_dir).get(f"{vendor.name}/{model}") if model and device else None
        if pin and may_upgrade(self.cfg.data_dir, device.mac, str(pin["version"])):
            return f"{self.office['profile_base_url']}/firmware/{pin['file']}"
        return None

    def _firmware(self, vendor: Vendor, model: str | None) -> tuple[str | None, str | None, str | None]:
        """(URL, file name, version) of the model's file in the firmware folder (its name's stem
        as the version), else (None, None, None); a model the portal pins gets none from here."""
        if model and f"{vendor.name}/{model}" in pinned(self.cfg.data_dir):
            return None, None, None
        folder = self.cfg.provisioning.firmware_dir
        if not model or folder is None:
            return None, None, None
        name = vendor.models[model].get("firmware")
        if name and (Path(folder) / name).is_file():
            return f"{self.office['profile_base_url']}/firmware/{name}", name, Path(name).stem
        return None, None, None

    # -- resolving a request --------------------------------------------------------------

    def resolve(self, requested: str, client: str | None = None, user_agent: str | None = None) -> Rendered | None:
        name = posixpath.basename(requested.replace("\\", "/").strip("/"))
        if not name:
            return None
        common: tuple[Vendor, object, dict] | None = None
        for vendor in catalog().values():
            for rule, groups in vendor.matches(name):
                if rule.kind == "device":
                    mac = normalise_mac(groups.get("mac", ""))
                    device = self.registry.by_mac(mac) if mac else None
                    # Several vendors ask for "<mac>.cfg": enrol only under the vendor its OUI names.
                    oui_vendor = vendor_by_oui(mac) if mac else None
                    if device is None and client is not None and oui_vendor is vendor:
                        model = vendor.model_named(groups.get("model", "")) or next(iter(vendor.models))
                        device = self.registry.enrol(mac, vendor.name, model, client, self.lan)
                    if device is not None and device.phone.vendor == vendor.name:
                        return self._render(vendor, rule.template, device, groups, user_agent)
                elif common is None:
                    common = (vendor, rule, groups)
        if common is not None:
            vendor, rule, groups = common
            return self._render(vendor, rule.template, None, groups, user_agent)
        return None

    def _family(self, vendor: Vendor, device: Device | None, user_agent: str | None) -> str | None:
        """The template family for the firmware the phone runs: as this request's User-Agent says,
        else as its last fetch over HTTP said, else the newest (docs: firmware_templates/README.md)."""
        reported = vendor.firmware_in(user_agent)
        if reported is None and device is not None:
            reported = vendor.firmware_in(self.registry.last_user_agent(device.mac))
        return vendor.family_of(reported[1] if reported else None)

    def _render(self, vendor: Vendor, template: str, device: Device | None, groups: dict,
                user_agent: str | None = None) -> Rendered:
        ctx = dict(self.office)
        ctx.update(self._transport(vendor), family=self._family(vendor, device, user_agent))
        model = device.phone.model if device else None
        if model is None and "model" in groups:
            model = vendor.model_named(groups["model"])
        if model is None and "hwid" in groups:
            model = next((m for m, meta in vendor.models.items() if meta.get("hwid") == groups["hwid"]), None)
        firmware_url, firmware_file, firmware_version = self._firmware(vendor, model)
        ctx.update(model=model, hwid=groups.get("hwid", ""), firmware_url=firmware_url, firmware_file=firmware_file,
                   firmware_version=firmware_version, phone_firmware_url=self._pinned_firmware(vendor, model, device),
                   model_file=(model or groups.get("model", "")).lower())
        if device is not None:
            ext = device.extension
            ctx.update(mac=device.mac, mac_upper=device.mac.upper(), admin_password=device.admin_password,
                       keys=self._keys(device),
                       ext={"number": ext.number, "name": ext.name, "password": self.registry.passwords[ext.number]})
        body = self.env[vendor.name].get_template(template).render(ctx)
        return Rendered(body.encode(), CONTENT_TYPES.get(vendor.format, "text/plain"), vendor.name,
                        "device" if device else "common", device)
