"""The box's cloud agent against a real running portal (SQLite and PostgreSQL): enrolment, calls
and recordings arriving exactly once, outages, resumed uploads, revocation, tenant isolation and
two portal instances behind a load balancer."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pjsua2 as pj
import pytest

from conftest import ROOT, start_pbx, write_office
from phones import background_calls, talk
from portal_lab import (EDGEPBX, FAST_CLOUD, AgentProcess, Balancer, S3Server, Portal, close_portal, drop_database,
                        box_recordings, enroll, enrolled_box, free_tcp_port, new_database, seed_calls, start_portal)

def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def edgepbx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(EDGEPBX + list(args), capture_output=True, text=True, cwd=ROOT, timeout=60)


def status(config: Path) -> dict:
    out = edgepbx("status", "--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["cloud"]


def two_phones(lab, pbx) -> tuple:
    """Extensions 101 and 102 registered to `pbx` (500 Hz and 1300 Hz tones)."""
    lab.port = pbx.sip_port
    return lab.phone("101", "pw-101-secret", 500.0), lab.phone("102", "pw-102-secret", 1300.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def portal(request, tmp_path):
    portal = start_portal(tmp_path, request.param)
    yield portal
    close_portal(portal)


@pytest.fixture
def sqlite_portal(tmp_path):
    portal = start_portal(tmp_path, "sqlite")
    yield portal
    close_portal(portal)


def test_an_enrolment_code_works_once_and_only_its_hash_is_kept(sqlite_portal, tmp_path):
    (tmp_path / "box").mkdir()
    office = write_office(tmp_path / "box", FAST_CLOUD)
    assert status(office)["enrolled"] is False
    code = sqlite_portal.add_site("Acme", "acme-hq")
    first = enroll(office, sqlite_portal, code.lower().replace("-", " "))  # as an installer might type it
    assert first.returncode == 0, first.stderr
    link_file = office.parent / "var" / "cloud.json"
    credential = json.loads(link_file.read_text())["credential"]
    assert link_file.stat().st_mode & 0o777 == 0o600
    again = enroll(office, sqlite_portal, code)
    assert again.returncode == 1 and "already used" in again.stderr
    wrong = enroll(office, sqlite_portal, "AAAA-BBBB-CCCC-DDDD")
    assert wrong.returncode == 1 and "unknown or expired" in wrong.stderr
    cloud = status(office)
    assert cloud["enrolled"] and cloud["site"] == "acme-hq" and cloud["portal_url"] == sqlite_portal.url
    db = sqlite3.connect(sqlite_portal.data_dir / "portal.sqlite")
    dump = "\n".join(db.iterdump())  # everything the portal stores
    db.close()
    assert credential not in dump and code not in dump
    assert hashlib.sha256(credential.encode()).hexdigest() in dump


def test_the_box_api_says_what_is_wrong_with_a_body(sqlite_portal):
    """Malformed bodies get a 4xx with the API's own {"error": ...} form, never a 500; fields of
    an unexpected type go on to the portal's own checks, which refuse them with a reason."""
    import requests
    url = sqlite_portal.url
    not_json = requests.post(f"{url}/api/v1/enroll", data=b"code=1", timeout=10)
    assert not_json.status_code == 400 and not_json.json() == {"error": "the body must be JSON"}
    empty = requests.post(f"{url}/api/v1/enroll", timeout=10)
    assert empty.status_code == 400 and empty.json() == {"error": "the body must be JSON"}
    array = requests.post(f"{url}/api/v1/enroll", json=["code"], timeout=10)
    assert array.status_code == 400 and array.json() == {"error": "the body must be a JSON object"}
    number = requests.post(f"{url}/api/v1/enroll", json={"code": 12345678}, timeout=10)
    assert number.status_code == 403 and number.json() == {"error": "unknown or expired enrolment code"}
    anonymous = requests.post(f"{url}/api/v1/heartbeat", json={}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "missing site credential"}
    code = sqlite_portal.add_site("Acme", "acme-hq")
    enrolled = requests.post(f"{url}/api/v1/enroll", data=json.dumps({"code": code}), timeout=10)  # no Content-Type
    credential = enrolled.json()["credential"]
    box = {"Authorization": f"Bearer {credential}"}
    batch = requests.post(f"{url}/api/v1/calls", json={"calls": "all of them"}, headers=box, timeout=10)
    assert batch.status_code == 422 and "calls must be a list" in batch.json()["error"]
    offer = requests.post(f"{url}/api/v1/recordings", json={"call_id": 1, "sha256": "x", "size": "big"}, headers=box,
                          timeout=10)
    assert offer.status_code == 422 and "sha256 (64 hex digits)" in offer.json()["error"]
    beat = requests.post(f"{url}/api/v1/heartbeat", json={"version": "test"}, headers=box, timeout=10)
    assert beat.status_code == 200 and beat.json() == {"ok": True, "config_version": None, "phone_actions": [],
                                                       "callbacks": [], "captures": [], "firmware": [], "update": None}


