"""The office config as the rest of the box sees it: plain dataclasses with their defaults, and
the limits the loader checks them against. Standard library only."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

EXTENSION_NUMBER = re.compile(r"^[0-9]{2,6}$")
# The feature server is one process on the PJSIP edgepbx builds (scripts/pjsip/config_site.h:
# PJSUA_MAX_CALLS 1024 legs). A bridged call holds two legs, each an RTP and an RTCP port.
MAX_CONCURRENT_CALLS = 500
DEFAULT_CONCURRENT_CALLS = 60
RTP_PORTS_PER_CALL = 4
RTP_PORTS_SPARE = 16  # ring groups, pickups and transfers hold legs beyond two per call
CALL_CLASSES = ("local", "national", "mobile", "international", "premium", "emergency")
MAX_TRUNKS = 6
TOP_LEVEL_KEYS = {"site", "data_dir", "network", "recording", "calls", "security", "extensions", "logging",
                  "features", "provisioning", "trunks", "dialplan", "inbound", "cloud"}


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
    record: bool = True  # false: no call this extension makes, answers or picks up is recorded


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


SOUNDS = Path(__file__).resolve().parent.parent / "sounds"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Step:
    """One step of an inbound scenario: ring extensions at once, or call a number out."""
    kind: str                  # "ring" or "external"
    targets: list[str]
    timeout: int


ASSETS_DIR = "assets"  # under data_dir: the sounds the portal sent, each named <sha256>.wav


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
    menu: dict[str, list[Step]] = field(default_factory=dict)  # one digit pressed in the greeting -> its steps
    numbers: dict[str, list[Step]] = field(default_factory=dict)  # a dialled number (digits) -> its own day steps


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
    pickup: bool = True  # the memo: pickup "has to be switched on in the configurator"; off, its codes get the notice
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
    # Phone firmware the portal pins: phones are upgraded in the window (site time), a wave at a
    # time; one not registered on the new version within the deadline stops the site's upgrades.
    firmware_window: str = "01:00-05:00"
    firmware_wave: int = 5
    firmware_deadline_seconds: int = 1200


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
    allow_http: bool = False        # a portal at http:// (a lab); otherwise https:// only
    ca_file: Path | None = None     # PEM bundle the portal's certificate must chain to; None: the system's
    pin_sha256: str = ""            # SHA-256 of the portal's certificate (DER), hex: trusted only if it matches


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
    recording_format: str = "opus"  # kept and sent as Ogg Opus once the call ends (appliance/opus.py), or "wav"
    no_answer_timeout: int = 30
    max_concurrent_calls: int = 0  # 0 until loaded: as many as network.rtp_ports allow, at most 60
    security: Security = field(default_factory=Security)
    cloud: Cloud = field(default_factory=Cloud)
    extensions: list[Extension] = field(default_factory=list)
    log_level: str = "info"
    assets: set[str] = field(default_factory=set)  # SHA-256 of each sound named as "sha256:..." (from the portal)

    def extension(self, number: str) -> Extension | None:
        return next((e for e in self.extensions if e.number == number), None)

    @property
    def domain(self) -> str:
        return self.network.sip_domain or self.network.bind
