"""Inbound calls from a trunk: greeting, an extension dialled by DTMF during it, the day scenario
(ring group), the night greeting after hours, and the missed call's record. The outside caller is a
pjsua2 UA sending from the trunk's own address, as the provider would."""
from __future__ import annotations

import datetime
import subprocess

import pjsua2 as pj
import pytest

from audio import has_tone, lacks_tone
from conftest import ROOT, TONES, start_pbx, write_office
from phones import Phone, write_tone
from sipp import free_udp_port

GREETING_HZ, NIGHT_HZ, INVALID_HZ, CALLER_HZ = 3100.0, 700.0, 2500.0, 1700.0
DID = "78312000000"


class OutsideCaller(Phone):
    """An outside phone calling the office's number through the 'provider' address."""

    def __init__(self, lab, transport_id: int):
        super().__init__(lab, "79101234567", "", CALLER_HZ)
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{self.number}@provider.test"
        cfg.sipConfig.transportId = transport_id
        self.create(cfg)


@pytest.fixture
def inbound_office(tmp_path, lab):
    def start(inbound_yaml: str, more_trunks: str = "", extensions: str | None = None):
        provider_port = free_udp_port()
        greeting = write_tone(tmp_path / "greeting.wav", GREETING_HZ, seconds=1.5)
        night = write_tone(tmp_path / "night.wav", NIGHT_HZ, seconds=1.5)
        invalid = write_tone(tmp_path / "invalid.wav", INVALID_HZ, seconds=0.8)
        extra = f"""trunks:
  - {{name: main, host: 127.0.0.1, port: {provider_port}, register: false, dids: ["{DID}"]}}
{more_trunks}inbound:
  greeting: {greeting}
  night_greeting: {night}
  invalid_prompt: {invalid}
  digit_timeout: 1
{inbound_yaml}"""
        pbx = start_pbx(write_office(tmp_path, extra=extra, no_answer_timeout=8, extensions=extensions))
        lab.port = pbx.sip_port
        tc = pj.TransportConfig()
        tc.port = provider_port
        tc.boundAddress = "127.0.0.1"
        state["transport"] = lab.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        caller = OutsideCaller(lab, state["transport"])
        lab.phones.append(caller)
        state["pbx"] = pbx
        return pbx, caller

    state: dict = {}
    yield start
    lab.release_phones()
    if "transport" in state:
        lab.ep.transportClose(state["transport"])
    if "pbx" in state:
        state["pbx"].stop()


