"""One reader per section of the office config: each checks its keys (simple ones by the rules
declared in fields.py) and fills the Config, reporting every error on its line. Files the config
names are collected as FileRefs for disk.py, not opened here."""
from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from provisioning.catalog import catalog  # the vendors' metadata (firmware_templates/)
from provisioning.macs import normalise_mac

from ..countryplans import COUNTRIES
from .fields import Bool, Code, FileRef, Host, Int, Secret, Text, dotted, is_host, read_fields
from .nodes import Reader
from .schema import (ASSETS_DIR, CALL_CLASSES, DEFAULT_PERMISSIONS, EXTENSION_NUMBER, KEY_TYPES, MAX_CONCURRENT_CALLS,
                     MAX_TRUNKS, PERMISSIONS, VENDORS, WEEKDAYS, Config, DialRule, Dhcp, Extension, Network,
                     OutsideCallLimit, Phone, PhoneKey, Step, Trunk)

NETWORK = {"sip_port": Int(1, 65535), "feature_port": Int(1, 65535), "sip_domain": Host(optional=True), "tls_port": Int(0, 65535),
           "wan_port": Int(1, 65535)}
LIMIT = {"concurrent": Int(0, 1000), "calls_per_hour": Int(0, 100_000), "minutes_per_day": Int(0, 1_440_000)}
DTMF_CODE = Code(r"[0-9*#]{1,4}", "1 to 4 of 0-9 * #")
DTMF_KEY = Code(r"[0-9*#ABCD]", "one DTMF key (0-9 * # A-D)")
FEATURE_CODES = {"pickup_code": DTMF_CODE, "directed_pickup_prefix": DTMF_CODE, "transfer_key": DTMF_KEY,
                 "transfer_cancel_key": DTMF_KEY}
FEATURES = {"pickup": Bool(), "transfer_digit_timeout": Int(1, 30), "transfer_in_outbound_calls": Bool()}
RECORDING = {"enabled": Bool("recording_enabled"), "keep_days": Int(1, 3650, "recording_keep_days"),
             "min_free_mb": Int(1, 1_000_000, "recording_min_free_mb"),
             "format": Code(r"opus|wav", "opus or wav", "recording_format")}
CALLS = {"max_concurrent": Int(1, MAX_CONCURRENT_CALLS, "max_concurrent_calls"), "no_answer_timeout": Int(1, 600)}
SECURITY = {"auth_failures_before_ban": Int(1, 1000), "ban_seconds": Int(1, 86400),
            "flood_requests_per_second": Int(5, 100_000)}
CLOUD = {"upload_kbps": Int(0, 1_000_000), "heartbeat_seconds": Int(1, 3600), "retry_max_seconds": Int(1, 3600),
         "allow_http": Bool(), "pin_sha256": Code(r"[0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}",
                                                   "64 hexadecimal digits (colons between pairs allowed)")}
SITE = {"name": Text("site_name"), "language": Text()}
TRUNK = {"port": Int(1, 65535), "username": Secret(), "password": Secret(), "caller_id": Text(), "register": Bool()}
TRUNK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
DHCP = {"lease_time": Text()}
PROVISIONING_FLAGS = {"pnp": Bool(), "encryption": Bool(), "discovery": Bool()}
PROVISIONING_PORTS = {"tftp_port": Int(0, 65535), "http_port": Int(0, 65535), "https_port": Int(0, 65535)}
FIRMWARE_UPGRADES = {"firmware_window": Code(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d",
                                             "a span of the site's time like 01:00-05:00 (23:00-05:00 crosses midnight)"),
                     "firmware_wave": Int(1, 1000), "firmware_deadline_seconds": Int(10, 86400)}


ASSET_NAME = re.compile(r"sha256:([0-9a-f]{64})")


def relative(cfg: Config, name: str | None) -> Path:
    """A file the config names, relative to the config's own folder."""
    return (cfg.path.parent / (name or "")).resolve()