def test_a_recorded_call_arrives_in_the_portal_with_its_recording(portal, lab, tmp_path):
    office = enrolled_box(tmp_path, portal)
    pbx = start_pbx(office)
    try:
        a, b = two_phones(lab, pbx)
        call, _ = talk(lab, a, b)
        lab.poll(2.0)
        call.hangup_now()
        box = pbx.wait_cdr(lambda r: r["src"] == "101" and r["disposition"] == "answered")
        calls = portal.wait_calls("acme-hq", lambda cs: any(c["id"] == box["id"] and c["recording_sha256"] for c in cs))
        there = next(c for c in calls if c["id"] == box["id"])
        box = next(r for r in pbx.cdrs() if r["id"] == box["id"])  # its recording is the Opus file now
        assert box["recording"].endswith(".opus")
        assert {k: there[k] for k in box} == box  # every field as the box has it
        assert there["recording_sha256"] == sha256_of(box["recording"])
        assert sha256_of(portal.stored(there["recording_sha256"])) == there["recording_sha256"]
        deadline = time.monotonic() + 10
        while True:  # a heartbeat every 2 s reports the box's state
            site = next(s for s in json.loads(portal.cli("sites", "--json").stdout) if s["site"] == "acme-hq")
            if site["status"].get("phones_registered") == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert site["online"] and site["org"] == "Acme"
        assert site["status"]["phones_registered"] == 2 and site["status"]["extensions"] == 5
    finally:
        lab.release_phones()
        pbx.stop()


def test_fifty_calls_while_the_portal_is_down_all_arrive_once_when_it_is_back(lab, tmp_path):
    portal = start_portal(tmp_path, "postgresql")
    office = enrolled_box(tmp_path, portal)
    pbx = start_pbx(office)
    try:
        portal.stop()
        a, b = two_phones(lab, pbx)
        background_calls(lab, a, b, 50)
        lab.poll(1.5)
        lab.hang_up_everything()
        deadline = time.monotonic() + 20
        while len([r for r in pbx.cdrs() if r["recording"]]) < 50 and time.monotonic() < deadline:
            time.sleep(0.2)
        box = {r["id"]: r for r in pbx.cdrs()}
        assert len(box) == 50
        cloud = status(office)
        assert cloud["outbox"]["cdr"] == 50 and cloud["outbox"]["recording"] == 50
        assert cloud["last_error"] and "127.0.0.1" in cloud["last_error"]

        portal.start()  # same port, same database: the portal is back
        calls = portal.wait_calls("acme-hq", lambda cs: len(cs) >= 50 and all(c["recording_sha256"] for c in cs), 90)
        assert sorted(c["id"] for c in calls) == sorted(box)  # each once, none missing
        box = {r["id"]: r for r in pbx.cdrs()}  # encoded as Opus meanwhile, portal or none
        for c in calls:
            assert c["recording_sha256"] == sha256_of(box[c["id"]]["recording"])
            assert c["disposition"] == box[c["id"]]["disposition"] == "answered"
        deadline = time.monotonic() + 10
        while (cloud := status(office))["outbox"] != {"cdr": 0, "recording": 0, "rejected": 0} and time.monotonic() < deadline:
            time.sleep(0.3)
        assert cloud["outbox"] == {"cdr": 0, "recording": 0, "rejected": 0} and cloud["last_error"] is None
    finally:
        lab.release_phones()
        pbx.stop()
        close_portal(portal)