def test_caller_dials_an_extension_during_the_greeting(inbound_office, lab):
    pbx, caller = inbound_office("  day: [{ring: ['101']}]")
    callee = lab.phone("102", "pw-102-secret", TONES["102"])
    call = caller.dial(DID)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and call.media_active, 10, "the office to answer")
    lab.poll(1.0)  # a second of the 1.5 s greeting, then the digits cut it short
    call.dialDtmf("102")
    lab.wait_for(lambda: callee.calls and callee.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "102 to answer")
    lab.poll(2.0)
    call.hangup_now()
    lab.wait_for(lambda: callee.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    heard = call.record_path
    assert has_tone(heard, GREETING_HZ) and has_tone(heard, TONES["102"])
    assert has_tone(callee.last_call.record_path, CALLER_HZ)
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["src"] == "79101234567" and record["dst"] == DID and record["trunk"] == "main"
    assert record["disposition"] == "answered" and record["recording"]


def test_a_caller_who_presses_a_digit_of_the_menu_reaches_its_group(inbound_office, lab):
    """"Press 2 for the store" (the configurator's menu): 2 begins no extension number, so 103
    rings at once, not the day's 101."""
    pbx, caller = inbound_office("  day: [{ring: ['101']}]\n  menu: {'2': [{ring: ['103']}]}")
    store = lab.phone("103", "pw-103-secret", TONES["103"])
    call = caller.dial(DID)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and call.media_active, 10, "the office to answer")
    lab.poll(0.5)
    call.dialDtmf("2")
    lab.wait_for(lambda: store.calls and store.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "103 to answer")
    lab.poll(1.5)
    call.hangup_now()
    lab.wait_for(lambda: store.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    assert has_tone(call.record_path, TONES["103"]) and "caller chose 2 in the menu" in pbx.log_text()
    assert pbx.wait_cdr(lambda r: r["direction"] == "inbound")["answered_by"] == "103"


def test_the_offices_second_number_rings_its_own_group(inbound_office, lab):
    """A number with its own group (the configurator's "numbers"): 103 answers it, not the day's 101."""
    pbx, caller = inbound_office("  day: [{ring: ['101']}]\n  numbers: {'+78312000001': [{ring: ['103']}]}")
    store = lab.phone("103", "pw-103-secret", TONES["103"])
    call = caller.dial("78312000001")
    lab.wait_for(lambda: store.calls and store.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 15,
                 "103 to answer after the greeting and the digit timeout")
    lab.poll(1.0)
    call.hangup_now()
    lab.wait_for(lambda: store.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["dst"] == "78312000001" and record["answered_by"] == "103" and record["rang"] == ["103"]


def test_without_digits_the_ring_group_rings_and_one_answers(inbound_office, lab):
    pbx, caller = inbound_office("  day: [{ring: ['103', '104'], strategy: all, timeout: 10}]")
    silent = lab.phone("103", "pw-103-secret", TONES["103"])
    silent.answer = "never"
    answering = lab.phone("104", "pw-104-secret", TONES["104"])
    answering.answer_delay = 1.0
    call = caller.dial(DID)
    lab.wait_for(lambda: answering.calls and answering.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 15,
                 "104 to answer after the greeting and the digit timeout")
    assert silent.calls, "103 never rang"
    lab.wait_for(lambda: silent.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "103 to stop ringing")
    lab.poll(2.0)
    call.hangup_now()
    lab.wait_for(lambda: answering.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    assert has_tone(call.record_path, TONES["104"]) and lacks_tone(call.record_path, TONES["103"])
    assert pbx.wait_cdr(lambda r: r["direction"] == "inbound")["disposition"] == "answered"


GROUP_TONES = dict(zip([f"2{i:02d}" for i in range(1, 11)],
                       [450.0, 900.0, 1150.0, 1400.0, 2000.0, 2250.0, 2750.0, 3400.0, 3650.0, 3900.0]))


def test_a_ring_group_of_ten_phones_rings_them_all_at_once(inbound_office, lab):
    """The PyPI wheel's 4 legs a process allowed 3; one feature server rings any number."""
    members = list(GROUP_TONES)
    pbx, caller = inbound_office(f"  day: [{{ring: {members}, strategy: all, timeout: 10}}]",
                                 extensions="\n".join(f'  - {{number: "{n}", password: "pw-{n}-secret"}}' for n in members))
    group = {n: lab.phone(n, f"pw-{n}-secret", hz) for n, hz in GROUP_TONES.items()}
    for number, phone in group.items():
        phone.answer = "never"
    call = caller.dial(DID)
    lab.wait_for(lambda: all(p.calls and p.last_call.saw(pj.PJSIP_INV_STATE_EARLY) for p in group.values()), 15,
                 "all ten phones to ring")
    ringing_at = [p.last_call.events[0].at for p in group.values()]
    assert max(ringing_at) - min(ringing_at) < 1.0, "they ring at once, not one after another"
    answering = group["207"].last_call
    prm = pj.CallOpParam()
    prm.statusCode = 200
    answering.answer(prm)
    lab.wait_for(lambda: answering.state == pj.PJSIP_INV_STATE_CONFIRMED, 5, "207 to answer")
    lab.wait_for(lambda: all(p.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED
                             for n, p in group.items() if n != "207"), 5, "the other nine to stop ringing")
    lab.poll(2.0)
    call.hangup_now()
    lab.wait_for(lambda: answering.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    assert has_tone(call.record_path, GROUP_TONES["207"]) and lacks_tone(call.record_path, GROUP_TONES["202"])
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["disposition"] == "answered" and record["recording"]


def test_after_hours_the_caller_hears_the_night_greeting_and_the_call_ends(inbound_office, lab):
    today = datetime.date.today().isoformat()
    pbx, caller = inbound_office(f"  holidays: ['{today}', '{(datetime.date.today() + datetime.timedelta(days=1)).isoformat()}']\n"
                                 "  day: [{ring: ['101']}]")
    call = caller.dial(DID)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 15, "the office to hang up")
    lab.poll(0.5)  # the phone's recorder writes its WAV header as it closes
    assert has_tone(call.record_path, NIGHT_HZ) and lacks_tone(call.record_path, GREETING_HZ)
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["disposition"] == "no_answer" and record["src"] == "79101234567"


def test_a_caller_who_hangs_up_while_it_rings_leaves_a_missed_call(inbound_office, lab):
    pbx, caller = inbound_office("  day: [{ring: ['101'], timeout: 20}]")
    ringing = lab.phone("101", "pw-101-secret", TONES["101"])
    ringing.answer = "never"
    call = caller.dial(DID)
    lab.wait_for(lambda: ringing.calls, 15, "101 to ring")
    call.hangup_now()
    lab.wait_for(lambda: ringing.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "101 to stop ringing")
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["disposition"] == "no_answer" and record["src"] == "79101234567" and record["answered_at"] is None


def test_a_wrong_extension_replays_the_prompt_and_the_caller_can_try_again(inbound_office, lab):
    pbx, caller = inbound_office("  day: [{ring: ['101']}]")
    callee = lab.phone("102", "pw-102-secret", TONES["102"])
    call = caller.dial(DID)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED and call.media_active, 10, "the office to answer")
    lab.poll(0.3)
    call.dialDtmf("9")       # no extension starts with 9
    lab.poll(1.2)
    call.dialDtmf("102")
    lab.wait_for(lambda: callee.calls and callee.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "102 to answer")
    lab.poll(1.0)
    call.hangup_now()
    lab.poll(0.5)
    assert has_tone(call.record_path, INVALID_HZ)


def test_the_scenario_can_forward_to_an_outside_number_over_the_trunk_that_works(inbound_office, lab, tmp_path):
    from sipp import SCENARIOS

    down_port = free_udp_port()
    down = subprocess.Popen(["sipp", "-sf", str(SCENARIOS / "provider_503.xml"), "-nostdin", "-i", "127.0.0.1",
                             "-p", str(down_port), "-m", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    out_port = free_udp_port()
    script = tmp_path / "mobile.xml"
    script.write_text((SCENARIOS / "provider_call.xml").read_text().replace("@USER@", "office")
                      .replace("@PASSWORD@", "out-pass-1"))
    trace = tmp_path / "mobile.messages"
    mobile = subprocess.Popen(["sipp", "-sf", str(script), "-nostdin", "-i", "127.0.0.1", "-p", str(out_port),
                               "-m", "1", "-trace_msg", "-message_file", str(trace)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pbx, caller = inbound_office(
            "  day: [{forward_external: '89161234567', timeout: 10}]\n"
            "dialplan: {rules: [{pattern: '^8(9\\d{9})$', number: '+7{1}', class: mobile, trunks: [down, out]}]}\n",
            more_trunks=f"  - {{name: down, host: 127.0.0.1, port: {down_port}, register: false}}\n"
                        f"  - {{name: out, host: 127.0.0.1, port: {out_port}, register: false, username: office, "
                        f"password: out-pass-1}}\n")
        call = caller.dial(DID)
        lab.wait_for(lambda: "ACK sip:" in (trace.read_text() if trace.exists() else ""), 15,
                     "the outside number to answer")
        lab.poll(1.0)
        call.hangup_now()
        lab.poll(0.5)
        assert "INVITE sip:+79161234567@127.0.0.1" in trace.read_text()
        record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
        assert record["disposition"] == "answered" and record["src"] == "79101234567"
        assert "forwarding over trunk out instead" in pbx.log_text()  # the down trunk was tried first
    finally:
        mobile.kill()
        down.kill()


def test_an_incoming_call_ringing_on_one_phone_is_picked_up_with_0_on_another(inbound_office, lab):
    pbx, caller = inbound_office("  day: [{ring: ['101'], timeout: 20}]")
    ringing = lab.phone("101", "pw-101-secret", TONES["101"])
    ringing.answer = "never"
    picker = lab.phone("103", "pw-103-secret", TONES["103"])
    call = caller.dial(DID)
    lab.wait_for(lambda: ringing.calls, 15, "101 to ring")
    pick = picker.dial("0")
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_CONFIRMED, 5, "the pickup")
    lab.wait_for(lambda: ringing.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "101 to stop ringing")
    lab.poll(2.0)
    call.hangup_now()
    lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
    lab.poll(0.3)
    assert has_tone(call.record_path, TONES["103"]) and has_tone(pick.record_path, CALLER_HZ)
    record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert record["picked_up_by"] == "103" and record["disposition"] == "answered"


def test_receptionist_transfers_the_caller_with_info_dtmf(inbound_office, lab):
    """The memo's main case: the office answers an outside call and transfers it with #; the phone
    sends SIP INFO DTMF here. The outside caller's own # does nothing (no dialling out on the office)."""
    pbx, caller = inbound_office("  day: [{ring: ['101']}]")
    receptionist = lab.phone("101", "pw-101-secret", TONES["101"])
    colleague = lab.phone("103", "pw-103-secret", TONES["103"])
    call = caller.dial(DID)
    lab.wait_for(lambda: receptionist.calls and receptionist.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED,
                 15, "101 to answer after the greeting")
    lab.poll(0.5)
    call.dialDtmf("#103#")  # the outside caller tries: ignored
    lab.poll(1.0)
    assert not colleague.calls
    receptionist.last_call.send_info_dtmf("#103#")
    lab.wait_for(lambda: colleague.calls and colleague.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 8,
                 "103 to answer the consultation")
    path = call.record_phase("held")
    lab.poll(1.2)
    call.stop_recording()
    lab.poll(0.1)
    assert has_tone(path, 659.26) and lacks_tone(path, TONES["101"]), "the caller hears music on hold"
    receptionist.last_call.hangup_now()
    lab.wait_for(lambda: receptionist.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "101 to hang up")
    lab.poll(0.3)
    path = call.record_phase("transferred")
    lab.poll(1.2)
    call.stop_recording()
    lab.poll(0.1)
    assert has_tone(path, TONES["103"]) and lacks_tone(path, 659.26), "the caller talks to 103"
    call.hangup_now()
    lab.wait_for(lambda: colleague.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "103 to be hung up")
    inbound = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
    assert inbound["transferred_to"] == "103" and inbound["disposition"] == "answered"
    linked = pbx.wait_cdr(lambda r: r["linked_id"] == inbound["id"])
    assert (linked["src"], linked["dst"], linked["disposition"]) == ("101", "103", "answered")


def test_a_provider_whose_to_header_names_its_own_domain_reaches_the_greeting(tmp_path):
    """Providers often send To: <sip:+DID@provider-host>, the trunk's own host: pjsua matches an
    incoming call to an account by the To domain, and such a call once landed on the trunk's
    account, which takes no calls (pjsua2 answered 500)."""
    port = free_udp_port()
    extra = (f"trunks:\n  - {{name: main, host: 127.0.0.5, port: {port}, register: false, dids: [\"{DID}\"]}}\n"
             "inbound: {digit_timeout: 1, day: [{ring: [\"101\"]}]}")
    pbx = start_pbx(write_office(tmp_path, extra=extra))
    scenario = tmp_path / "call.xml"
    scenario.write_text((ROOT / "tests" / "sipp" / "provider_invite_to_its_domain.xml").read_text().replace("@DID@", DID))
    try:
        sipp = subprocess.run(["sipp", "-sf", str(scenario), "-m", "1", "-nostdin", "-i", "127.0.0.5", "-p", str(port),
                               "-mi", "127.0.0.5", "-timeout", "20s", "-timeout_error", "-trace_err",
                               f"127.0.0.1:{pbx.sip_port}"], cwd=tmp_path, capture_output=True, text=True, timeout=40)
        assert sipp.returncode == 0, sipp.stdout[-1500:] + "".join(p.read_text() for p in tmp_path.glob("*errors.log"))
        record = pbx.wait_cdr(lambda r: r["direction"] == "inbound")
        assert record["dst"] == DID and record["trunk"] == "main", record
    finally:
        pbx.stop()