def read_sound(r: Reader, node: Node, label: str, cfg: Config, target: object, attr: str, files: list[FileRef]) -> None:
    """A WAV the config names (added to `files` for the disk checks): a file beside the config, or a
    sound the portal sent, named by its content ("sha256:" and 64 hex digits; the box keeps it as
    data_dir/assets/<hash>.wav)."""
    name = r.text(node, label) or ""
    asset = ASSET_NAME.fullmatch(name)
    if asset is None:
        if name.startswith("sha256:"):
            r.error(node, f"{label}: a sound from the portal is named sha256: and 64 lowercase hex digits")
        else:
            files.append(FileRef(node, label, relative(cfg, name), "wav", target, attr))
        return
    cfg.assets.add(asset.group(1))
    files.append(FileRef(node, label, cfg.data_dir / ASSETS_DIR / f"{asset.group(1)}.wav", "wav", target, attr,
                         asset.group(1)))


def phone_models() -> dict[str, dict[str, int]]:
    """Each vendor's desk phone models and their programmable keys (what a config may name)."""
    return {vendor: {model: meta["keys"] for model, meta in v.models.items()} for vendor, v in catalog().items()}


def read_site(r: Reader, node: Node, cfg: Config) -> None:
    site = r.mapping(node, {"name", "timezone", "language", "country", "area_code"}, "site")
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
    read_fields(r, site, cfg, SITE, dotted("site"))
    if "timezone" in site:
        tz = r.text(site["timezone"][1], "site.timezone")
        try:
            zoneinfo.ZoneInfo(tz or "")
            cfg.timezone = tz
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            r.error(site["timezone"][1], f"site.timezone: unknown time zone '{tz}' (e.g. Europe/Moscow)")


def read_features(r: Reader, node: Node, cfg: Config, files: list[FileRef]) -> None:
    feat = r.mapping(node, {"pickup", "pickup_code", "directed_pickup_prefix", "transfer_key", "transfer_cancel_key",
                            "transfer_digit_timeout", "transfer_in_outbound_calls", "music_on_hold"}, "features")
    read_fields(r, feat, cfg.features, FEATURE_CODES, dotted("features"))
    if cfg.features.transfer_key == cfg.features.transfer_cancel_key:
        r.error(node, "features.transfer_key and features.transfer_cancel_key must differ")
    read_fields(r, feat, cfg.features, FEATURES, dotted("features"))
    if "music_on_hold" in feat:
        read_sound(r, feat["music_on_hold"][1], "features.music_on_hold", cfg, cfg.features, "music_on_hold", files)


def read_network(r: Reader, node: Node, net: Network) -> None:
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
    read_fields(r, f, net, NETWORK, dotted("network"))
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
        if not is_host(host) or not port.isdigit() or not 0 < int(port) < 65536:
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


def read_simple(r: Reader, node: Node, section: str, target: object, rules: dict) -> None:
    """A section made only of simple keys (recording, calls, cloud)."""
    read_fields(r, r.mapping(node, set(rules), section), target, rules, dotted(section))


def read_cloud(r: Reader, node: Node, cfg: Config, files: list[FileRef]) -> None:
    found = r.mapping(node, set(CLOUD) | {"ca_file"}, "cloud")
    read_fields(r, found, cfg.cloud, CLOUD, dotted("cloud"))
    cfg.cloud.pin_sha256 = cfg.cloud.pin_sha256.replace(":", "").lower()
    if "ca_file" in found:
        name = r.text(found["ca_file"][1], "cloud.ca_file")
        files.append(FileRef(found["ca_file"][1], "cloud.ca_file", relative(cfg, name), "pem", cfg.cloud, "ca_file"))


def read_security(r: Reader, node: Node, cfg: Config, files: list[FileRef]) -> None:
    sec = r.mapping(node, {"auth_failures_before_ban", "ban_seconds", "outside_calls", "flood_requests_per_second",
                           "tls_certificate", "tls_key"}, "security")
    read_certificate(r, sec, cfg, files)
    read_fields(r, sec, cfg.security, SECURITY, dotted("security"))
    if "outside_calls" in sec:
        scopes = r.mapping(sec["outside_calls"][1], {"per_extension", "per_site"}, "security.outside_calls")
        for scope in ("per_extension", "per_site"):
            if scope in scopes:
                read_limit(r, scopes[scope][1], getattr(cfg.security, scope), f"security.outside_calls.{scope}")


