"""What the running box exposes: every socket it listens on is on the configured LAN address, every
file holding a secret is readable by the appliance's user only, and the provisioning servers give
out nothing but their phones' files, however the path is dressed up. (The image's boot test checks
that the box's processes run as their own user with only the capabilities for their ports.)"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import EDGEPBX, ROOT, descendants_of, free_port_block, start_pbx
from test_provisioning import curl, http_status, wait_http

BIND = "127.0.0.5"  # not 127.0.0.1: a listener on every address or on the default one shows up


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    directory = tmp_path_factory.mktemp("audited")
    base = free_port_block(300)
    firmware = directory / "firmware"
    firmware.mkdir()
    (firmware / "T46U.rom").write_bytes(b"firmware image")
    (directory / "office.yaml").write_text(f"""site: {{name: "Audited office"}}
data_dir: ./var
network: {{bind: {BIND}, sip_port: {base}, rtp_ports: [{base + 100}, {base + 299}]}}
provisioning: {{tftp_port: {base + 30}, http_port: {base + 31}, https_port: {base + 32}, firmware_dir: ./firmware,
               discovery: false, pnp: false}}
trunks:
  - {{name: main, host: 127.0.0.9, port: {base + 40}, username: office, password: trunk-secret-1, register: true}}
extensions:
  - {{number: "101", name: "Reception", password: "pw-101-secret", phone: {{mac: "80:5E:C0:11:22:33", vendor: yealink, model: T46U}}}}
  - {{number: "102", name: "Sales"}}
""")
    pbx = start_pbx(directory / "office.yaml")
    pbx.ports = {"sip": base, "tls": base + 1, "feature": base + 20, "tftp": base + 30, "http": base + 31,
                 "https": base + 32}
    wait_http(base + 31, BIND)
    yield pbx
    pbx.stop()


def socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


def listeners(inodes: set[int]) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of each listening TCP socket and unconnected UDP socket among `inodes`."""
    found = []
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if inode not in inodes:
                continue
            listening = state == "0A" if proto.startswith("tcp") else remote.split(":")[1] == "0000"
            if not listening:
                continue
            address, port = local.split(":")
            if proto.endswith("6"):
                text = "::" if int(address, 16) == 0 else address
            else:
                text = ".".join(str(b) for b in bytes.fromhex(address)[::-1])
            found.append((proto, text, int(port, 16)))
    return found


def test_every_listener_is_on_the_lan_address(box):
    sockets = listeners(socket_inodes(descendants_of(box.proc.pid)))
    elsewhere = [s for s in sockets if s[1] != BIND]
    assert not elsewhere, f"listening beyond {BIND}: {elsewhere}"
    ports = {(proto, port) for proto, _, port in sockets}
    p = box.ports
    assert {("udp", p["sip"]), ("tcp", p["sip"]), ("tcp", p["tls"]), ("udp", p["feature"]), ("udp", p["tftp"]),
            ("tcp", p["http"]), ("tcp", p["https"])} <= ports, sorted(ports)


def test_every_file_with_a_secret_is_for_the_appliance_only(box):
    """Each file under data_dir that holds an extension's, the trunk's or the TLS key's secret is
    mode 0600 (or in a 0700 folder); the config file is the installer's to protect."""
    secrets = [b"pw-101-secret", b"trunk-secret-1", b"PRIVATE KEY"]
    generated = subprocess.run(EDGEPBX + ["extensions", "--config", str(box.config), "--json"], capture_output=True,
                               text=True, check=True, cwd=ROOT).stdout
    secrets.append(next(e["password"] for e in json.loads(generated) if e["number"] == "102").encode())
    holding = []
    for path in box.data_dir.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if any(s in data for s in secrets):
            holding.append(path)
            mode = path.stat().st_mode & 0o777
            folder_mode = path.parent.stat().st_mode & 0o777
            assert mode & 0o077 == 0 or folder_mode & 0o077 == 0, f"{path} is mode {mode:o} and holds a secret"
    names = {p.name for p in holding}
    assert {"credentials.json", "routing.json", "box.key"} <= names, names


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "/etc/passwd", "firmware/../../office.yaml",
                                  "firmware/../credentials.json", "..%2f..%2f..%2fetc%2fpasswd",
                                  "firmware/%2e%2e/%2e%2e/office.yaml", "firmware/T46U.rom/../../office.yaml",
                                  "....//....//etc/passwd"])
def test_provisioning_serves_nothing_outside_its_files(box, path, tmp_path):
    p = box.ports
    assert http_status(f"http://{BIND}:{p['http']}/{path}", "--path-as-is") == 404
    assert http_status(f"https://{BIND}:{p['https']}/{path}", "--path-as-is", "-k") == 404
    over_tftp = curl(f"tftp://{BIND}:{p['tftp']}/{path}", "--path-as-is")
    assert over_tftp.returncode != 0 and b"root:" not in over_tftp.stdout and b"extensions" not in over_tftp.stdout
    target = tmp_path / "got"
    hpa = subprocess.run(["tftp", BIND, str(p["tftp"]), "-m", "binary", "-c", "get", path, str(target)],
                         capture_output=True, text=True, timeout=30)
    assert not target.exists() or target.stat().st_size == 0, hpa.stdout + hpa.stderr
    # and what is meant to be served still is
    assert curl(f"tftp://{BIND}:{p['tftp']}/firmware/T46U.rom").stdout == b"firmware image"
