"""Box software rollouts from the portal (issue 23), on PostgreSQL with a simulated fleet of 40
boxes (tests/rollout_fleet.py) speaking the agent's protocol: releases are real RAUC bundles
checked with RAUC; the canaries go first and each wave waits for the one before; a box that rolls
back halts the rollout, which offers nothing more and raises an alarm told by e-mail (aiosmtpd
on loopback) and a signed webhook; an operator resumes it and it finishes; `sites --json` shows
every box's version and slot. The real agent installing with RAUC is tested on the booted image."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime, timedelta

import pytest
import requests

from appliance.cdr import CdrStore
from appliance.cloud import answers
from appliance.cloud.client import PortalClient, Trust
from appliance.cloud.software import BUNDLE, REQUEST, RESULT, SoftwareUpdater
from appliance.config import load
from conftest import write_office
from fleet_client import Connection, enrol_fleet
from portal import rollouts
from portal.db import open_database
from portal.models import utcnow
from portal_lab import Portal, close_portal, new_database
from rollout_fleet import OLD, SimBox, rounds
from test_alarms import HOOK_SECRET, alarm_portal, wait
from test_portal_web import PASSWORD, signed_in

BOXES = 40


def signing_pair(folder, name: str):
    cert, key = folder / f"{name}.cert.pem", folder / f"{name}.key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-keyout", str(key),
                    "-out", str(cert), "-subj", f"/O=edgepbx test/CN={name}"], check=True, capture_output=True)
    return cert, key


def bundle(folder, cert, key, version: str, compatible: str = "edgepbx-x86", size: int = 300_000):
    """A RAUC bundle (verity format, as image/bundle.sh makes) of a small random root file system."""
    content = folder / f"content-{version}"
    content.mkdir()
    (content / "rootfs.ext4").write_bytes(os.urandom(size))
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={compatible}\nversion={version}\n\n"
                                            "[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n")
    out = folder / f"{version}.raucb"
    made = subprocess.run(["rauc", "bundle", f"--cert={cert}", f"--key={key}", str(content), str(out)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture
def fleet_lab(tmp_path):
    with alarm_portal(tmp_path) as (portal, inbox, hooks):
        yield portal, inbox, hooks


def test_a_rollout_goes_in_waves_halts_on_a_rollback_tells_by_mail_and_resumes(fleet_lab, tmp_path):
    portal, inbox, hooks = fleet_lab
    cert, key = signing_pair(tmp_path, "fleet")
    other_cert, other_key = signing_pair(tmp_path, "stranger")
    good = bundle(tmp_path, cert, key, "1.0.0+test")
    forged = bundle(tmp_path, other_cert, other_key, "6.6.6")

    added = portal.cli("release", "add", str(good), "--keyring", str(cert))
    assert added.stdout.strip().splitlines()[-1] == "1.0.0+test"
    refused = portal.cli("release", "add", str(forged), "--keyring", str(cert), check=False)
    assert refused.returncode == 2 and "not a bundle signed for this fleet" in refused.stderr, refused.stderr
    again = portal.cli("release", "add", str(good), "--keyring", str(cert), check=False)
    assert again.returncode == 2 and "there already" in again.stderr
    assert [r["version"] for r in json.loads(portal.cli("release", "list", "--json").stdout)] == ["1.0.0+test"]

    credentials = enrol_fleet(portal, BOXES)
    boxes = [SimBox(f"box-{i:04d}", Connection(portal.port, c)) for i, c in enumerate(credentials)]
    boxes[17].fails = True  # in the second wave (canaries 0-1, waves of 10 from box 2)
    portal.cli("add-contact", "--email", "noc@provider.example", "--severity", "critical")
    portal.cli("add-contact", "--webhook", f"http://127.0.0.1:{hooks.server_address[1]}/hook", "--secret", HOOK_SECRET)
    bad_window = portal.cli("rollout", "start", "--release", "1.0.0+test", "--all", "--window", "25:00-03:00", check=False)
    assert bad_window.returncode == 2 and "HH:MM-HH:MM" in bad_window.stderr
    started = portal.cli("rollout", "start", "--release", "1.0.0+test", "--all", "--canary", "2", "--wave-percent", "25")
    assert "to 40 site(s) in 5 wave(s) (2 canary)" in started.stdout, started.stdout
    busy = portal.cli("rollout", "start", "--release", "1.0.0+test", "--sites", "box-0005", check=False)
    assert busy.returncode == 2 and "box-0005 is in rollout 1" in busy.stderr

    async def run() -> None:
        portal.cli("rollout", "pause")
        await rounds(boxes, 0, 2)
        assert not any(b.offered_in is not None for b in boxes)  # paused: nothing offered
        portal.cli("rollout", "resume")
        await rounds(boxes, 2, 14)

    asyncio.run(run())
    assert not [e for b in boxes for e in b.errors]
    wave = lambda i: 0 if i < 2 else 1 + (i - 2) // 10  # noqa: E731
    # Each wave is offered only once every box of the one before is on the release.
    for w in (0, 1):
        members = [b for i, b in enumerate(boxes) if wave(i) == w]
        later = [b for i, b in enumerate(boxes) if wave(i) == w + 1]
        assert max(b.done_in for b in members if not b.fails) < min(b.offered_in for b in later)
    # Box 17 rolled back: the rollout halted; waves 3 and 4 were never offered anything.
    shown = json.loads(portal.cli("rollout", "status", "--rollout", "1", "--json").stdout)
    assert shown["state"] == "halted" and "box-0017" in shown["reason"] and "self-test" in shown["reason"]
    assert all(b.offered_in is None for i, b in enumerate(boxes) if wave(i) >= 3)
    assert shown["counts"] == {"done": 21, "failed": 1, "waiting": 18}, shown["counts"]

    wait(lambda: any("rollout" in s for s in inbox.subjects()), 20, "the halted rollout's e-mail")
    subject = next(s for s in inbox.subjects() if "rollout" in s)
    assert "box-0017" in subject and "1.0.0+test" in subject and "self-test" in subject, subject
    wait(lambda: any(e["key"] == "rollout_halted" for e in hooks.events()), 20, "the webhook")

    portal.cli("rollout", "resume")
    asyncio.run(rounds(boxes, 16, 12))
    shown = json.loads(portal.cli("rollout", "status", "--rollout", "1", "--json").stdout)
    assert shown["state"] == "done" and shown["counts"] == {"done": 39, "failed": 1}, shown
    wait(lambda: any(e["key"] == "rollout_halted" and e["event"] == "alarm.ended" for e in hooks.events()), 20,
         "the alarm's end")
    sites = {s["site"]: s for s in json.loads(portal.cli("sites", "--json").stdout)}
    assert sites["box-0017"]["version"] == OLD and sites["box-0017"]["slot"] == "A"
    assert all(s["version"] == "1.0.0+test" and s["slot"] == "B" for name, s in sites.items() if name != "box-0017")
    fetched = sum(b.bytes_fetched for b in boxes)
    assert fetched == 40 * good.stat().st_size  # every box once, box 17 included, and nothing more
    print(f"40 boxes: {sum(b.requests for b in boxes)} requests, {fetched >> 10} KiB of bundles served")


def test_a_box_not_back_within_the_deadline_halts_and_a_site_not_offered_gets_no_bundle(fleet_lab, tmp_path):
    portal, _, _ = fleet_lab
    cert, key = signing_pair(tmp_path, "fleet")
    good = bundle(tmp_path, cert, key, "1.1.0")
    pi = bundle(tmp_path, cert, key, "1.1.0-pi", compatible="edgepbx-pi4")
    portal.cli("release", "add", str(good), "--keyring", str(cert))
    portal.cli("release", "add", str(pi), "--keyring", str(cert))
    credentials = enrol_fleet(portal, 4)
    boxes = [SimBox(f"box-{i:04d}", Connection(portal.port, c)) for i, c in enumerate(credentials)]
    boxes[0].vanishes = True
    boxes[1].compatible = "edgepbx-pi4"  # another board: skipped, not failed
    portal.cli("rollout", "start", "--release", "1.1.0", "--sites", "box-0000,box-0001,box-0002", "--canary", "1",
               "--deadline-minutes", "1")
    with open_database(portal.data_dir, portal.database_url)() as session:
        sha = next(r["sha256"] for r in rollouts.releases(session) if r["version"] == "1.1.0")
    outsider = requests.get(f"{portal.url}/api/v1/releases/{sha}",
                            headers={"Authorization": f"Bearer {credentials[3]}"}, timeout=10)
    assert outsider.status_code == 404  # box 3 is in no rollout: it cannot fetch the bundle
    asyncio.run(rounds(boxes, 0, 3))
    assert boxes[0].gone
    sessions = open_database(portal.data_dir, portal.database_url)
    with sessions() as session:
        assert rollouts.check_deadlines(session, now=utcnow() + timedelta(seconds=30)) == 0  # within its minute
        assert rollouts.check_deadlines(session, now=utcnow() + timedelta(seconds=61)) == 1
        session.commit()
    shown = json.loads(portal.cli("rollout", "status", "--json").stdout)[0]
    assert shown["state"] == "halted" and "box-0000: not back within 1 min" in shown["reason"]
    states = {s["site"]: s["state"] for s in shown["sites"]}
    assert states == {"box-0000": "failed", "box-0001": "skipped", "box-0002": "waiting"}
    assert boxes[2].offered_in is None

    # The same on the page, for operators only.
    portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
    portal.cli("add-user", "--org", "Org 0", "--user", "vera", "--password", PASSWORD, "--role", "viewer")
    olga, vera = signed_in(portal, "olga")[0], signed_in(portal, "vera")[0]
    page = olga.get(f"{portal.url}/rollouts", timeout=10).text
    assert 'data-release="1.1.0"' in page and 'data-release="1.1.0-pi"' in page
    assert 'data-rollout="1" data-rollout-state="halted"' in page and "not back within 1 min" in page
    assert 'data-rollout-site="box-0000" data-rollout-site-state="failed"' in page
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert vera.get(f"{portal.url}/rollouts", timeout=10).status_code == 403
    assert vera.post(f"{portal.url}/rollouts/1/resume", data={"csrf": csrf}, timeout=10).status_code == 403
    start = {"csrf": csrf, "release": "1.1.0", "sites": "box-0003", "canary": "1", "wave_percent": "25",
             "window": "02:00-25:00", "deadline_minutes": "30"}
    refused = olga.post(f"{portal.url}/rollouts", data=start, timeout=10)
    assert refused.status_code == 422 and "HH:MM-HH:MM" in refused.text and 'value="box-0003"' in refused.text
    started = olga.post(f"{portal.url}/rollouts", data={**start, "window": "02:00-05:00"}, timeout=10,
                        allow_redirects=False)
    assert started.status_code == 303
    page = olga.get(f"{portal.url}/rollouts", timeout=10).text
    assert 'data-rollout="2" data-rollout-state="running"' in page and 'data-rollout-site="box-0003"' in page
    for rollout in (1, 2):
        aborted = olga.post(f"{portal.url}/rollouts/{rollout}/abort", data={"csrf": csrf}, timeout=10,
                            allow_redirects=False)
        assert aborted.status_code == 303
    assert {r["state"] for r in json.loads(portal.cli("rollout", "status", "--json").stdout)} == {"aborted"}


def test_the_box_fetches_resumes_waits_for_its_window_and_the_call_then_asks_the_system(tmp_path):
    """The agent's side (appliance/cloud/software.py) against a real portal: a 5 MB release
    fetched 4 MiB at a time and resumed by a restarted agent; not installed outside the window
    nor while a call is up; "installing" is on the portal before the system is asked; RAUC's
    refusal (the root unit's result file) halts the rollout; a later rollout's release that boots
    is done. The root unit and the reboot are the image's (test_image.py boots them)."""
    cert, key = signing_pair(tmp_path, "fleet")
    portal = Portal(tmp_path / "portal", new_database(), run_args=["--release-keyring", str(cert)])
    portal.start()
    try:
        release = bundle(tmp_path, cert, key, "2.0.0", size=5 << 20)
        # Added on the page (as `release add` does): the page says the version; a stranger's is refused.
        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        olga = signed_in(portal, "olga")[0]
        csrf = olga.get(f"{portal.url}/rollouts", timeout=10).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        other_cert, other_key = signing_pair(tmp_path, "stranger")
        forged = bundle(tmp_path, other_cert, other_key, "2.0.1")
        refused = olga.post(f"{portal.url}/rollouts/releases", data={"csrf": csrf},
                            files={"bundle": ("forged.raucb", forged.read_bytes())}, timeout=30)
        assert refused.status_code == 422 and "not a bundle signed for this fleet" in refused.text
        added = olga.post(f"{portal.url}/rollouts/releases", data={"csrf": csrf},
                          files={"bundle": ("edgepbx-x86.raucb", release.read_bytes())}, timeout=60)
        assert added.status_code == 200 and 'data-release-added="2.0.0"' in added.text
        without_token = olga.post(f"{portal.url}/rollouts/releases", files={"bundle": ("x.raucb", b"x")}, timeout=10)
        assert without_token.status_code == 403
        credential = enrol_fleet(portal, 1)[0]
        portal.cli("rollout", "start", "--release", "2.0.0", "--sites", "box-0000", "--window", "01:00-05:00")
        cfg = load(write_office(tmp_path))
        client = PortalClient(portal.url, credential, trust=Trust(allow_http=True))
        updater = SoftwareUpdater(cfg)

        def beat(version: str = OLD) -> None:
            status = {"version": version, "slot": "A", "compatible": "edgepbx-x86",
                      "update": updater.report(version)}
            updater.follow(answers.heartbeat(client.request("POST", "/api/v1/heartbeat", status)).update)

        def site_state() -> tuple[str, str]:
            shown = json.loads(portal.cli("rollout", "status", "--rollout", str(rollout_id()), "--json").stdout)
            return shown["sites"][0]["state"], shown["state"]

        def rollout_id() -> int:
            return json.loads(portal.cli("rollout", "status", "--json").stdout)[0]["id"]

        beat()
        assert updater.offer is not None and updater.offer.window == "01:00-05:00"
        assert updater.step(client) and updater.state["state"] == "downloading"  # 4 of 5 MiB
        updater = SoftwareUpdater(cfg)  # the agent restarted: it goes on from the bytes on disk
        beat()
        assert updater.step(client) and updater.state["state"] == "ready"
        assert (cfg.data_dir / "update" / BUNDLE).read_bytes() == release.read_bytes()
        assert not updater.due(datetime(2026, 12, 3, 12, 0))  # outside the window
        night = datetime(2026, 12, 3, 2, 30)
        calls = CdrStore(cfg.data_dir / "cdr.sqlite")
        call = calls.start(direction="inbound", src="+74951234567", dst="101")
        assert not updater.due(night)  # a call is up: it waits
        calls.ended(call, "answered")
        assert updater.due(night)
        updater.mark_installing()
        beat()
        assert site_state() == ("installing", "running")
        updater.ask_system()
        assert json.loads((cfg.data_dir / "update" / REQUEST).read_text()) == {"version": "2.0.0"}
        # The root unit: RAUC refused the bundle.
        (cfg.data_dir / "update" / RESULT).write_text('{"ok": false, "detail": "signature verification failed"}')
        beat()
        assert site_state() == ("failed", "halted")
        shown = json.loads(portal.cli("rollout", "status", "--json").stdout)[0]
        assert "signature verification failed" in shown["reason"]
        assert updater.offer is None and not (cfg.data_dir / "update" / BUNDLE).exists()  # nothing left behind
        portal.cli("rollout", "abort")

        portal.cli("rollout", "start", "--release", "2.0.0", "--sites", "box-0000")
        beat()
        while updater.step(client):
            pass
        assert updater.due(night)
        updater.mark_installing()
        beat()
        updater.ask_system()
        beat("2.0.0")  # rebooted into the release
        assert site_state() == ("done", "done")
        assert not (cfg.data_dir / "update" / "rollout.json").exists()
    finally:
        close_portal(portal)


def test_the_box_acts_on_no_release_offer_it_cannot_check():
    """A portal (or whatever answers in its place) offering nonsense: the agent refuses the whole
    answer before anything acts on it, and logs why (PortalAnswerInvalid)."""
    from appliance.cloud.client import PortalAnswerInvalid

    good = {"rollout": 3, "version": "1.0.0+3f2a", "sha256": "ab" * 32, "size": 316 << 20, "window": "01:00-05:00"}
    base = {"config_version": None, "phone_actions": [], "callbacks": []}
    offer = answers.heartbeat({**base, "update": good}).update
    assert (offer.version, offer.size, offer.window) == ("1.0.0+3f2a", 316 << 20, "01:00-05:00")
    assert answers.heartbeat({**base, "update": None}).update is None
    for bad in ({"sha256": "../../etc/passwd"}, {"size": -1}, {"size": 8 << 30}, {"window": "25:00-03:00"},
                {"version": "1.0/../../x"}, {"rollout": "3"}):
        with pytest.raises(PortalAnswerInvalid):
            answers.heartbeat({**base, "update": {**good, **bad}})
