"""The office config: one YAML file, validated, every error reported as FILE:LINE: message.

Validation walks PyYAML's node tree (not the loaded dict) so each error carries the line of
the offending key or value, duplicate keys are caught (PyYAML would silently keep the last),
and scalar values keep their original text ("0101" stays "0101", not octal 65).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .countryplans import COUNTRIES

EXTENSION_NUMBER = re.compile(r"^[0-9]{2,6}$")
# The feature server is one process on the PJSIP edgepbx builds (scripts/pjsip/config_site.h:
# PJSUA_MAX_CALLS 1024 legs). A bridged call holds two legs, each an RTP and an RTCP port.
MAX_CONCURRENT_CALLS = 500
DEFAULT_CONCURRENT_CALLS = 60
RTP_PORTS_PER_CALL = 4
RTP_PORTS_SPARE = 16  # ring groups, pickups and transfers hold legs beyond two per call


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class InvalidConfig(Exception):
    """Raised with every error found, not just the first, so an installer fixes them in one go."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


VENDORS = ("yealink", "grandstream", "polycom", "cisco", "snom", "fanvil")
KEY_TYPES = ("blf", "speed_dial", "transfer", "pickup")


@dataclass
class PhoneKey:
    type: str   # one of KEY_TYPES
    value: str  # extension or number (blf, speed_dial), target for transfer, code for pickup
    label: str


@dataclass
class Phone:
    mac: str     # 12 lowercase hex digits
    vendor: str  # one of VENDORS
    model: str
    keys: list[PhoneKey] | None  # None: BLF for each colleague, then a transfer key
    line: int


PERMISSIONS = ("internal", "city", "long_distance", "international", "premium")  # each allows what the previous does
DEFAULT_PERMISSIONS = "long_distance"  # local, national and mobile numbers; international and premium opt-in


@dataclass
class Extension:
    number: str
    name: str
    password: str | None  # None: generated once and kept under data_dir (see credentials.py)
    line: int
    phone: Phone | None = None
    permissions: str = "long_distance"  # DEFAULT_PERMISSIONS
    pickup_group: str = "office"  # "0" picks up calls ringing on the phones of the same group


@dataclass
class Trunk:
    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str = ""
    password: str = ""
    register: bool = True
    caller_id: str = ""         # E.164 presented on outbound calls
    number_format: str = "e164"  # how the provider wants numbers: e164 (+7...), national (8...), plain (7...)
    dids: list[str] = field(default_factory=list)


SOUNDS = Path(__file__).resolve().parent / "sounds"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Step:
    """One step of an inbound scenario: ring extensions at once, or call a number out."""
    kind: str                  # "ring" or "external"
    targets: list[str]
    timeout: int


@dataclass
class Inbound:
    greeting: Path = SOUNDS / "greeting.wav"
    night_greeting: Path = SOUNDS / "greeting-closed.wav"
    invalid_prompt: Path = SOUNDS / "invalid-extension.wav"
    digit_timeout: int = 5
    hours: dict[str, tuple[str, str]] | None = None  # weekday -> (open, close) "HH:MM"; None: always open
    holidays: set[str] = field(default_factory=set)  # "YYYY-MM-DD", closed all day
    day: list[Step] | None = None    # None: every extension in turn
    night: list[Step] = field(default_factory=list)  # default: the night greeting, then hang up


@dataclass
class DialRule:
    """An office's own dial-plan rule, tried before the country's."""
    pattern: str
    number: str
    class_: str
    trunks: list[str]
    line: int


@dataclass
class Features:
    pickup_code: str = "0"
    directed_pickup_prefix: str = "**"
    transfer_key: str = "#"          # pressed during a call: attended transfer (the memo's #)
    transfer_cancel_key: str = "*"   # during a transfer: back to the held party
    transfer_digit_timeout: int = 3  # seconds after the last digit before the number is dialled
    transfer_in_outbound_calls: bool = True  # false: in calls the office makes out, # goes to the far end
    music_on_hold: Path = SOUNDS / "music-on-hold.wav"


@dataclass
class Dhcp:
    mode: str = "off"  # "off": the office router serves DHCP (set option 66 there); "serve": dnsmasq on the box
    range: tuple[str, str] | None = None
    router: str | None = None
    dns: str | None = None
    lease_time: str = "12h"


@dataclass
class Provisioning:
    enabled: bool = False  # true when the config has a provisioning section
    tftp_port: int = 69
    http_port: int = 8088
    https_port: int = 8443
    firmware_dir: Path | None = None
    auto_enrol: bool = False
    lan: str | None = None  # CIDR whose phones may fetch their config without credentials; default bind/24
    discovery: bool = True  # note DHCP clients seen on the LAN (scapy; needs root)
    pnp: bool = True        # answer SIP multicast PnP (224.0.1.75:5060) with the provisioning URL
    encryption: bool = False  # provisioned phones register over TLS and send SRTP, where their template can
    dhcp: Dhcp = field(default_factory=Dhcp)