def test_one_odd_call_record_is_set_aside_and_every_other_call_and_recording_still_arrives(tmp_path):
    """A phone dialled a 200-digit number: its record's dst is longer than the portal stores. On
    PostgreSQL that once failed the whole batch with 500, the box resent it forever and nothing of
    the site arrived again. Now the portal answers 422 naming the field, the box sets that one
    record aside (kept, counted in its status) and the rest, before and after it, arrive."""
    portal = start_portal(tmp_path, "postgresql")
    office = enrolled_box(tmp_path, portal)
    data_dir = office.parent / "var"
    agent = None
    try:
        first = seed_calls(data_dir, 2, recording_seconds=0.5)
        odd = seed_calls(data_dir, 1, recording_seconds=0.5)[0]
        db = sqlite3.connect(data_dir / "cdr.sqlite")
        db.execute("UPDATE cdr SET dst = ? WHERE id = ?", ("8" * 200, odd))
        db.commit()
        db.close()
        later = seed_calls(data_dir, 2, recording_seconds=0.5)
        agent = AgentProcess(office).start()
        wanted = set(first + later)
        calls = portal.wait_calls("acme-hq", lambda cs: wanted <= {c["id"] for c in cs if c["recording_sha256"]}, 60)
        assert odd not in {c["id"] for c in calls}
        deadline = time.monotonic() + 20
        while status(office)["outbox"]["rejected"] < 1 and time.monotonic() < deadline:
            time.sleep(0.3)
        cloud = status(office)
        assert cloud["outbox"]["rejected"] >= 1 and cloud["outbox"]["cdr"] == 0, cloud
        assert "dst must be text of at most 64 characters" in agent.text()
        deadline = time.monotonic() + 20  # the next heartbeat tells the portal, whose site list shows the alarm
        while time.monotonic() < deadline:
            [site] = json.loads(portal.cli("sites", "--json").stdout)
            if any("set aside" in alarm for alarm in site["alarms"]):
                break
            time.sleep(0.5)
        assert "2 call record(s) or recording(s) set aside" in site["alarms"][0], site  # the record and its recording
    finally:
        if agent is not None:
            agent.kill()
        close_portal(portal)


def test_an_upload_killed_midway_resumes_where_it_stopped(sqlite_portal, tmp_path):
    office = enrolled_box(tmp_path, sqlite_portal, extra="cloud: {heartbeat_seconds: 60, retry_max_seconds: 2, upload_kbps: 2000, "
                          "allow_http: true}\nrecording: {format: wav}")  # a big file to cut: the box keeps WAV
    data_dir = office.parent / "var"
    [call_id] = seed_calls(data_dir, 1, recording_seconds=60)  # 1.9 MB at 250 KB/s: about 8 s
    recording = data_dir / "recordings" / f"{call_id}.wav"
    portal_db = sqlite3.connect(sqlite_portal.data_dir / "portal.sqlite")
    agent = AgentProcess(office).start()
    try:
        received = 0
        deadline = time.monotonic() + 30
        while received < 600_000 and time.monotonic() < deadline:
            row = portal_db.execute("SELECT received FROM upload").fetchone()
            received = row[0] if row else 0
            time.sleep(0.05)
        assert received >= 600_000, "the upload never got going"
        agent.kill()  # as a power cut would
        size = recording.stat().st_size
        assert received < size
        agent.start()
        calls = sqlite_portal.wait_calls("acme-hq", lambda cs: cs and cs[0]["recording_sha256"], 30)
        assert calls[0]["recording_sha256"] == sha256_of(recording)
        resumed = [line for line in agent.text().splitlines() if "resuming the upload" in line]
        assert resumed, agent.text()[-2000:]
        offset = int(resumed[0].split(" at byte ")[1].split()[0])
        assert offset >= received  # nothing sent twice, nothing skipped (the hash checks it)
        assert portal_db.execute("SELECT count(*) FROM upload").fetchone()[0] == 0
    finally:
        agent.kill()
        portal_db.close()