def read_limit(r: Reader, node: Node, limit: OutsideCallLimit, where: str) -> None:
    read_fields(r, r.mapping(node, set(LIMIT), where), limit, LIMIT, dotted(where))


def read_certificate(r: Reader, sec: dict, cfg: Config, files: list[FileRef]) -> None:
    """The installer's own certificate and key (PEM files, relative to the config): both or neither."""
    given = {key: sec[key] for key in ("tls_certificate", "tls_key") if key in sec}
    if len(given) == 1:
        (key, (key_node, _)), = given.items()
        other = "tls_key" if key == "tls_certificate" else "tls_certificate"
        r.error(key_node, f"security.{key} needs security.{other} too")
        return
    for key, (_, value) in given.items():
        name = r.text(value, f"security.{key}")
        files.append(FileRef(value, f"security.{key}", relative(cfg, name), "pem", cfg.security, key))


def read_logging(r: Reader, node: Node, cfg: Config) -> None:
    log = r.mapping(node, {"level"}, "logging")
    if "level" in log:
        level = r.text(log["level"][1], "logging.level")
        if level not in (None, "debug", "info", "warning", "error"):
            r.error(log["level"][1], "logging.level must be debug, info, warning or error")
        elif level:
            cfg.log_level = level


def read_extensions(r: Reader, node: Node) -> list[Extension]:
    seen: dict[str, int] = {}
    macs: dict[str, int] = {}
    out: list[Extension] = []
    for item in r.sequence(node, "extensions"):
        f = r.mapping(item, {"number", "name", "password", "phone", "permissions", "pickup_group", "recording"},
                      "extension")
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
        password = Secret().read(r, f["password"][1], f"extension {number}: password") if "password" in f else None
        if password is not None and len(password) < 8:
            r.error(f["password"][1], f"extension {number}: password must have at least 8 characters")
            password = None
        phone = read_phone(r, f["phone"][1], number, macs) if "phone" in f else None
        # Calls abroad only where the office says so: a guessed password must not dial the world.
        permissions = r.text(f["permissions"][1], "extension permissions") if "permissions" in f else DEFAULT_PERMISSIONS
        if permissions not in PERMISSIONS:
            r.error(f["permissions"][1], f"extension {number}: permissions must be one of {', '.join(PERMISSIONS)}")
            permissions = "internal"
        group = (r.text(f["pickup_group"][1], "pickup_group") if "pickup_group" in f else None) or "office"
        record = r.boolean(f["recording"][1], f"extension {number}: recording") if "recording" in f else True
        out.append(Extension(number=number, name=name or f"Extension {number}", password=password, line=line,
                             phone=phone, permissions=permissions, pickup_group=group, record=record is not False))
    return out


def read_phone(r: Reader, node: Node, number: str, macs: dict[str, int]) -> Phone | None:
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


def read_steps(r: Reader, node: Node, where: str, extensions: set[str], default_timeout: int) -> list[Step]:
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


def read_inbound(r: Reader, node: Node, cfg: Config, files: list[FileRef]) -> None:
    inbound = cfg.inbound
    f = r.mapping(node, {"greeting", "night_greeting", "invalid_prompt", "digit_timeout", "hours", "holidays",
                         "day", "night", "menu", "numbers"}, "inbound")
    for key in ("greeting", "night_greeting", "invalid_prompt"):
        if key in f:
            read_sound(r, f[key][1], f"inbound.{key}", cfg, inbound, key, files)
    read_fields(r, f, inbound, {"digit_timeout": Int(1, 60)}, dotted("inbound"))
    if "hours" in f:
        hours = {}
        for day, (_key_node, value) in r.mapping(f["hours"][1], set(WEEKDAYS), "inbound.hours").items():
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
        inbound.day = read_steps(r, f["day"][1], "inbound.day", numbers, cfg.no_answer_timeout)
    if "night" in f:
        inbound.night = read_steps(r, f["night"][1], "inbound.night", numbers, cfg.no_answer_timeout)
    if "menu" in f:  # "press 1 for sales": a digit no extension number is, then its own steps
        for digit, (_key, value) in r.mapping(f["menu"][1], set("0123456789"), "inbound.menu").items():
            inbound.menu[digit] = read_steps(r, value, f"inbound.menu.{digit}", numbers, cfg.no_answer_timeout)
    if "numbers" in f:  # the office's second number rings accounts: its own steps by day
        first_line: dict[str, int] = {}
        for dialled, (key_node, value) in read_numbered(r, f["numbers"][1]).items():
            if not re.fullmatch(r"\+?[0-9]{3,20}", dialled):
                r.error(key_node, f"inbound.numbers: '{dialled}' is not a phone number (digits, + first allowed)")
                continue
            bare = dialled.lstrip("+")
            if bare in first_line:  # "+78312000000" and "78312000000" are one number
                r.error(key_node, f"inbound.numbers: '{dialled}' is the number on line {first_line[bare]} again")
                continue
            first_line[bare] = key_node.start_mark.line + 1
            inbound.numbers[bare] = read_steps(r, value, f"inbound.numbers.{dialled}", numbers, cfg.no_answer_timeout)


