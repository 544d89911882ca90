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
from sipp import run_sipp


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


def test_each_phones_own_voice_quality_report_reaches_its_side_of_the_record(pbx, lab, tmp_path):
    """After a call, SIPp speaks as each of its two phones and PUBLISHes an RFC 6035 report
    (Event: vq-rtcpxr, digest auth) as Yealink and Poly phones do: the caller's listening MOS 4.1
    lands on the record's caller side, the callee's 3.2 on the callee side, beside what the box
    measured. A report for someone else's call, or with a wrong password, changes nothing."""
    lab.port = pbx.sip_port
    anna = lab.phone("101", "pw-101-secret", TONES["101"])
    boris = lab.phone("102", "pw-102-secret", TONES["102"])
    call = anna.dial("102")
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and call.media_active, 10, "the answer")
    caller_call_id, callee_call_id = call.getInfo().callIdString, boris.last_call.getInfo().callIdString
    lab.poll(3.0)
    call.hangup_now()
    lab.poll(0.5)
    record = pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["disposition"] == "answered")

    def report(user: str, password: str, call_id: str, moslq: str, expected: str = "200") -> None:
        fill = {"CALLID": call_id, "REMOTE": "1xx", "MOSLQ": moslq, "MOSCQ": "4.0", "NLR": "0.4", "RTD": "35"}
        done = run_sipp("vq_report.xml", tmp_path, pbx.sip_port, service=user, user=user, password=password,
                        expected=expected, fill=fill, lab=lab, timeout=15)
        assert done.returncode == 0, done.output[-2000:]

    report("103", "pw-103-secret", caller_call_id, "1.0")  # 103 speaks of 101's call: dropped
    report("101", "wrong-password", caller_call_id, "1.0", expected="403")
    report("101", "pw-101-secret", caller_call_id, "4.1")
    report("102", "pw-102-secret", callee_call_id, "3.2")
    record = pbx.wait_cdr(lambda r: r["id"] == record["id"] and r["quality"] and "phone_mos" in r["quality"]["callee"]
                          and "phone_mos" in r["quality"]["caller"], timeout=10)
    caller, callee = record["quality"]["caller"], record["quality"]["callee"]
    assert (caller["phone_mos"], caller["phone_mos_cq"], caller["phone_loss_pct"], caller["phone_rtt_ms"]) == (4.1, 4.0, 0.4, 35.0)
    assert callee["phone_mos"] == 3.2  # the LocalMetrics (what 102 heard), not the RemoteMetrics' 1.1
    assert caller["mos"] >= 4.0 and caller["packets"] > 100 and callee["codec"]  # the box's own figures stay
    lab.release_phones()