def test_a_site_credential_cannot_touch_another_sites_data(sqlite_portal, tmp_path):
    sys.path.insert(0, str(ROOT))
    from appliance.cloud.client import PortalClient, PortalRefused, Trust

    lab = Trust(allow_http=True)  # the test portal is plain http on loopback
    credentials = {}
    for site in ("site-a", "site-b"):
        office = enrolled_box(tmp_path, sqlite_portal, name=site, org=f"Org of {site}", site=site)
        credentials[site] = json.loads((office.parent / "var" / "cloud.json").read_text())["credential"]
    a, b = (PortalClient(sqlite_portal.url, credentials[s], trust=lab) for s in ("site-a", "site-b"))
    record = {"id": "8c0b9f46-3a36-4d7e-9c56-0d5b3f0e9a11", "started_at": "2026-11-25T10:00:00.000+03:00",
              "direction": "inbound", "src": "+74951234567", "dst": "101", "disposition": "answered"}
    b.request("POST", "/api/v1/calls", {"calls": [record]})
    a.request("POST", "/api/v1/calls", {"calls": [dict(record, src="+70000000000", disposition="failed")]})
    [b_call] = sqlite_portal.calls("site-b")
    assert b_call["src"] == "+74951234567" and b_call["disposition"] == "answered"  # untouched by A
    [a_call] = sqlite_portal.calls("site-a")
    assert a_call["src"] == "+70000000000"

    only_b = dict(record, id="5f1d2c7e-8a4b-4c3d-9e2f-1a0b9c8d7e6f")
    b.request("POST", "/api/v1/calls", {"calls": [only_b]})
    sha = hashlib.sha256(b"B's recording").hexdigest()
    with pytest.raises(PortalRefused) as refused:  # A cannot attach a recording to B's call
        a.request("POST", "/api/v1/recordings", {"call_id": only_b["id"], "sha256": sha, "size": 13})
    assert refused.value.status == 409
    assert b.request("POST", "/api/v1/recordings", {"call_id": only_b["id"], "sha256": sha, "size": 13})["offset"] == 0
    with pytest.raises(PortalRefused) as refused:  # nor write into B's upload
        a.request("PUT", f"/api/v1/recordings/{sha}?call_id={only_b['id']}&offset=0", b"A's bytes....")
    assert refused.value.status == 404
    for client in (PortalClient(sqlite_portal.url, trust=lab), PortalClient(sqlite_portal.url, "epbx_guessed", trust=lab)):
        with pytest.raises(PortalRefused) as refused:
            client.request("POST", "/api/v1/calls", {"calls": [record]})
        assert refused.value.status == 401


def test_a_revoked_site_is_refused_and_its_box_keeps_what_it_could_not_send(sqlite_portal, tmp_path):
    office = enrolled_box(tmp_path, sqlite_portal)
    data_dir = office.parent / "var"
    first = seed_calls(data_dir, 1)
    agent = AgentProcess(office).start()
    try:
        sqlite_portal.wait_calls("acme-hq", lambda cs: [c["id"] for c in cs] == first, 20)
        out = sqlite_portal.cli("revoke-site", "--site", "acme-hq")
        assert "1 credential(s) revoked" in out.stdout
        later = seed_calls(data_dir, 1)
        deadline = time.monotonic() + 20
        while "revoked" not in (status(office)["last_error"] or "") and time.monotonic() < deadline:
            time.sleep(0.3)
        cloud = status(office)
        assert "credential revoked" in cloud["last_error"]
        assert cloud["outbox"]["cdr"] == 1  # kept for when the box is enrolled again
        assert [c["id"] for c in sqlite_portal.calls("acme-hq")] == first
        assert "credential revoked" in edgepbx("status", "--config", str(office)).stdout

        assert enroll(office, sqlite_portal, sqlite_portal.add_site("Acme", "acme-hq")).returncode == 0
        sqlite_portal.wait_calls("acme-hq", lambda cs: [c["id"] for c in cs] == first + later, 20)
    finally:
        agent.kill()


