"""Checks across sections that need no disk (the portal runs them too): the SIP ports apart from
each other and from the RTP range, and enough RTP ports for the calls allowed at once (whose
default follows from that range)."""
from __future__ import annotations

from yaml.nodes import Node

from .nodes import Reader
from .schema import DEFAULT_CONCURRENT_CALLS, RTP_PORTS_PER_CALL, RTP_PORTS_SPARE, Config


def check_ports(r: Reader, node: Node, cfg: Config) -> None:
    """`node`: the network section (or the whole config without one), where errors are shown."""
    net = cfg.network
    if net.feature_port == 0:
        net.feature_port = net.sip_port + 20 if net.sip_port <= 65515 else net.sip_port - 20
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


def check_call_capacity(r: Reader, node: Node, cfg: Config) -> None:
    rtp = range(cfg.network.rtp_ports[0], cfg.network.rtp_ports[1] + 1)
    if cfg.max_concurrent_calls == 0:
        room = (len(rtp) - RTP_PORTS_SPARE) // RTP_PORTS_PER_CALL
        cfg.max_concurrent_calls = max(1, min(DEFAULT_CONCURRENT_CALLS, room))
    needed = cfg.max_concurrent_calls * RTP_PORTS_PER_CALL + RTP_PORTS_SPARE
    if len(rtp) < needed:
        r.error(node, f"network.rtp_ports: {len(rtp)} ports are too few for calls.max_concurrent "
                      f"{cfg.max_concurrent_calls} (need {needed}: {RTP_PORTS_PER_CALL} a call and {RTP_PORTS_SPARE} spare)")


def check_firmware_dir(r: Reader, node: Node, cfg: Config) -> None:
    """Everything in provisioning.firmware_dir is served to the LAN without credentials (TFTP,
    HTTP): it must not be data_dir, below it, or above it (credentials.json, the TLS key)."""
    folder, data = cfg.provisioning.firmware_dir, cfg.data_dir
    if folder is not None and (folder == data or data in folder.parents or folder in data.parents):
        r.error(node, f"provisioning.firmware_dir {folder} must be apart from data_dir {data}: "
                      "what it holds is served to any phone on the LAN")
