"""Call quality on the call record (issue 26, first step): pjsua2 phones through the running
Kamailio and feature server with real RTP; one phone's line loses 10 % of its packets (PJSIP's
loss simulator, in a process of its own). The box's record carries each leg's codec, loss, jitter,
round trip and MOS; the portal's report marks the call."""
from __future__ import annotations

import subprocess
import sys

import pjsua2 as pj

from appliance.featureserver.quality import mos
from conftest import ROOT, TONES


def talk(lab, caller, callee_number: str, seconds: float):
    call = caller.dial(callee_number)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and call.media_active, 10, "the answer")
    lab.poll(seconds)
    call.hangup_now()
    lab.poll(0.5)
    return call


def test_a_clean_call_shows_no_loss_and_a_good_mos(pbx, lab):
    lab.port = pbx.sip_port
    anna = lab.phone("101", "pw-101-secret", TONES["101"])
    lab.phone("102", "pw-102-secret", TONES["102"])
    talk(lab, anna, "102", 6.0)
    record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["disposition"] == "answered")
    quality = record["quality"]
    for side in ("caller", "callee"):
        leg = quality[side]
        assert leg["codec"] in ("PCMU", "PCMA", "G722", "opus", "speex"), leg
        assert leg["packets"] >= 200 and leg["loss_pct"] == 0.0 and leg["mos"] >= 4.0, (side, leg)
        assert leg["rtt_ms"] is not None and leg["rtt_ms"] < 50 and leg["reported_loss_pct"] == 0.0, (side, leg)
    lab.release_phones()


def test_a_line_losing_ten_percent_shows_it_and_a_poor_mos(pbx, lab, tmp_path):
    lab.port = pbx.sip_port
    lossy = subprocess.Popen([sys.executable, str(ROOT / "tests" / "lossy_phone.py"), str(pbx.sip_port), "103",
                              "pw-103-secret", str(TONES["103"]), "10", "40", str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT / "tests")
    try:
        assert any(line.strip() == "registered" for line in lossy.stdout), "the lossy phone did not register"
        anna = lab.phone("101", "pw-101-secret", TONES["101"])
        talk(lab, anna, "103", 20.0)  # about 1,000 packets: a 10 % random drop lands within 5-15 % (5 sigma)
        record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "103" and r["disposition"] == "answered")
        callee, caller = record["quality"]["callee"], record["quality"]["caller"]
        print("lossy call:", record["quality"])
        assert 5.0 <= callee["loss_pct"] <= 15.0 and callee["lost"] > 40, callee
        assert caller["loss_pct"] == 0.0 and caller["mos"] >= 4.0, caller  # the clean side stays clean
        # the lossy side's MOS is the E-model's for what was measured, and clearly worse (at 10 %: about 3.3)
        assert callee["mos"] == mos(callee["codec"], callee["loss_pct"], callee["jitter_ms"], callee["rtt_ms"])
        assert callee["mos"] <= caller["mos"] - 0.5, (caller, callee)
    finally:
        lossy.kill()
        lossy.wait()
        lab.release_phones()