def test_two_portal_instances_on_one_postgresql_behind_a_load_balancer(tmp_path):
    url = new_database()
    portal = Portal(tmp_path / "portal", url)
    second_port = free_tcp_port()
    balancer = None
    agents = []
    try:
        portal.start()
        portal.start(port=second_port)
        balancer = Balancer(tmp_path, [portal.port, second_port], close_each_request=True)
        front = Portal(portal.data_dir, url, port=balancer.port)  # what boxes see: the balancer's address
        boxes = {}
        for site in ("box-1", "box-2", "box-3"):
            office = enrolled_box(tmp_path, portal, name=site, org="Fleet", site=site, via=front)
            boxes[site] = office.parent / "var"
            seed_calls(boxes[site], 300)
            seed_calls(boxes[site], 4, recording_seconds=20)
            agents.append(AgentProcess(office).start())
        for site, data_dir in boxes.items():
            calls = portal.wait_calls(site, lambda cs: len(cs) == 304 and sum(bool(c["recording_sha256"]) for c in cs) == 4, 60)
            want = {i: sha256_of(path) if path else None for i, path in box_recordings(data_dir).items()}
            assert {c["id"]: c["recording_sha256"] for c in calls} == want
        served = balancer.requests()
        assert min(served.values()) > 10 and len(served) == 2, served  # both instances did real work
    finally:
        for agent in agents:
            agent.kill()
        if balancer:
            balancer.stop()
        portal.stop()
        drop_database(url)


