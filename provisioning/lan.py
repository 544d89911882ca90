"""The office LAN: the network whose phones may fetch their config without credentials."""
from __future__ import annotations

import ipaddress

from appliance.config import Config


def office_lan(cfg: Config) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if cfg.provisioning.lan:
        return ipaddress.ip_network(cfg.provisioning.lan, strict=False)
    bind = ipaddress.ip_address(cfg.network.bind)
    prefix = 8 if bind.is_loopback else (24 if bind.version == 4 else 64)
    return ipaddress.ip_network(f"{bind}/{prefix}", strict=False)