@dataclass
class Network:
    bind: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_ports: tuple[int, int] = (20000, 20999)
    feature_port: int = 0  # 0: sip_port + 20; the feature server's SIP port (it takes calls from Kamailio only)
    sip_domain: str = ""  # realm for digest auth and From domain; defaults to bind
    tls_port: int | None = None  # SIP over TLS (Kamailio); None: sip_port + 1, 0: no TLS
    # The box's face to the outside (its SIP provider, phones away from the office): a SIP port of
    # its own, which the office router forwards, and the public address the outside sees.
    wan_port: int | None = None   # None: sip_port + 2
    public_address: str = ""      # "": learned from STUN or from the provider's answers
    stun_server: str = ""         # host or host:port, asked for the public address


@dataclass
class OutsideCallLimit:
    """Calls out over the trunks: a guessed password must not become a night of international
    calls. 0: no limit. Calls refused by a limit never reach a trunk."""
    concurrent: int
    calls_per_hour: int   # calls that went to a trunk in the last 60 minutes
    minutes_per_day: int  # talk time of calls out since the box's local midnight


@dataclass
class Security:
    auth_failures_before_ban: int = 10
    ban_seconds: int = 600
    per_extension: OutsideCallLimit = field(default_factory=lambda: OutsideCallLimit(2, 20, 240))
    per_site: OutsideCallLimit = field(default_factory=lambda: OutsideCallLimit(10, 200, 3000))
    flood_requests_per_second: int = 50  # from one address; the box's own address is exempt
    # The certificate SIP over TLS and HTTPS provisioning present; None: one made once per box
    tls_certificate: Path | None = None
    tls_key: Path | None = None


@dataclass
class Cloud:
    """The cloud agent's manners; the portal itself comes from `edgepbx enroll` (docs/cloud.md)."""
    upload_kbps: int = 2000         # cap on upload bandwidth so syncing never hurts live calls; 0: none
    heartbeat_seconds: int = 60
    retry_max_seconds: int = 300    # back-off ceiling while the portal is unreachable


@dataclass
class Config:
    path: Path
    site_name: str = "Office"
    timezone: str = "UTC"
    language: str = "English"
    country: str = "RU"
    area_code: str = ""
    trunks: list[Trunk] = field(default_factory=list)
    dial_rules: list[DialRule] = field(default_factory=list)
    inbound: Inbound = field(default_factory=Inbound)
    features: Features = field(default_factory=Features)
    provisioning: Provisioning = field(default_factory=Provisioning)
    data_dir: Path = Path("var")
    network: Network = field(default_factory=Network)
    recording_enabled: bool = True
    recording_keep_days: int = 30    # synced recordings older than this leave the box (docs/cloud.md)
    recording_min_free_mb: int = 200  # below this much free space no new call is recorded (CDRs still are)
    no_answer_timeout: int = 30
    max_concurrent_calls: int = 0  # 0 until loaded: as many as network.rtp_ports allow, at most 60
    security: Security = field(default_factory=Security)
    cloud: Cloud = field(default_factory=Cloud)
    extensions: list[Extension] = field(default_factory=list)
    log_level: str = "info"

    def extension(self, number: str) -> Extension | None:
        return next((e for e in self.extensions if e.number == number), None)

    @property
    def domain(self) -> str:
        return self.network.sip_domain or self.network.bind