def test_a_config_pushed_from_the_portal_applies_after_the_call_in_progress_and_a_bad_one_is_refused(lab, tmp_path):
    portal = start_portal(tmp_path, "sqlite")
    office = enrolled_box(tmp_path, portal)
    original = office.read_text()
    pbx = start_pbx(office)
    try:
        a, b = two_phones(lab, pbx)
        call, _ = talk(lab, a, b)
        before = {name: pid_of(pbx, name) for name in ("kamailio", "featureserver")}

        def versions() -> dict[int, dict]:
            return {v["version"]: v for v in json.loads(portal.cli("configs", "--site", "acme-hq", "--json").stdout)}

        def push(path, *flags) -> int:
            said = portal.cli("push-config", "--site", "acme-hq", "--file", str(path), *flags).stdout
            return int(re.search(r"config version (\d+) queued", said).group(1))

        def settled(version: int, timeout: float) -> dict:
            deadline = time.monotonic() + timeout
            while (row := versions()[version])["state"] == "pending":
                assert time.monotonic() < deadline, pbx.log_text()[-3000:]
                lab.poll(0.3)
            return row

        # The box's own config reaches the portal first, as version 1, written by the box.
        deadline = time.monotonic() + 20
        while not versions():
            assert time.monotonic() < deadline, "the box did not send its own config"
            lab.poll(0.3)
        assert versions()[1]["author"] == "box" and versions()[1]["state"] == "applied"
        assert versions()[1]["sha256"] == hashlib.sha256(original.encode()).hexdigest()

        pushed = tmp_path / "pushed.yaml"
        pushed.write_text(original + '  - {number: "106", name: "New hire", password: "pw-106-secret"}\n')
        assert push(pushed) == 2
        deadline = time.monotonic() + 20
        while (status(office)["config"] or {}).get("version") != 2 and time.monotonic() < deadline:
            lab.poll(0.3)
        assert status(office)["config"]["state"] == "installed"  # and waits: a call is up
        lab.poll(3.0)
        assert call.state == pj.PJSIP_INV_STATE_CONFIRMED and pid_of(pbx, "featureserver") == before["featureserver"]
        assert "waits for 1 call(s) in progress" in pbx.log_text()
        call.hangup_now()

        v2 = settled(2, 30)
        assert v2["state"] == "applied" and v2["errors"] == [] and "config" not in v2
        assert office.read_text() == pushed.read_text()
        assert pid_of(pbx, "featureserver") != before["featureserver"]
        assert pid_of(pbx, "kamailio") == before["kamailio"]  # registrations kept: 101 and 102 need not re-register
        new_hire = lab.phone("106", "pw-106-secret", 2100.0)
        assert new_hire.reg_code == 200
        talk(lab, new_hire, a, 10)
        lab.hang_up_everything()

        broken = tmp_path / "broken.yaml"
        broken.write_text(original + '  - {number: "1", name: "Too short"}\n')
        refused_here = portal.cli("push-config", "--site", "acme-hq", "--file", str(broken), check=False)
        assert refused_here.returncode == 2 and "config:" in refused_here.stderr  # the portal checks first
        v3 = settled(push(broken, "--no-check"), 20)
        assert v3["version"] == 3 and v3["state"] == "rejected"
        assert any("portal config v3:" in e and "extension" in e for e in v3["errors"]), v3["errors"]
        assert office.read_text() == pushed.read_text()  # the box kept the good one
        deadline = time.monotonic() + 20  # and says so: the config it runs is the newest version again
        while not (4 in versions() and versions()[4]["author"] == "box"):
            assert time.monotonic() < deadline, versions()
            lab.poll(0.3)
        assert versions()[4]["sha256"] == hashlib.sha256(pushed.read_bytes()).hexdigest()
        assert "pw-106-secret" not in pbx.log_text() and "pw-106-secret" not in portal.cli("configs", "--site", "acme-hq").stdout

        # Valid, but the box cannot run it (its SIP port is taken): the services fail, the previous
        # config comes back and runs, and the portal hears why.
        import socket
        from sipp import free_udp_port

        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        taken.bind(("127.0.0.1", free_udp_port()))
        unrunnable = tmp_path / "unrunnable.yaml"
        unrunnable.write_text(pushed.read_text().replace(f"sip_port: {pbx.sip_port},", f"sip_port: {taken.getsockname()[1]},"))
        assert unrunnable.read_text() != pushed.read_text()
        v5 = settled(push(unrunnable), 60)
        taken.close()
        assert v5["version"] == 5 and v5["state"] == "rejected" and "previous config was put back" in v5["errors"][0]
        assert office.read_text() == pushed.read_text()
        from appliance.sipprobe import options_ping
        assert options_ping("127.0.0.1", pbx.sip_port, timeout=2.0) is not None  # the box answers on its old port
        assert pbx.proc.poll() is None
    finally:
        lab.release_phones()
        pbx.stop()
        close_portal(portal)


def pid_of(pbx, service: str) -> int:
    """The pid the supervisor last logged for a service ("started NAME (pid N)")."""
    import re

    pids = re.findall(rf"started {service} \(pid (\d+)\)", pbx.log_text())
    return int(pids[-1])


@pytest.fixture
def small_disk(tmp_path):
    """A real 48 MB file system (tmpfs) for the box's data_dir, so 'disk full' is the kernel's."""
    var = tmp_path / "box" / "var"
    var.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(var)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a 48 MB tmpfs for the low-disk test (root needed): {mounted.stderr}", pytrace=False)
    yield var
    subprocess.run(["umount", "-l", str(var)], capture_output=True)


