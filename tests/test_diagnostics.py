"""One-click remote diagnostics (issue 27), on PostgreSQL: an operator asks a running box for
N seconds of its SIP and RTP from the site's page; a call placed during the capture is in the
.pcap the operator downloads (read back with scapy), a call ended before the request is not, the
capture stops at its seconds; the .txt holds the box's status and its services' recent lines; a
viewer can neither ask for one nor download it, and the office's settings page says one was taken."""
from __future__ import annotations

import html
import io
import re
import time
from datetime import timedelta

import pjsua2 as pj
import pytest
from scapy.all import UDP, rdpcap

from conftest import TONES, start_pbx
from portal import captures
from portal.db import open_database
from portal.fleet import FleetError
from portal.models import Capture, Organisation, Site
from portal_lab import FAST_CLOUD, Portal, drop_database, enrolled_box, new_database
from test_portal_web import PASSWORD, signed_in

SECONDS = 8


def talk(lab, a, b, seconds: float) -> str:
    """A call from a to b, up for `seconds`; its Call-ID on the phone's side."""
    call = a.dial(b.number)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, f"{b.number} to answer")
    call_id = call.getInfo().callIdString
    lab.poll(seconds)
    call.hangup_now()
    lab.wait_for(lambda: b.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the call to end")
    return call_id


def capture_state(browser, portal, capture_id: int) -> str:
    page = browser.get(f"{portal.url}/fleet/acme-hq", timeout=10).text
    found = re.search(rf'data-capture="{capture_id}" data-capture-state="(\w+)"', page)
    return found.group(1) if found else "?"


def test_an_operator_captures_a_call_on_the_wire_with_one_click(tmp_path, lab):
    portal = Portal(tmp_path / "portal", new_database())
    portal.start()
    pbx = None
    try:
        config = enrolled_box(tmp_path, portal, extra=FAST_CLOUD)
        pbx = start_pbx(config)
        lab.port = pbx.sip_port
        a, b = lab.phone("101", "pw-101-secret", TONES["101"]), lab.phone("102", "pw-102-secret", TONES["102"])
        before = talk(lab, a, b, 1.0)  # ended before anyone asked: not in the capture

        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        portal.cli("add-user", "--org", "Acme", "--user", "vera", "--password", PASSWORD, "--role", "viewer")
        olga, _ = signed_in(portal, "olga")
        page = olga.get(f"{portal.url}/fleet/acme-hq", timeout=10).text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert 'data-form="capture"' in page
        too_long = olga.post(f"{portal.url}/fleet/acme-hq/captures", data={"csrf": csrf, "seconds": "100000"}, timeout=10)
        assert too_long.status_code == 422 and "1 to 120 seconds" in too_long.text
        asked = olga.post(f"{portal.url}/fleet/acme-hq/captures", data={"csrf": csrf, "seconds": str(SECONDS)},
                          timeout=10, allow_redirects=False)
        assert asked.status_code == 303
        capture_id = int(re.search(r'data-capture="(\d+)"', olga.get(f"{portal.url}/fleet/acme-hq").text).group(1))
        again = olga.post(f"{portal.url}/fleet/acme-hq/captures", data={"csrf": csrf, "seconds": "5"}, timeout=10)
        assert again.status_code == 409  # one at a time

        asked_at = time.monotonic()
        pcap_on_box = pbx.data_dir / "captures" / f"capture-{capture_id}.pcap"
        lab.wait_for(lambda: pcap_on_box.exists(), 15, "the box to start capturing")
        reached = time.monotonic() - asked_at
        lab.poll(0.5)
        during = talk(lab, a, b, 3.0)
        deadline = time.monotonic() + 40
        while capture_state(olga, portal, capture_id) != "done":
            assert time.monotonic() < deadline, capture_state(olga, portal, capture_id)
            lab.poll(0.5)
        assert not pcap_on_box.exists()  # it left the box with the capture

        pcap = olga.get(f"{portal.url}/fleet/acme-hq/captures/{capture_id}/pcap", timeout=10)
        assert pcap.status_code == 200 and "attachment" in pcap.headers["content-disposition"]
        packets = rdpcap(io.BytesIO(pcap.content))
        sip = b"".join(bytes(p[UDP].payload) for p in packets if UDP in p and pbx.sip_port in (p[UDP].sport, p[UDP].dport))
        assert during.encode() in sip and b"INVITE sip:102@" in sip and b"BYE sip:" in sip
        assert before.encode() not in sip
        rtp = [p for p in packets if UDP in p and len(p[UDP].payload) >= 100
               and bytes(p[UDP].payload)[0] & 0xC0 == 0x80]  # RTP version 2, audio-sized
        assert len(rtp) >= 200, len(rtp)  # 3 s of audio both ways, on both legs through the box
        span = float(packets[-1].time - packets[0].time)
        assert span <= SECONDS + 0.5, span  # stopped at its seconds

        ladder = olga.get(f"{portal.url}/fleet/acme-hq/captures/{capture_id}/ladder", timeout=10)
        assert ladder.status_code == 200 and f"/captures/{capture_id}/ladder" in olga.get(f"{portal.url}/fleet/acme-hq").text
        call_ids = re.findall(r'data-ladder-call="([^"]+)"', ladder.text)
        assert during in call_ids and before not in call_ids  # the call captured, each leg a ladder of its own
        during_rows = ladder.text.split(f'data-ladder-call="{during}"', 1)[1].split("</section>", 1)[0]
        lines = [html.unescape(line) for line in re.findall(r'data-first-line="([^"]+)"', during_rows)]
        methods = [line.split()[0] if not line.startswith("SIP/2.0") else line.split()[1] for line in lines]
        steps = iter(methods)  # the phone's leg, in order: (challenge), offer, answer, its ACK, the hang-up
        assert all(step in steps for step in ("407", "INVITE", "200", "ACK", "BYE")), lines

        text = olga.get(f"{portal.url}/fleet/acme-hq/captures/{capture_id}/txt", timeout=10).text
        assert "# edgepbx status --json" in text and '"cloud"' in text and "featureserver.log" in text

        vera, _ = signed_in(portal, "vera")
        assert vera.post(f"{portal.url}/fleet/acme-hq/captures", data={"csrf": csrf, "seconds": "5"},
                         timeout=10).status_code == 403
        assert vera.get(f"{portal.url}/fleet/acme-hq/captures/{capture_id}/pcap", timeout=10).status_code == 403
        assert vera.get(f"{portal.url}/fleet/acme-hq/captures/{capture_id}/ladder", timeout=10).status_code == 403
        settings = vera.get(f"{portal.url}/settings", timeout=10).text
        assert f'data-capture-taken="{capture_id}"' in settings and "olga" in settings
        print(f"\nthe box started capturing {reached:.1f} s after the click; {len(packets)} packets "
              f"({len(pcap.content) // 1024} KB) in {span:.1f} s")
    finally:
        lab.release_phones()
        if pbx:
            pbx.stop()
        portal.stop()
        drop_database(portal.database_url)


def test_a_capture_the_box_never_reported_does_not_block_the_next(tmp_path):
    """A box that restarts or loses power mid-capture never reports it; once its length and the
    grace have passed the operator can ask again, and the old one says why it failed."""
    url = new_database()
    try:
        sessions = open_database(tmp_path, url)
        with sessions() as session:
            org = Organisation(name="Acme")
            session.add(org)
            session.flush()
            site = Site(org_id=org.id, name="acme-hq")
            session.add(site)
            session.commit()
            first = captures.request(session, site, "olga", 30)
            captures.hand_out(session, site)
            session.commit()
            with pytest.raises(FleetError) as busy:
                captures.request(session, site, "olga", 5)
            assert busy.value.status == 409
            session.get(Capture, first.id).created_at -= timedelta(seconds=30) + captures.GRACE + timedelta(seconds=1)
            session.commit()
            second = captures.request(session, site, "olga", 5)
            old = session.get(Capture, first.id)
            assert old.state == "failed" and "did not report it" in old.detail
            assert session.get(Capture, second.id).state == "pending"
    finally:
        drop_database(url)
