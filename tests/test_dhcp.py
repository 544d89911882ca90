"""The box as the LAN's DHCP server (dnsmasq) handing phones the provisioning options, and passive
discovery of DHCP clients; a scapy client in a network namespace of the test's own (veth pair)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from conftest import EDGEPBX, ROOT, free_port_block, start_pbx

def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def lan():
    """A namespace 'phone side' joined to the root namespace by a veth pair on a private /24.
    Needs root, as `make setup` does: said plainly instead of a skip that would hide the test."""
    assert os.geteuid() == 0, "the DHCP/PnP tests make network namespaces and run dnsmasq: run them as root"
    tag = f"{random.randrange(16**6):06x}"
    ns, host_if, phone_if = f"epx{tag}", f"epxh{tag}", f"epxc{tag}"
    net = f"10.213.{random.randrange(1, 250)}"
    ip("netns", "add", ns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", phone_if)
        ip("link", "set", phone_if, "netns", ns)
        ip("addr", "add", f"{net}.1/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", phone_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield {"ns": ns, "phone_if": phone_if, "net": net}
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_phone_gets_an_address_and_the_provisioning_options_and_is_discovered(lan, tmp_path):
    net = lan["net"]
    base = free_port_block(140)
    (tmp_path / "office.yaml").write_text(f"""site: {{name: "DHCP office"}}
data_dir: ./var
network: {{bind: {net}.1, sip_port: {base}, rtp_ports: [{base + 100}, {base + 139}]}}
calls: {{max_concurrent: 2}}
provisioning:
  tftp_port: {base + 40}
  http_port: {base + 41}
  https_port: 0
  dhcp: {{mode: serve, range: [{net}.100, {net}.150], router: {net}.1}}
extensions:
  - {{number: "101", name: "Reception", phone: {{mac: "805EC0AABBCC", vendor: yealink, model: T46U}}}}
""")
    pbx = start_pbx(tmp_path / "office.yaml")
    try:
        time.sleep(1.5)  # dnsmasq and the DHCP listener have no readiness signal of their own
        result = subprocess.run(["ip", "netns", "exec", lan["ns"], sys.executable, str(ROOT / "tests" / "dhcp_client.py"),
                                 lan["phone_if"], "805ec0aabbcc", "yealink SIP-T46U"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr + pbx.log_text()[-2000:]
        ack = json.loads(result.stdout.strip().splitlines()[-1])
        last = int(ack["address"].rsplit(".", 1)[1])
        assert ack["address"].startswith(f"{net}.") and 100 <= last <= 150
        assert ack["options"]["tftp_server_name"] == f"http://{net}.1:{base + 41}"  # option 66
        assert ack["options"]["tftp_server_address"] == f"{net}.1"                    # option 150
        assert ack["options"]["NTP_server"] == f"{net}.1"
        assert ack["options"]["router"] == f"{net}.1"

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = subprocess.run(EDGEPBX + ["devices", "--config", str(tmp_path / "office.yaml"), "--json"],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            row = next(r for r in json.loads(out.stdout) if r["mac"] == "805ec0aabbcc")
            if row["ip"]:
                break
            time.sleep(0.3)
        assert row["ip"] == ack["address"] and row["extension"] == "101"
    finally:
        pbx.stop()


def test_an_unconfigured_phone_is_listed_with_its_vendor(lan, tmp_path):
    net = lan["net"]
    base = free_port_block(140)
    (tmp_path / "office.yaml").write_text(f"""data_dir: ./var
network: {{bind: {net}.1, sip_port: {base}, rtp_ports: [{base + 100}, {base + 139}]}}
calls: {{max_concurrent: 2}}
provisioning: {{tftp_port: 0, http_port: {base + 41}, https_port: 0, dhcp: {{mode: serve, range: [{net}.100, {net}.150]}}}}
extensions:
  - {{number: "101", name: "Reception"}}
""")
    pbx = start_pbx(tmp_path / "office.yaml")
    try:
        time.sleep(1.5)
        subprocess.run(["ip", "netns", "exec", lan["ns"], sys.executable, str(ROOT / "tests" / "dhcp_client.py"),
                        lan["phone_if"], "000b82123456", "Grandstream GXP2170"], capture_output=True, timeout=30)
        deadline = time.monotonic() + 5
        rows = []
        while time.monotonic() < deadline and not rows:
            out = subprocess.run(EDGEPBX + ["devices", "--config", str(tmp_path / "office.yaml"), "--json"],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            rows = [r for r in json.loads(out.stdout) if r["mac"] == "000b82123456"]
            time.sleep(0.3)
        assert rows and rows[0]["vendor"] == "grandstream" and rows[0]["configured"] is False
        assert rows[0]["vendor_class"] == "Grandstream GXP2170"
    finally:
        pbx.stop()


def test_sip_multicast_pnp_subscribe_is_answered_with_the_provisioning_url(lan, tmp_path):
    net, ns = lan["net"], lan["ns"]
    ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.50/24", "dev", lan["phone_if"])
    ip("netns", "exec", ns, "ip", "route", "add", "224.0.0.0/4", "dev", lan["phone_if"])
    base = free_port_block(140)
    (tmp_path / "office.yaml").write_text(f"""data_dir: ./var
network: {{bind: {net}.1, sip_port: {base}, rtp_ports: [{base + 100}, {base + 139}]}}
calls: {{max_concurrent: 2}}
provisioning: {{tftp_port: 0, http_port: {base + 41}, https_port: 0}}
extensions:
  - {{number: "101", name: "Reception"}}
""")
    pbx = start_pbx(tmp_path / "office.yaml")
    try:
        time.sleep(1.0)
        result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(ROOT / "tests" / "pnp_phone.py"),
                                 f"{net}.50", "805EC0DDEEFF"], capture_output=True, text=True, timeout=30)
        replies = json.loads(result.stdout.strip().splitlines()[-1])
        assert len(replies) == 2, result.stdout + result.stderr + pbx.log_text()[-1500:]
        ok = next(r for r in replies if r.startswith("SIP/2.0 200"))
        notify = next(r for r in replies if r.startswith("NOTIFY "))
        assert "Call-ID: pnp-805EC0DDEEFF" in ok
        assert "Event: ua-profile" in notify and "Content-Type: application/url" in notify
        assert notify.rstrip().endswith(f"http://{net}.1:{base + 41}")
        out = subprocess.run(EDGEPBX + ["devices", "--config", str(tmp_path / "office.yaml"), "--json"],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        row = next(r for r in json.loads(out.stdout) if r["mac"] == "805ec0ddeeff")
        assert row["vendor"] == "yealink" and row["ip"] == f"{net}.50"
    finally:
        pbx.stop()