def read_numbered(r: Reader, node: Node) -> dict:
    """A mapping whose keys are phone numbers (any of them allowed; each checked by the caller)."""
    if not isinstance(node, MappingNode):
        r.error(node, "inbound.numbers must be a mapping of numbers to steps")
        return {}
    keys = {k.value for k, _ in node.value if isinstance(k, ScalarNode)}
    return r.mapping(node, keys, "inbound.numbers")


def read_trunks(r: Reader, node: Node) -> list[Trunk]:
    out: list[Trunk] = []
    for item in r.sequence(node, "trunks"):
        f = r.mapping(item, {"name", "host", "port", "transport", "username", "password", "register", "caller_id",
                             "number_format", "dids"}, "trunk")
        if "name" not in f or "host" not in f:
            r.error(item, "a trunk needs a name and a host")
            continue
        trunk = Trunk(name=r.text(f["name"][1], "trunk name") or "", host=Host().read(r, f["host"][1], "trunk host") or "")
        if trunk.name and not TRUNK_NAME.fullmatch(trunk.name):
            r.error(f["name"][1], f"trunk name '{trunk.name}' must be up to 32 letters, digits, '.', '_' or '-'")
        if any(t.name == trunk.name for t in out):
            r.error(f["name"][1], f"duplicate trunk name '{trunk.name}'")
            continue
        read_fields(r, f, trunk, TRUNK, lambda key: f"trunk {key}")
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


def read_dialplan(r: Reader, node: Node, cfg: Config) -> None:
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


def read_dhcp(r: Reader, node: Node, dhcp: Dhcp) -> None:
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
    read_fields(r, f, dhcp, DHCP, dotted("provisioning.dhcp"))
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


def read_provisioning(r: Reader, node: Node, cfg: Config) -> Node | None:
    """Returns the node of firmware_dir, if given (checks.check_firmware_dir needs data_dir first)."""
    p = cfg.provisioning
    p.enabled = True
    f = r.mapping(node, {"tftp_port", "http_port", "https_port", "firmware_dir", "auto_enrol", "lan", "discovery",
                         "dhcp", "pnp", "encryption", *FIRMWARE_UPGRADES}, "provisioning")
    read_fields(r, f, p, PROVISIONING_FLAGS, dotted("provisioning"))
    if "dhcp" in f:
        read_dhcp(r, f["dhcp"][1], p.dhcp)
    if "lan" in f:
        lan = r.text(f["lan"][1], "provisioning.lan")
        try:
            ipaddress.ip_network(lan or "", strict=False)
            p.lan = lan
        except ValueError:
            r.error(f["lan"][1], f"provisioning.lan must be a network like 192.168.1.0/24, not '{lan}'")
    read_fields(r, f, p, PROVISIONING_PORTS, dotted("provisioning"))
    read_fields(r, f, p, FIRMWARE_UPGRADES, dotted("provisioning"))
    if "firmware_dir" in f:
        folder = r.text(f["firmware_dir"][1], "provisioning.firmware_dir")
        if folder:
            p.firmware_dir = (cfg.path.parent / folder).resolve()
    read_fields(r, f, p, {"auto_enrol": Bool()}, dotted("provisioning"))
    return f["firmware_dir"][1] if "firmware_dir" in f else None