def fill_until_free(var: Path, free_mb: float) -> Path:
    filler = var / "filler.bin"
    current = filler.stat().st_size if filler.exists() else 0
    target = current + shutil.disk_usage(var).free - int(free_mb * (1 << 20))
    with open(filler, "ab") as fh:
        fh.truncate(max(0, target))
    with open(filler, "r+b") as fh:  # tmpfs allocates on write: touch every page
        for offset in range(current, max(0, target), 4096):
            fh.seek(offset)
            fh.write(b"\0")
    return filler


def test_low_disk_deletes_the_oldest_synced_recordings_first_never_an_unsynced_one_and_refuses_to_record(
        lab, tmp_path, small_disk):
    portal = start_portal(tmp_path, "sqlite")
    office = enrolled_box(tmp_path, portal, extra=FAST_CLOUD + "\nrecording: {enabled: true, min_free_mb: 12, format: wav}")
    synced = seed_calls(small_disk, 6, recording_seconds=60)  # 1.9 MB each, oldest first
    pbx = start_pbx(office)
    try:
        portal.wait_calls("acme-hq", lambda cs: sum(bool(c["recording_sha256"]) for c in cs) == 6, 60)
        portal.stop()  # from now on nothing more is synced
        unsynced = seed_calls(small_disk, 4, recording_seconds=60)
        unsynced_hashes = {i: sha256_of(small_disk / "recordings" / f"{i}.wav") for i in unsynced}
        exists = lambda ids: [(small_disk / "recordings" / f"{i}.wav").exists() for i in ids]  # noqa: E731

        filler = fill_until_free(small_disk, 8)  # under the low-water mark (12 MB x 1.25)
        deadline = time.monotonic() + 15
        while exists(synced)[3] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exists(synced) == [False] * 4 + [True] * 2  # oldest first, and only as many as needed
        assert all(exists(unsynced))

        fill_until_free(small_disk, 5)  # worse than the synced ones can fix
        deadline = time.monotonic() + 15
        while "no synced recording left to delete" not in pbx.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "ALARM disk low" in pbx.log_text() and not any(exists(synced)) and all(exists(unsynced))

        a, b = two_phones(lab, pbx)
        call, _ = talk(lab, a, b)
        lab.poll(1.0)
        call.hangup_now()
        seeded = set(synced + unsynced)
        unrecorded = pbx.wait_cdr(lambda r: r["id"] not in seeded)
        assert unrecorded["disposition"] == "answered" and unrecorded["recording"] is None
        assert "calls are not recorded until space is freed" in pbx.log_text()

        filler.unlink()
        deadline = time.monotonic() + 15
        while "disk space recovered" not in pbx.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        call, _ = talk(lab, a, b)
        lab.poll(1.0)
        call.hangup_now()
        recorded = pbx.wait_cdr(lambda r: r["id"] not in seeded and r["id"] != unrecorded["id"])
        assert recorded["recording"] and Path(recorded["recording"]).exists()

        portal.start()  # the portal is back: what was never synced arrives intact
        calls = portal.wait_calls("acme-hq", lambda cs: all(c["recording_sha256"] for c in cs if c["id"] in unsynced_hashes)
                                  and len(cs) >= 12, 60)
        assert {c["id"]: c["recording_sha256"] for c in calls if c["id"] in unsynced_hashes} == unsynced_hashes
    finally:
        lab.release_phones()
        pbx.stop()
        close_portal(portal)


