"""`edgepbx check` and `edgepbx run` refuse a broken office config with FILE:LINE: errors, exit 2."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import EDGEPBX, ROOT

GOOD = """\
site: {name: "Shop"}
data_dir: ./var
network:
  bind: 127.0.0.1
  sip_port: 5090
  rtp_ports: [30000, 30100]
recording: {enabled: true}
extensions:
  - {number: "101", name: "Reception", password: "s3cret-101"}
  - {number: "102", name: "Sales"}
"""


def edgepbx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(EDGEPBX + list(args), capture_output=True, text=True, cwd=ROOT, timeout=60)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "office.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_config_passes(tmp_path):
    result = edgepbx("check", "--config", str(write(tmp_path, GOOD)))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize("broken, line, words", [
    (GOOD.replace("recording:", "recordings:"), 7, "unknown key 'recordings'"),
    (GOOD.replace("recording: {", "recording: {format: mp3, "), 7, "recording.format must be opus or wav"),
    (GOOD + "trunks: [{name: main, host: 192.0.2.10, dids: ['+78312000000']}]\ninbound:\n  numbers:\n"
     "    '+78312000000': [{ring: ['101']}]\n    '78312000000': [{ring: ['102']}]\n", 15,
     "inbound.numbers: '78312000000' is the number on line 14 again"),
    (GOOD.replace('"102", name: "Sales"', '"101", name: "Sales"'), 10, "duplicate extension 101 (first on line 9)"),
    (GOOD.replace("sip_port: 5090", "sip_port: 70000"), 5, "network.sip_port must be between 1 and 65535"),
    (GOOD.replace("sip_port: 5090", "sip_port: fifty"), 5, "network.sip_port must be a whole number"),
    (GOOD.replace("bind: 127.0.0.1", "bind: localhost-ish"), 4, "network.bind must be an IP address"),
    (GOOD.replace('name: "Shop"}', 'name: "Shop"'), 2, "YAML syntax error"),
    (GOOD.replace('"102"', '"1x2"'), 10, "extension number must be 2 to 6 digits"),
    (GOOD.replace("s3cret-101", "short"), 9, "password must have at least 8 characters"),
    (GOOD.replace("enabled: true", "enabled: maybe"), 7, "recording.enabled must be true or false"),
    (GOOD.replace("  sip_port: 5090\n", "  sip_port: 5090\n  sip_port: 5091\n"), 6, "duplicate key 'sip_port'"),
    (GOOD + "features: {transfer_key: '##'}\n", 11, "features.transfer_key must be one DTMF key"),
    (GOOD + "features:\n  transfer_digit_timeout: 0\n", 12, "features.transfer_digit_timeout must be between 1 and 30"),
    (GOOD + "features:\n  music_on_hold: moh.wav\n", 12, "features.music_on_hold: no such WAV file"),
])
def test_each_kind_of_error_names_file_and_line(tmp_path, broken, line, words):
    path = write(tmp_path, broken)
    result = edgepbx("check", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}:{line}: " in result.stderr and words in result.stderr, result.stderr


def test_every_error_is_reported_at_once(tmp_path):
    broken = GOOD.replace("recording:", "recordings:").replace("sip_port: 5090", "sip_port: 0")
    result = edgepbx("check", "--config", str(write(tmp_path, broken)))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 2


def test_run_refuses_an_invalid_config_the_same_way(tmp_path):
    path = write(tmp_path, GOOD.replace("recording:", "recordings:"))
    result = edgepbx("run", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}:7: config: unknown key 'recordings'" in result.stderr
    assert not (tmp_path / "var").exists()  # nothing started, nothing written


def test_missing_file_is_a_clear_error(tmp_path):
    result = edgepbx("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config" in result.stderr


def test_missing_passwords_are_generated_once_random_and_kept(tmp_path):
    path = write(tmp_path, GOOD.replace('"102", name: "Sales"', '"102", name: "Sales"}\n  - {number: "103"'))
    first = json.loads(edgepbx("extensions", "--config", str(path), "--json").stdout)
    second = json.loads(edgepbx("extensions", "--config", str(path), "--json").stdout)
    by_number = {e["number"]: e["password"] for e in first}
    assert by_number["101"] == "s3cret-101"
    assert len(by_number["102"]) >= 16 and by_number["102"] != by_number["103"]
    assert first == second
    store = tmp_path / "var" / "credentials.json"
    assert store.stat().st_mode & 0o077 == 0  # readable by the appliance only


@pytest.mark.parametrize("phone, words", [
    ('{mac: "80:5E:C0:11:22", vendor: yealink, model: T46U}', "is not a MAC address"),
    ('{mac: "805EC0112233", vendor: nokia, model: T46U}', "phone vendor must be one of"),
    ('{mac: "805EC0112233", vendor: yealink, model: T99X}', "unknown yealink model 'T99X'"),
    ('{mac: "805EC0112233", vendor: yealink}', "phone needs model"),
    ('{mac: "805EC0112233", vendor: cisco, model: SPA504G, keys: [{type: blf, value: "1"}, {type: blf, value: "2"}, '
     '{type: blf, value: "3"}, {type: blf, value: "4"}, {type: blf, value: "5"}]}', "5 keys, but a cisco SPA504G has 4"),
    ('{mac: "805EC0112233", vendor: yealink, model: T46U, keys: [{type: intercom, value: "1"}]}', "phone key type must be"),
])
def test_phone_errors_name_file_and_line(tmp_path, phone, words):
    path = write(tmp_path, GOOD.replace('"102", name: "Sales"}', f'"102", name: "Sales", phone: {phone}}}'))
    result = edgepbx("check", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}:10: " in result.stderr and words in result.stderr, result.stderr


def test_the_same_mac_on_two_extensions_is_an_error(tmp_path):
    text = GOOD.replace('"101", name: "Reception", password: "s3cret-101"}',
                        '"101", name: "Reception", password: "s3cret-101", phone: {mac: "805ec0112233", vendor: yealink, model: T46U}}')
    text = text.replace('"102", name: "Sales"}', '"102", name: "Sales", phone: {mac: "80-5E-C0-11-22-33", vendor: yealink, model: T46U}}')
    result = edgepbx("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2 and "MAC 80-5E-C0-11-22-33 is already used on line 9" in result.stderr


def test_the_checks_without_the_box_disk_accept_files_only_the_box_has(tmp_path):
    """What the portal can run: every check but the files the config names (greetings, music,
    certificates), which live on the box; the box itself still refuses a config naming a missing one."""
    from appliance.config import InvalidConfig, load, parse
    text = GOOD + "inbound: {greeting: sounds/hello.wav}\nfeatures: {music_on_hold: sounds/moh.wav, transfer_key: '##'}\n"
    path = write(tmp_path, text)
    with pytest.raises(InvalidConfig) as on_box:
        load(path)
    assert [e.line for e in on_box.value.errors] == [12, 12, 11]  # the key, the music, the greeting
    with pytest.raises(InvalidConfig) as off_box:
        parse(path.read_text(), path, on_box=False)
    assert [e.message for e in off_box.value.errors] == ["features.transfer_key must be one DTMF key (0-9 * # A-D)"]
    cfg = parse(path.read_text().replace("'##'", "'#'"), path, on_box=False)
    assert cfg.inbound.greeting == tmp_path / "sounds" / "hello.wav"


def test_a_sound_from_the_portal_is_named_by_its_hash_and_must_have_that_content(tmp_path):
    """The portal names an uploaded greeting "sha256:<hash>"; the box keeps it under data_dir and
    runs a config naming it only when the file is there with exactly that content."""
    import hashlib

    from appliance.config import InvalidConfig, load
    sound = (ROOT / "appliance" / "sounds" / "greeting.wav").read_bytes()
    sha = hashlib.sha256(sound).hexdigest()
    path = write(tmp_path, GOOD + f"inbound: {{greeting: \"sha256:{sha}\", night_greeting: \"sha256:{'0' * 63}\"}}\n")
    with pytest.raises(InvalidConfig) as short:
        load(path)
    assert (11, "inbound.night_greeting: a sound from the portal is named sha256: and 64 lowercase hex digits") \
        in [(e.line, e.message) for e in short.value.errors]
    path.write_text(path.read_text().replace(", night_greeting: \"sha256:" + "0" * 63 + '"', ""))
    with pytest.raises(InvalidConfig) as missing:
        load(path)
    stored = tmp_path / "var" / "assets" / f"{sha}.wav"
    assert missing.value.errors[0].message == f"inbound.greeting: no such WAV file {stored}"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(sound[:-1] + b"x")
    with pytest.raises(InvalidConfig) as changed:
        load(path)
    assert "is not the sound the portal sent" in changed.value.errors[0].message
    stored.write_bytes(sound)
    cfg = load(path)
    assert cfg.inbound.greeting == stored and cfg.assets == {sha}


@pytest.mark.parametrize("hostile, line, words", [
    # a domain that would close Kamailio's quoted string and load a module of the attacker's
    (GOOD.replace("  bind: 127.0.0.1\n", '  bind: 127.0.0.1\n  sip_domain: "pbx.example\\"\\nloadmodule \\"evil.so"\n'), 5,
     "network.sip_domain must be one line of printable text"),
    (GOOD.replace("  bind: 127.0.0.1\n", "  bind: 127.0.0.1\n  sip_domain: 'pbx.example\"'\n"), 5,
     "network.sip_domain must be a host name or an IP address"),
    # a name that would add a line to a Yealink or Fanvil per-MAC file
    (GOOD.replace('name: "Sales"', 'name: "Sales\\nstatic.auto_provision.server.url = http://evil/"'), 10,
     "extension name must be one line of printable text"),
    (GOOD.replace("s3cret-101", 's3cret-101\\"/><x'), 9, "extension 101: password may hold"),
    (GOOD + "trunks:\n  - {name: main, host: 'sip.example\"', password: \"p\\u2028x\"}\n", 12,
     "trunk host must be a host name or an IP address"),
    (GOOD + "trunks:\n  - {name: 'a b', host: sip.example}\n", 12, "trunk name 'a b' must be"),
])
def test_values_that_would_break_a_generated_file_are_refused(tmp_path, hostile, line, words):
    """Names may be any printable text (Russian, quotes, dashes); no value may hold a line break,
    domains and hosts are host names, and passwords keep out what ends a quoted value."""
    result = edgepbx("check", "--config", str(write(tmp_path, hostile)))
    assert result.returncode == 2
    assert f":{line}: " in result.stderr and words in result.stderr, result.stderr


def test_names_in_russian_with_quotes_and_dashes_are_fine(tmp_path):
    text = GOOD.replace('name: "Sales"', 'name: "Отдел продаж \\"Ромашка\\" (2-й этаж)"')
    result = edgepbx("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("folder", ["./var", "./var/firmware", "."])
def test_a_firmware_folder_that_would_serve_the_boxs_secrets_is_refused(tmp_path, folder):
    """The firmware folder is served to any phone on the LAN: with data_dir in it or it in data_dir,
    credentials.json and the TLS key would be one TFTP request away."""
    text = GOOD + f"provisioning: {{firmware_dir: {folder}}}\n"
    result = edgepbx("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2 and ":11: provisioning.firmware_dir" in result.stderr, result.stderr
    fine = edgepbx("check", "--config", str(write(tmp_path, GOOD + "provisioning: {firmware_dir: ./firmware}\n")))
    assert fine.returncode == 0, fine.stderr


def test_the_portal_trust_settings_are_checked_on_their_lines(tmp_path):
    """cloud.pin_sha256 must be a SHA-256 in hex (colons allowed, as browsers show it);
    cloud.ca_file must be a PEM file on the box; allow_http a yes or no."""
    text = GOOD + "cloud:\n  allow_http: sometimes\n  pin_sha256: 'ab:cd'\n  ca_file: nowhere.pem\n"
    result = edgepbx("check", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2, result.stderr
    for line, words in ((12, "cloud.allow_http"), (13, "cloud.pin_sha256 must be 64 hexadecimal digits"),
                        (14, "cloud.ca_file: no such file")):
        assert f":{line}: {words}" in result.stderr, result.stderr
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    pin = ":".join(["AB"] * 32)
    fine = edgepbx("check", "--config", str(write(tmp_path, GOOD + f"cloud: {{pin_sha256: '{pin}', ca_file: ca.pem}}\n")))
    assert fine.returncode == 0, fine.stderr


def test_run_refuses_a_log_folder_it_cannot_make_with_a_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = edgepbx("run", "--config", str(write(tmp_path, GOOD)), "--log-dir", str(tmp_path / "a-file" / "logs"))
    assert result.returncode == 2 and "--log-dir" in result.stderr and "Traceback" not in result.stderr, result.stderr