class _Reader:
    """Typed accessors over YAML nodes that record errors instead of raising."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[ConfigError] = []

    def error(self, node: Node, message: str) -> None:
        self.errors.append(ConfigError(self.path, node.start_mark.line + 1, message))

    def mapping(self, node: Node, allowed: set[str], where: str) -> dict[str, tuple[Node, Node]]:
        """Returns key -> (key node, value node); reports unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping of keys to values")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key is None:
                self.error(key_node, f"{where}: keys must be plain names")
            elif key not in allowed:
                self.error(key_node, f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
            elif key in out:
                self.error(key_node, f"{where}: duplicate key '{key}' (first on line {out[key][0].start_mark.line + 1})")
            else:
                out[key] = (key_node, value_node)
        return out

    def text(self, node: Node, where: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, f"{where} must be a text value")
            return None
        return node.value

    def integer(self, node: Node, where: str, low: int, high: int) -> int | None:
        raw = node.value if isinstance(node, ScalarNode) else None
        if raw is None or not re.fullmatch(r"[0-9]+", str(raw)):
            self.error(node, f"{where} must be a whole number between {low} and {high}")
            return None
        value = int(raw)
        if not low <= value <= high:
            self.error(node, f"{where} must be between {low} and {high}, not {value}")
            return None
        return value

    def boolean(self, node: Node, where: str) -> bool | None:
        raw = node.value.lower() if isinstance(node, ScalarNode) else None
        if raw in ("true", "yes", "on"):
            return True
        if raw in ("false", "no", "off"):
            return False
        self.error(node, f"{where} must be true or false")
        return None

    def sequence(self, node: Node, where: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{where} must be a list")
            return []
        return list(node.value)


def _apply(fields: dict[str, tuple[Node, Node]], key: str, read: Callable[[Node], object], store: Callable[[object], None]) -> None:
    if key in fields:
        value = read(fields[key][1])
        if value is not None:
            store(value)


def _read_limit(r: _Reader, node: Node, limit: OutsideCallLimit, where: str) -> None:
    f = r.mapping(node, {"concurrent", "calls_per_hour", "minutes_per_day"}, where)
    for key, most in (("concurrent", 1000), ("calls_per_hour", 100_000), ("minutes_per_day", 1_440_000)):
        _apply(f, key, lambda n, key=key, most=most: r.integer(n, f"{where}.{key}", 0, most),
               lambda v, key=key: setattr(limit, key, v))


def _read_network(r: _Reader, node: Node, net: Network) -> None:
    f = r.mapping(node, {"bind", "sip_port", "rtp_ports", "feature_port", "sip_domain", "tls_port", "wan_port",
                         "public_address", "stun_server"}, "network")
    if "bind" in f:
        raw = r.text(f["bind"][1], "network.bind")
        if raw is not None:
            try:
                ipaddress.ip_address(raw)
                net.bind = raw
            except ValueError:
                r.error(f["bind"][1], f"network.bind must be an IP address, not '{raw}'")
    _apply(f, "sip_port", lambda n: r.integer(n, "network.sip_port", 1, 65535), lambda v: setattr(net, "sip_port", v))
    _apply(f, "feature_port", lambda n: r.integer(n, "network.feature_port", 1, 65535), lambda v: setattr(net, "feature_port", v))
    _apply(f, "sip_domain", lambda n: r.text(n, "network.sip_domain"), lambda v: setattr(net, "sip_domain", v))
    _apply(f, "tls_port", lambda n: r.integer(n, "network.tls_port", 0, 65535), lambda v: setattr(net, "tls_port", v))
    _apply(f, "wan_port", lambda n: r.integer(n, "network.wan_port", 1, 65535), lambda v: setattr(net, "wan_port", v))
    if "public_address" in f:
        raw = r.text(f["public_address"][1], "network.public_address")
        try:
            if raw:
                ipaddress.IPv4Address(raw)
                net.public_address = raw
        except ValueError:
            r.error(f["public_address"][1], f"network.public_address must be an IPv4 address, not '{raw}'")
    if "stun_server" in f:
        raw = r.text(f["stun_server"][1], "network.stun_server") or ""
        host, _, port = raw.rpartition(":") if ":" in raw else (raw, "", "3478")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            r.error(f["stun_server"][1], f"network.stun_server must be host or host:port, not '{raw}'")
        else:
            net.stun_server = f"{host}:{port}"
    if "rtp_ports" in f:
        node = f["rtp_ports"][1]
        items = r.sequence(node, "network.rtp_ports")
        if items and len(items) != 2:
            r.error(node, "network.rtp_ports must be [first, last]")
        elif items:
            lo = r.integer(items[0], "network.rtp_ports first", 1024, 65535)
            hi = r.integer(items[1], "network.rtp_ports last", 1024, 65535)
            if lo is not None and hi is not None:
                if hi - lo < 16:
                    r.error(node, "network.rtp_ports must span at least 16 ports (first < last)")
                else:
                    net.rtp_ports = (lo, hi)


def _read_extensions(r: _Reader, node: Node) -> list[Extension]:
    seen: dict[str, int] = {}
    macs: dict[str, int] = {}
    out: list[Extension] = []
    for item in r.sequence(node, "extensions"):
        f = r.mapping(item, {"number", "name", "password", "phone", "permissions", "pickup_group"}, "extension")
        if "number" not in f:
            r.error(item, "extension needs a number")
            continue
        number_node = f["number"][1]
        number = r.text(number_node, "extension number")
        if number is None:
            continue
        if not EXTENSION_NUMBER.match(number):
            r.error(number_node, f"extension number must be 2 to 6 digits, not '{number}'")
            continue
        line = number_node.start_mark.line + 1
        if number in seen:
            r.error(number_node, f"duplicate extension {number} (first on line {seen[number]})")
            continue
        seen[number] = line
        name = r.text(f["name"][1], "extension name") if "name" in f else None
        password = r.text(f["password"][1], "extension password") if "password" in f else None
        if password is not None and len(password) < 8:
            r.error(f["password"][1], f"extension {number}: password must have at least 8 characters")
            password = None
        phone = _read_phone(r, f["phone"][1], number, macs) if "phone" in f else None
        # Calls abroad only where the office says so: a guessed password must not dial the world.
        permissions = r.text(f["permissions"][1], "extension permissions") if "permissions" in f else DEFAULT_PERMISSIONS
        if permissions not in PERMISSIONS:
            r.error(f["permissions"][1], f"extension {number}: permissions must be one of {', '.join(PERMISSIONS)}")
            permissions = "internal"
        group = (r.text(f["pickup_group"][1], "pickup_group") if "pickup_group" in f else None) or "office"
        out.append(Extension(number=number, name=name or f"Extension {number}", password=password, line=line,
                             phone=phone, permissions=permissions, pickup_group=group))
    return out


def _read_phone(r: _Reader, node: Node, number: str, macs: dict[str, int]) -> Phone | None:
    from provisioning.catalog import catalog  # the vendors' metadata (firmware_templates/)
    from provisioning.macs import normalise_mac

    f = r.mapping(node, {"mac", "vendor", "model", "keys"}, f"extension {number} phone")
    missing = [k for k in ("mac", "vendor", "model") if k not in f]
    if missing:
        r.error(node, f"extension {number} phone needs {', '.join(missing)}")
        return None
    raw_mac, vendor, model = (r.text(f[k][1], f"phone {k}") for k in ("mac", "vendor", "model"))
    if None in (raw_mac, vendor, model):
        return None
    mac = normalise_mac(raw_mac)
    if mac is None:
        r.error(f["mac"][1], f"extension {number}: '{raw_mac}' is not a MAC address (12 hex digits)")
        return None
    if mac in macs:
        r.error(f["mac"][1], f"extension {number}: MAC {raw_mac} is already used on line {macs[mac]}")
        return None
    macs[mac] = f["mac"][1].start_mark.line + 1
    vendor = vendor.lower()
    if vendor not in VENDORS:
        r.error(f["vendor"][1], f"extension {number}: phone vendor must be one of {', '.join(VENDORS)}")
        return None
    models = catalog()[vendor].models
    match = next((m for m in models if m.lower() == model.lower()), None)
    if match is None:
        r.error(f["model"][1], f"extension {number}: unknown {vendor} model '{model}' (known: {', '.join(models)})")
        return None
    keys = None
    if "keys" in f:
        keys = []
        for key_node in r.sequence(f["keys"][1], "phone keys"):
            k = r.mapping(key_node, {"type", "value", "label"}, "phone key")
            key_type = r.text(k["type"][1], "key type") if "type" in k else None
            value = r.text(k["value"][1], "key value") if "value" in k else ""
            if key_type not in KEY_TYPES:
                r.error(key_node, f"phone key type must be one of {', '.join(KEY_TYPES)}")
                continue
            label = r.text(k["label"][1], "key label") if "label" in k else None
            keys.append(PhoneKey(key_type, value or "", label or value or key_type))
        if len(keys) > models[match]["keys"]:
            r.error(f["keys"][1], f"extension {number}: {len(keys)} keys, but a {vendor} {match} has "
                                  f"{models[match]['keys']}")
    return Phone(mac=mac, vendor=vendor, model=match, keys=keys, line=node.start_mark.line + 1)


TOP_LEVEL_KEYS = {"site", "data_dir", "network", "recording", "calls", "security", "extensions", "logging",
                  "features", "provisioning", "trunks", "dialplan", "inbound", "cloud"}


def _read_steps(r: _Reader, node: Node, where: str, extensions: set[str], default_timeout: int) -> list[Step]:
    steps = []
    for item in r.sequence(node, where):
        f = r.mapping(item, {"ring", "strategy", "timeout", "forward", "forward_external"}, f"{where} step")
        timeout = default_timeout
        if "timeout" in f:
            timeout = r.integer(f["timeout"][1], f"{where} step timeout", 1, 600) or default_timeout
        if "forward_external" in f:
            number = r.text(f["forward_external"][1], "forward_external")
            if number:
                steps.append(Step("external", [number], timeout))
            continue
        members_node = f.get("ring") or f.get("forward")
        if members_node is None:
            r.error(item, f"{where} step needs ring, forward or forward_external")
            continue
        value = members_node[1]
        members = ([r.text(n, "ring member") for n in r.sequence(value, "ring")] if isinstance(value, SequenceNode)
                   else [r.text(value, "forward")])
        unknown = [m for m in members if m not in extensions]
        if unknown:
            r.error(value, f"{where}: not an extension: {', '.join(str(m) for m in unknown)}")
            continue
        strategy = r.text(f["strategy"][1], "strategy") if "strategy" in f else "all"
        if strategy not in ("all", "order"):
            r.error(f["strategy"][1], f"{where}: strategy must be all (at once) or order (one after another)")
            continue
        if strategy == "order":
            steps += [Step("ring", [m], timeout) for m in members]
        else:
            steps.append(Step("ring", members, timeout))
    return steps


def _read_features(r: _Reader, node: Node, cfg: Config) -> None:
    feat = r.mapping(node, {"pickup_code", "directed_pickup_prefix", "transfer_key", "transfer_cancel_key",
                            "transfer_digit_timeout", "transfer_in_outbound_calls", "music_on_hold"}, "features")
    codes = {"pickup_code": (r"[0-9*#]{1,4}", "1 to 4 of 0-9 * #"),
             "directed_pickup_prefix": (r"[0-9*#]{1,4}", "1 to 4 of 0-9 * #"),
             "transfer_key": (r"[0-9*#ABCD]", "one DTMF key (0-9 * # A-D)"),
             "transfer_cancel_key": (r"[0-9*#ABCD]", "one DTMF key (0-9 * # A-D)")}
    for key, (pattern, shape) in codes.items():
        if key in feat:
            code = r.text(feat[key][1], f"features.{key}")
            if code is not None and not re.fullmatch(pattern, code):
                r.error(feat[key][1], f"features.{key} must be {shape}")
            elif code is not None:
                setattr(cfg.features, key, code)
    if cfg.features.transfer_key == cfg.features.transfer_cancel_key:
        r.error(node, "features.transfer_key and features.transfer_cancel_key must differ")
    _apply(feat, "transfer_digit_timeout", lambda n: r.integer(n, "features.transfer_digit_timeout", 1, 30),
           lambda v: setattr(cfg.features, "transfer_digit_timeout", v))
    _apply(feat, "transfer_in_outbound_calls", lambda n: r.boolean(n, "features.transfer_in_outbound_calls"),
           lambda v: setattr(cfg.features, "transfer_in_outbound_calls", v))
    if "music_on_hold" in feat:
        name = r.text(feat["music_on_hold"][1], "features.music_on_hold")
        path = (cfg.path.parent / (name or "")).resolve()
        if not path.is_file():
            r.error(feat["music_on_hold"][1], f"features.music_on_hold: no such WAV file {path}")
        else:
            cfg.features.music_on_hold = path


def _read_inbound(r: _Reader, node: Node, cfg: Config) -> None:
    inbound = cfg.inbound
    f = r.mapping(node, {"greeting", "night_greeting", "invalid_prompt", "digit_timeout", "hours", "holidays",
                         "day", "night"}, "inbound")
    for key in ("greeting", "night_greeting", "invalid_prompt"):
        if key in f:
            name = r.text(f[key][1], f"inbound.{key}")
            path = (cfg.path.parent / (name or "")).resolve()
            if not path.is_file():
                r.error(f[key][1], f"inbound.{key}: no such WAV file {path}")
            else:
                setattr(inbound, key, path)
    _apply(f, "digit_timeout", lambda n: r.integer(n, "inbound.digit_timeout", 1, 60),
           lambda v: setattr(inbound, "digit_timeout", v))
    if "hours" in f:
        hours = {}
        for day, (key_node, value) in r.mapping(f["hours"][1], set(WEEKDAYS), "inbound.hours").items():
            span = r.text(value, f"inbound.hours.{day}") or ""
            found = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)", span)
            if not found or span[:5] >= span[6:]:
                r.error(value, f"inbound.hours.{day} must look like 09:00-18:00")
            else:
                hours[day] = (span[:5], span[6:])
        inbound.hours = hours
    if "holidays" in f:
        for n in r.sequence(f["holidays"][1], "inbound.holidays"):
            day = r.text(n, "holiday")
            if day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
                inbound.holidays.add(day)
            else:
                r.error(n, "inbound.holidays: dates look like 2026-12-31")
    numbers = {e.number for e in cfg.extensions}
    if "day" in f:
        inbound.day = _read_steps(r, f["day"][1], "inbound.day", numbers, cfg.no_answer_timeout)
    if "night" in f:
        inbound.night = _read_steps(r, f["night"][1], "inbound.night", numbers, cfg.no_answer_timeout)
CALL_CLASSES = ("local", "national", "mobile", "international", "premium", "emergency")
MAX_TRUNKS = 6


def _read_trunks(r: _Reader, node: Node) -> list[Trunk]:
    out: list[Trunk] = []
    for item in r.sequence(node, "trunks"):
        f = r.mapping(item, {"name", "host", "port", "transport", "username", "password", "register", "caller_id",
                             "number_format", "dids"}, "trunk")
        if "name" not in f or "host" not in f:
            r.error(item, "a trunk needs a name and a host")
            continue
        trunk = Trunk(name=r.text(f["name"][1], "trunk name") or "", host=r.text(f["host"][1], "trunk host") or "")
        if any(t.name == trunk.name for t in out):
            r.error(f["name"][1], f"duplicate trunk name '{trunk.name}'")
            continue
        _apply(f, "port", lambda n: r.integer(n, "trunk port", 1, 65535), lambda v: setattr(trunk, "port", v))
        for key in ("username", "password", "caller_id"):
            _apply(f, key, lambda n, key=key: r.text(n, f"trunk {key}"), lambda v, key=key: setattr(trunk, key, v))
        _apply(f, "register", lambda n: r.boolean(n, "trunk register"), lambda v: setattr(trunk, "register", v))
        for key, allowed in (("transport", ("udp", "tcp")), ("number_format", ("e164", "national", "plain"))):
            if key in f:
                value = (r.text(f[key][1], f"trunk {key}") or "").lower()
                if value not in allowed:
                    r.error(f[key][1], f"trunk {trunk.name}: {key} must be one of {', '.join(allowed)}")
                else:
                    setattr(trunk, key, value)
        if trunk.caller_id and not re.fullmatch(r"\+[1-9][0-9]{6,14}", trunk.caller_id):
            r.error(f["caller_id"][1], f"trunk {trunk.name}: caller_id must be E.164, e.g. +78312345678")
        if "dids" in f:
            trunk.dids = [d for d in (r.text(n, "trunk did") for n in r.sequence(f["dids"][1], "trunk dids")) if d]
        out.append(trunk)
    if len(out) > MAX_TRUNKS:
        r.error(node, f"at most {MAX_TRUNKS} trunks (each is a pjsua2 account; the wheel allows 8 per process)")
    return out


def _read_dialplan(r: _Reader, node: Node, cfg: Config) -> None:
    f = r.mapping(node, {"rules"}, "dialplan")
    if "rules" not in f:
        return
    names = {t.name for t in cfg.trunks}
    for item in r.sequence(f["rules"][1], "dialplan.rules"):
        rule = r.mapping(item, {"pattern", "number", "class", "trunks"}, "dial rule")
        if "pattern" not in rule or "class" not in rule:
            r.error(item, "a dial rule needs a pattern and a class")
            continue
        pattern = r.text(rule["pattern"][1], "dial rule pattern") or ""
        try:
            re.compile(pattern)
        except re.error as exc:
            r.error(rule["pattern"][1], f"dial rule pattern is not a regular expression: {exc}")
            continue
        class_ = r.text(rule["class"][1], "dial rule class")
        if class_ not in CALL_CLASSES + ("denied",):
            r.error(rule["class"][1], f"dial rule class must be one of {', '.join(CALL_CLASSES + ('denied',))}")
            continue
        trunks = [t for t in (r.text(n, "trunk") for n in r.sequence(rule["trunks"][1], "dial rule trunks"))
                  if t] if "trunks" in rule else []
        unknown = [t for t in trunks if t not in names]
        if unknown:
            r.error(rule["trunks"][1], f"dial rule names unknown trunk(s): {', '.join(unknown)}")
        number = r.text(rule["number"][1], "dial rule number") if "number" in rule else "{0}"
        cfg.dial_rules.append(DialRule(pattern, number or "{0}", class_, trunks, item.start_mark.line + 1))


def _read_dhcp(r: _Reader, node: Node, dhcp: Dhcp) -> None:
    f = r.mapping(node, {"mode", "range", "router", "dns", "lease_time"}, "provisioning.dhcp")
    if "mode" in f:
        mode = r.text(f["mode"][1], "provisioning.dhcp.mode")
        if mode not in ("off", "serve"):
            r.error(f["mode"][1], "provisioning.dhcp.mode must be off or serve")
        else:
            dhcp.mode = mode
    for key in ("router", "dns"):
        if key in f:
            value = r.text(f[key][1], f"provisioning.dhcp.{key}")
            try:
                ipaddress.ip_address(value or "")
                setattr(dhcp, key, value)
            except ValueError:
                r.error(f[key][1], f"provisioning.dhcp.{key} must be an IP address")
    _apply(f, "lease_time", lambda n: r.text(n, "provisioning.dhcp.lease_time"), lambda v: setattr(dhcp, "lease_time", v))
    if "range" in f:
        items = r.sequence(f["range"][1], "provisioning.dhcp.range")
        try:
            first, last = (ipaddress.ip_address(i.value) for i in items)
            if int(last) < int(first):
                raise ValueError
            dhcp.range = (str(first), str(last))
        except (ValueError, TypeError, AttributeError):
            r.error(f["range"][1], "provisioning.dhcp.range must be [first address, last address]")
    if dhcp.mode == "serve" and dhcp.range is None:
        r.error(node, "provisioning.dhcp.mode serve needs a range: [first, last]")


def _read_provisioning(r: _Reader, node: Node, cfg: Config) -> None:
    p = cfg.provisioning
    p.enabled = True
    f = r.mapping(node, {"tftp_port", "http_port", "https_port", "firmware_dir", "auto_enrol", "lan", "discovery",
                         "dhcp", "pnp", "encryption"}, "provisioning")
    _apply(f, "pnp", lambda n: r.boolean(n, "provisioning.pnp"), lambda v: setattr(p, "pnp", v))
    _apply(f, "encryption", lambda n: r.boolean(n, "provisioning.encryption"), lambda v: setattr(p, "encryption", v))
    _apply(f, "discovery", lambda n: r.boolean(n, "provisioning.discovery"), lambda v: setattr(p, "discovery", v))
    if "dhcp" in f:
        _read_dhcp(r, f["dhcp"][1], p.dhcp)
    if "lan" in f:
        lan = r.text(f["lan"][1], "provisioning.lan")
        try:
            ipaddress.ip_network(lan or "", strict=False)
            p.lan = lan
        except ValueError:
            r.error(f["lan"][1], f"provisioning.lan must be a network like 192.168.1.0/24, not '{lan}'")
    for key in ("tftp_port", "http_port", "https_port"):
        _apply(f, key, lambda n, key=key: r.integer(n, f"provisioning.{key}", 0, 65535),
               lambda v, key=key: setattr(p, key, v))
    if "firmware_dir" in f:
        folder = r.text(f["firmware_dir"][1], "provisioning.firmware_dir")
        if folder:
            p.firmware_dir = (cfg.path.parent / folder).resolve()
    _apply(f, "auto_enrol", lambda n: r.boolean(n, "provisioning.auto_enrol"), lambda v: setattr(p, "auto_enrol", v))


def _read_certificate(r: _Reader, sec: dict[str, tuple[Node, Node]], cfg: Config) -> None:
    """The installer's own certificate and key (PEM files, relative to the config): both or neither."""
    given = {key: sec[key] for key in ("tls_certificate", "tls_key") if key in sec}
    if len(given) == 1:
        (key, (key_node, _)), = given.items()
        other = "tls_key" if key == "tls_certificate" else "tls_certificate"
        r.error(key_node, f"security.{key} needs security.{other} too")
        return
    for key, (_, value) in given.items():
        name = r.text(value, f"security.{key}")
        path = (cfg.path.parent / (name or "")).resolve()
        if not path.is_file():
            r.error(value, f"security.{key}: no such file {path}")
        elif b"-----BEGIN " not in path.read_bytes()[:4096]:
            r.error(value, f"security.{key}: {path} is not a PEM file")
        else:
            setattr(cfg.security, key, path)


def load(path: str | Path) -> Config:
    """Loads and validates a config file; raises InvalidConfig listing every error."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidConfig([ConfigError(shown, 0, f"cannot read config: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise InvalidConfig([ConfigError(shown, 1, "config is not UTF-8 text")]) from None
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InvalidConfig([ConfigError(shown, line, f"YAML syntax error: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidConfig([ConfigError(shown, 1, f"YAML error: {exc}")]) from None
    if root is None:
        raise InvalidConfig([ConfigError(shown, 1, "config is empty")])

    r = _Reader(shown)
    cfg = Config(path=path.resolve())
    top = r.mapping(root, TOP_LEVEL_KEYS, "config")
    if "site" in top:
        site = r.mapping(top["site"][1], {"name", "timezone", "language", "country", "area_code"}, "site")
        if "country" in site:
            country = (r.text(site["country"][1], "site.country") or "").upper()
            if country not in COUNTRIES:
                r.error(site["country"][1], f"site.country: no dial plan for '{country}' (have: {', '.join(COUNTRIES)})")
            else:
                cfg.country = country
        if "area_code" in site:
            area = r.text(site["area_code"][1], "site.area_code")
            if area is not None and not re.fullmatch(r"[0-9]{1,5}", area):
                r.error(site["area_code"][1], "site.area_code must be 1 to 5 digits, e.g. \"831\"")
            elif area:
                cfg.area_code = area
        _apply(site, "name", lambda n: r.text(n, "site.name"), lambda v: setattr(cfg, "site_name", v))
        _apply(site, "language", lambda n: r.text(n, "site.language"), lambda v: setattr(cfg, "language", v))
        if "timezone" in site:
            tz = r.text(site["timezone"][1], "site.timezone")
            try:
                import zoneinfo
                zoneinfo.ZoneInfo(tz or "")
                cfg.timezone = tz
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                r.error(site["timezone"][1], f"site.timezone: unknown time zone '{tz}' (e.g. Europe/Moscow)")
    if "features" in top:
        _read_features(r, top["features"][1], cfg)
    if "provisioning" in top:
        _read_provisioning(r, top["provisioning"][1], cfg)
    data_dir = r.text(top["data_dir"][1], "data_dir") if "data_dir" in top else "./var"
    # Relative to the config file, so the same file works whatever the current directory.
    cfg.data_dir = (path.resolve().parent / (data_dir or "./var")).resolve()
    if "network" in top:
        _read_network(r, top["network"][1], cfg.network)
    if "recording" in top:
        rec = r.mapping(top["recording"][1], {"enabled", "keep_days", "min_free_mb"}, "recording")
        _apply(rec, "enabled", lambda n: r.boolean(n, "recording.enabled"), lambda v: setattr(cfg, "recording_enabled", v))
        _apply(rec, "keep_days", lambda n: r.integer(n, "recording.keep_days", 1, 3650),
               lambda v: setattr(cfg, "recording_keep_days", v))
        _apply(rec, "min_free_mb", lambda n: r.integer(n, "recording.min_free_mb", 1, 1_000_000),
               lambda v: setattr(cfg, "recording_min_free_mb", v))
    if "calls" in top:
        calls = r.mapping(top["calls"][1], {"no_answer_timeout", "max_concurrent"}, "calls")
        _apply(calls, "max_concurrent", lambda n: r.integer(n, "calls.max_concurrent", 1, MAX_CONCURRENT_CALLS),
               lambda v: setattr(cfg, "max_concurrent_calls", v))
        _apply(calls, "no_answer_timeout", lambda n: r.integer(n, "calls.no_answer_timeout", 1, 600),
               lambda v: setattr(cfg, "no_answer_timeout", v))
    if "security" in top:
        sec = r.mapping(top["security"][1], {"auth_failures_before_ban", "ban_seconds", "outside_calls",
                                              "flood_requests_per_second", "tls_certificate", "tls_key"}, "security")
        _read_certificate(r, sec, cfg)
        _apply(sec, "auth_failures_before_ban", lambda n: r.integer(n, "security.auth_failures_before_ban", 1, 1000),
               lambda v: setattr(cfg.security, "auth_failures_before_ban", v))
        _apply(sec, "ban_seconds", lambda n: r.integer(n, "security.ban_seconds", 1, 86400),
               lambda v: setattr(cfg.security, "ban_seconds", v))
        _apply(sec, "flood_requests_per_second", lambda n: r.integer(n, "security.flood_requests_per_second", 5, 100_000),
               lambda v: setattr(cfg.security, "flood_requests_per_second", v))
        if "outside_calls" in sec:
            scopes = r.mapping(sec["outside_calls"][1], {"per_extension", "per_site"}, "security.outside_calls")
            for scope in ("per_extension", "per_site"):
                if scope in scopes:
                    _read_limit(r, scopes[scope][1], getattr(cfg.security, scope), f"security.outside_calls.{scope}")
    if "cloud" in top:
        cloud = r.mapping(top["cloud"][1], {"upload_kbps", "heartbeat_seconds", "retry_max_seconds"}, "cloud")
        _apply(cloud, "upload_kbps", lambda n: r.integer(n, "cloud.upload_kbps", 0, 1_000_000),
               lambda v: setattr(cfg.cloud, "upload_kbps", v))
        _apply(cloud, "heartbeat_seconds", lambda n: r.integer(n, "cloud.heartbeat_seconds", 1, 3600),
               lambda v: setattr(cfg.cloud, "heartbeat_seconds", v))
        _apply(cloud, "retry_max_seconds", lambda n: r.integer(n, "cloud.retry_max_seconds", 1, 3600),
               lambda v: setattr(cfg.cloud, "retry_max_seconds", v))
    if "logging" in top:
        log = r.mapping(top["logging"][1], {"level"}, "logging")
        if "level" in log:
            level = r.text(log["level"][1], "logging.level")
            if level not in (None, "debug", "info", "warning", "error"):
                r.error(log["level"][1], "logging.level must be debug, info, warning or error")
            elif level:
                cfg.log_level = level
    if "extensions" in top:
        cfg.extensions = _read_extensions(r, top["extensions"][1])
    if "trunks" in top:
        cfg.trunks = _read_trunks(r, top["trunks"][1])
    if "dialplan" in top:
        _read_dialplan(r, top["dialplan"][1], cfg)
    if "inbound" in top:
        _read_inbound(r, top["inbound"][1], cfg)

    net = cfg.network
    if net.feature_port == 0:
        net.feature_port = net.sip_port + 20 if net.sip_port <= 65515 else net.sip_port - 20
    node = top["network"][1] if "network" in top else root
    if net.feature_port == net.sip_port:
        r.error(node, "network.feature_port must differ from network.sip_port")
    rtp = range(net.rtp_ports[0], net.rtp_ports[1] + 1)
    trunk_registrar_port = net.feature_port - 1  # appliance/trunks.py
    if trunk_registrar_port == net.sip_port or trunk_registrar_port in rtp:
        r.error(node, f"network.feature_port: port {trunk_registrar_port} below it (trunk registration) "
                      "must be free of network.sip_port and network.rtp_ports")
    if net.tls_port is None:
        net.tls_port = net.sip_port + 1 if net.sip_port < 65535 else net.sip_port - 1
    if net.tls_port in (net.sip_port, net.feature_port, trunk_registrar_port):
        r.error(node, f"network.tls_port {net.tls_port} must differ from the other SIP ports")
    if net.wan_port is None:
        net.wan_port = net.sip_port + 2 if net.sip_port <= 65533 else net.sip_port - 2
    if net.wan_port in (net.sip_port, net.feature_port, trunk_registrar_port, net.tls_port):
        r.error(node, f"network.wan_port {net.wan_port} must differ from the other SIP ports")
    if any(port in rtp for port in (net.sip_port, net.feature_port, net.tls_port, net.wan_port)):
        r.error(node, "network.rtp_ports must not include the SIP ports")
    if cfg.max_concurrent_calls == 0:
        room = (len(rtp) - RTP_PORTS_SPARE) // RTP_PORTS_PER_CALL
        cfg.max_concurrent_calls = max(1, min(DEFAULT_CONCURRENT_CALLS, room))
    needed = cfg.max_concurrent_calls * RTP_PORTS_PER_CALL + RTP_PORTS_SPARE
    if len(rtp) < needed:
        r.error(node, f"network.rtp_ports: {len(rtp)} ports are too few for calls.max_concurrent "
                      f"{cfg.max_concurrent_calls} (need {needed}: {RTP_PORTS_PER_CALL} a call and {RTP_PORTS_SPARE} spare)")
    if r.errors:
        raise InvalidConfig(r.errors)
    return cfg