def test_an_operator_reboots_a_phone_from_the_portal_with_its_vendors_notify(tmp_path):
    from sipp import free_udp_port, run_sipp

    portal = start_portal(tmp_path, "sqlite")
    office = enrolled_box(tmp_path, portal, extensions="\n".join([
        '  - {number: "101", name: "Reception", password: "pw-101-secret"}',
        '  - {number: "102", name: "Sales", password: "pw-102-secret",'
        ' phone: {mac: "80:5E:C0:11:22:33", vendor: yealink, model: T46U}}']))
    pbx = start_pbx(office)
    phone_port = free_udp_port()
    try:
        registered = run_sipp("register.xml", tmp_path, pbx.sip_port, service="102", user="102",
                              password="pw-102-secret", local_port=phone_port)
        assert registered.returncode == 0, registered.output
        deadline = time.monotonic() + 15
        while True:  # the next heartbeat reports the phone, registered
            phones = json.loads(portal.cli("phones", "--site", "acme-hq", "--json").stdout)
            if phones and phones[0]["registered"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [(p["mac"], p["vendor"], p["model"], p["extension"], p["registered"]) for p in phones] == [
            ("805ec0112233", "yealink", "T46U", "102", True)]

        phone = subprocess.Popen(["sipp", "-sf", "sipp/phone_notify.xml", "-m", "1", "-nostdin", "-i", "127.0.0.1",
                                  "-p", str(phone_port), "-timeout", "30s", "-timeout_error", "-trace_msg",
                                  "-message_file", str(tmp_path / "phone.messages")],
                                 cwd=Path(__file__).parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        portal.cli("phone-action", "--site", "acme-hq", "--mac", "80:5E:C0:11:22:33", "--action", "reboot")
        assert phone.wait(timeout=30) == 0
        seen = (tmp_path / "phone.messages").read_text()
        assert "Event: check-sync;reboot=true" in seen and "X-Edgepbx-Box" not in seen  # Kamailio strips the token
        deadline = time.monotonic() + 15
        while (action := json.loads(portal.cli("phones", "--site", "acme-hq", "--json").stdout)[0]["last_action"]
               )["state"] in ("pending", "sent") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert action["state"] == "done" and "200" in action["result"] and "check-sync;reboot=true" in action["result"]

        portal.cli("phone-action", "--site", "acme-hq", "--mac", "001565999999", "--action", "resync")
        db = sqlite3.connect(portal.data_dir / "portal.sqlite")
        deadline = time.monotonic() + 15
        while (unknown := db.execute("SELECT state, result FROM phone_action WHERE mac = '001565999999'").fetchone()
               )[0] in ("pending", "sent") and time.monotonic() < deadline:
            time.sleep(0.3)
        db.close()
        assert unknown[0] == "failed" and "no such phone" in unknown[1]

        pbx.stop()  # no more heartbeats (every 2 s): offline after 3 missed
        deadline = time.monotonic() + 15
        while json.loads(portal.cli("sites", "--json").stdout)[0]["online"] and time.monotonic() < deadline:
            time.sleep(0.5)
        [site] = json.loads(portal.cli("sites", "--json").stdout)
        assert not site["online"] and site["last_heartbeat_at"]
    finally:
        pbx.stop()
        close_portal(portal)


def test_recordings_go_to_s3_compatible_storage_checked_by_their_hash(tmp_path):
    s3 = S3Server(tmp_path)
    s3.client().create_bucket(Bucket="recordings")
    portal = Portal(tmp_path / "portal", new_database(), storage="s3://recordings/fleet", env=s3.env)
    agent = None
    try:
        portal.start()
        office = enrolled_box(tmp_path, portal)
        data_dir = office.parent / "var"
        ids = seed_calls(data_dir, 3, recording_seconds=5)
        agent = AgentProcess(office).start()
        calls = portal.wait_calls("acme-hq", lambda cs: len(cs) == 3 and all(c["recording_sha256"] for c in cs), 30)
        client = s3.client()
        for call in calls:
            assert call["id"] in ids
            sha = call["recording_sha256"]
            stored = client.get_object(Bucket="recordings", Key=f"fleet/recordings/{sha[:2]}/{sha}.wav")["Body"].read()
            assert hashlib.sha256(stored).hexdigest() == sha == sha256_of(box_recordings(data_dir)[call["id"]])
            assert stored[:4] == b"OggS"  # the Opus file the box encoded
        assert not list((portal.data_dir / "objects").rglob("*.wav"))  # the bytes are in S3 only
        assert not list((portal.data_dir / "staging").iterdir())  # nothing left half-way on the portal's disk
    finally:
        if agent:
            agent.kill()
        portal.stop()
        drop_database(portal.database_url)
        s3.stop()
