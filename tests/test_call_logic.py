"""The feature server's call logic on fake legs (tests/call_logic_fakes.py): ringing, answer,
pickup, transfer, failure and the toll-fraud limits, in milliseconds, with the real intake,
call kinds, call records (SQLite) and limits. The same behaviour through Kamailio, pjsua2 and
real RTP is tested in test_calls, test_pickup, test_transfer, test_inbound and test_trunks."""
from __future__ import annotations

import sys
import types

import pytest

from call_logic_fakes import make_office
from appliance.featureserver.edge import EdgeCall, format_edge_call, parse_edge_call
from appliance.featureserver.sip.message import read_invite

OFFICE = """site: {name: "Fake office", timezone: Europe/Moscow}
data_dir: ./var
network: {bind: 127.0.0.1, sip_port: 5060, rtp_ports: [20000, 20999]}
calls: {no_answer_timeout: 30}
security: {outside_calls: {per_site: {concurrent: 1}}}
trunks:
  - {name: down, host: 127.0.0.1, port: 5098, register: false}
  - {name: main, host: 127.0.0.1, port: 5099, register: false}
inbound:
  day: [{forward_external: '89161234567', timeout: 20}]
dialplan: {rules: [{pattern: '^8(9\\d{9})$', number: '+7{1}', class: mobile, trunks: [down, main]}]}
extensions:
  - {number: "101", name: "Reception", password: "pw-101-secret"}
  - {number: "102", name: "Sales", password: "pw-102-secret"}
  - {number: "103", name: "Store", password: "pw-103-secret"}
"""


@pytest.fixture
def office(tmp_path):
    return make_office(tmp_path, OFFICE)


def answered_call(office, caller="101", callee="102"):
    phone = office.invite(caller, callee, name="Reception")
    ringing = office.legs.to(callee)
    ringing.rings()
    ringing.answers_call()
    phone.media_up()
    return phone, ringing


def test_internal_call_rings_answers_and_leaves_one_record(office):
    phone = office.invite("101", "102", name="Reception")
    ringing = office.legs.to("102")
    assert ringing.target.from_uri == '"Reception" <sip:101@127.0.0.1>'
    ringing.rings()
    assert phone.answers == [180]
    ringing.answers_call()
    phone.media_up()
    assert phone.answers == [180, 200]
    assert office.media.talking(phone, ringing)
    live = office.records()[0]
    assert live["answered_at"] and live["recording"] and live["ended_at"] is None
    ringing.ends(200)  # 102 hangs up
    assert phone.hung_up == 0
    (record,) = office.records()
    assert (record["src"], record["dst"], record["direction"], record["disposition"]) == ("101", "102", "internal",
                                                                                           "answered")
    assert record["answered_by"] == "102" and record["rang"] == ["102"]
    assert len(office.services.table.calls) == 1  # until the caller's leg confirms its end
    phone.ends(200)
    assert len(office.services.table.calls) == 0


@pytest.mark.parametrize("code, disposition", [(486, "busy"), (603, "busy"), (404, "failed")])
def test_a_refusing_phone_gives_the_caller_its_answer(office, code, disposition):
    phone = office.invite("101", "102")
    office.legs.to("102").ends(code)
    assert phone.hung_up == code
    assert office.records()[0]["disposition"] == disposition


def test_nobody_answers_in_time(office):
    phone = office.invite("101", "102")
    ringing = office.legs.to("102")
    ringing.rings()
    office.time_passes()
    assert phone.hung_up == 480 and ringing.hung_up == 0  # the caller gets 480, the phone CANCEL
    assert office.records()[0]["disposition"] == "no_answer"


def test_pickup_code_takes_the_call_from_the_ringing_phone(office):
    phone = office.invite("101", "102")
    ringing = office.legs.to("102")
    ringing.rings()
    picker = office.invite("103", "0")
    assert picker.answers == [200] and ringing.hung_up == 0  # 103 answered, 102 stops ringing
    assert phone.answers == [180, 200]
    phone.media_up()
    assert office.media.talking(phone, picker)
    (record,) = office.records()
    assert record["picked_up_by"] == "103" and record["answered_at"]
    assert record["answered_by"] == "103" and record["rang"] == ["102"]  # who answered, and whose phone rang


def test_an_extension_with_recording_off_is_never_recorded_whoever_calls_or_picks_up(tmp_path):
    """The director's calls stay off the recordings: dialled, dialling, or picking up a colleague's
    call; the others' calls are recorded as before."""
    office = make_office(tmp_path, OFFICE.replace('name: "Store", password: "pw-103-secret"',
                                                  'name: "Store", password: "pw-103-secret", recording: false'))
    for caller, callee in (("101", "102"), ("101", "103"), ("103", "102")):
        phone, ringing = answered_call(office, caller, callee)
        ringing.ends(200)
    office.invite("101", "102", name="Reception")
    office.legs.to("102").rings()
    picker = office.invite("103", "0")
    picker.media_up()
    recorded = [(r["src"], r["dst"], r["picked_up_by"] or "", bool(r["recording"])) for r in office.records()]
    assert sorted(recorded) == [("101", "102", "", True), ("101", "102", "103", False), ("101", "103", "", False),
                                ("103", "102", "", False)]


def test_pickup_with_nothing_ringing_plays_a_tone_and_writes_no_record(office):
    picker = office.invite("103", "0")
    assert picker.answers == [200]
    picker.media_up()
    assert office.records() == []
    office.time_passes()
    assert picker.hung_up == 0


def test_a_blf_key_for_a_call_no_longer_ringing_gets_481(office):
    answered_call(office)
    assert office.invite("103", "102", replaces="gone@test") == 481


def test_hash_transfer_to_an_extension(office):
    phone, sales = answered_call(office)  # 101 talks to 102
    phone.presses("#103#")
    call = next(iter(office.services.table))
    assert call.transfer.music.leg is sales  # 102 hears music while 101 consults
    store = office.legs.to("103")
    store.rings()
    store.answers_call()
    assert office.media.talking(phone, store)
    phone.ends(200)  # 101 hangs up: 102 goes to 103
    assert office.media.talking(sales, store)
    original, consultation = office.records()
    assert original["transferred_to"] == "103" and original["disposition"] == "answered"
    assert consultation["linked_id"] == original["id"] and consultation["ended_at"] is None
    assert original["answered_by"] == "102" and consultation["answered_by"] == "103"
    store.ends(200)
    assert sales.hung_up == 0 and office.records()[1]["disposition"] == "answered"


def test_star_brings_the_held_party_back(office):
    phone, sales = answered_call(office)
    phone.presses("#103#")
    office.legs.to("103").rings()
    phone.presses("*")
    assert office.legs.to("103").hung_up == 0
    assert office.media.talking(phone, sales)
    assert office.records()[1]["disposition"] == "cancelled"


def test_an_outside_party_cannot_start_a_transfer(office):
    phone = office.invite("101", "89161234567")
    trunk_leg = office.legs.to("+79161234567")
    trunk_leg.answers_call()
    phone.media_up()
    trunk_leg.presses("#")
    assert next(iter(office.services.table)).transfer is None
    assert phone.dtmf_sent == ["#"]  # passed on as a key press, as any other


def test_blind_refer(office):
    phone, sales = answered_call(office)
    office.intake.refer(phone.sip_call_id(), "<sip:103@127.0.0.1>", "7")
    assert phone.outcomes == [200] and phone.released
    store = office.legs.to("103")
    store.rings()
    store.answers_call()
    assert office.media.talking(sales, store)
    assert office.records()[0]["transferred_to"] == "103"


def test_trunk_fails_over_to_the_next(office):
    phone = office.invite("101", "89161234567")
    first = office.legs.to("+79161234567")
    assert first.target.trunk == "down"
    first.ends(503)
    second = office.legs.to("+79161234567")
    assert second is not first and second.target.trunk == "main"
    second.answers_call()
    assert phone.answers[-1] == 200
    assert office.records()[0]["trunk"] == "main"


def test_a_leg_that_cannot_be_placed_fails_over_then_the_caller_gets_503(office):
    office.legs.unplaceable = 1  # the first trunk's leg finds no RTP port
    phone = office.invite("101", "89161234567")
    second = office.legs.to("+79161234567")
    assert second.target.trunk == "main" and not second.fail_dial
    second.ends(503)
    assert phone.hung_up == 503 and office.records()[0]["disposition"] == "failed"


def test_a_transfer_target_that_cannot_be_placed_brings_the_held_party_back(office):
    phone, sales = answered_call(office)
    office.legs.unplaceable = 1
    phone.presses("#103#")
    assert next(iter(office.services.table)).transfer is None
    assert office.media.talking(phone, sales)
    assert office.records()[1]["disposition"] == "failed"


def test_a_full_disk_leaves_the_call_unrecorded_not_dropped(office):
    office.media.fail_recording = True
    phone, sales = answered_call(office)
    assert office.media.talking(phone, sales)
    assert office.records()[0]["recording"] is None


def test_invites_not_from_the_edge_are_refused(office):
    assert office.invite("101", "102", source="127.0.0.1:5999") == 403
    assert office.invite("", "102") == 403  # from the edge, but nobody asserted


def test_inbound_forwarded_out_counts_towards_the_site_limit(office):
    """The bug this redraw found: a trunk leg of an inbound call forwarded outside was not
    counted by the toll-fraud concurrency limit (`direction_out` existed only on phone calls)."""
    caller = office.invite("+74951112233", "4951000000", trunk="main")
    assert caller.answers == [200]
    caller.media_up()
    office.media.prompt_ends.pop()()  # the greeting has been heard
    office.tick()
    office.time_passes()  # no digits: the scenario forwards the caller out
    forwarded = office.legs.to("+79161234567")
    assert forwarded.target.trunk == "down"
    forwarded.rings()
    assert office.invite("101", "89161234567") == office.legs.made[-1]  # the phone's leg...
    phone = office.legs.made[-1]
    assert phone.hung_up == 403  # ...refused: the site's one call out is up
    refused = office.records()[-1]
    assert refused["disposition"] == "failed" and refused["trunk"] is None


GROUP_OFFICE = OFFICE.replace("day: [{forward_external: '89161234567', timeout: 20}]",
                              "day: [{ring: ['101', '102'], strategy: all, timeout: 20}, {ring: ['103']}]")


def group_ringing(tmp_path):
    """An outside call to GROUP_OFFICE past its greeting with no digits: 101 and 102 ring."""
    office = make_office(tmp_path, GROUP_OFFICE)
    caller = office.invite("+74951112233", "4951000000", trunk="main")
    caller.media_up()
    office.media.prompt_ends.pop()()
    office.tick()
    office.time_passes()
    return office, caller


MENU_OFFICE = GROUP_OFFICE.replace("inbound:\n", "inbound:\n  menu: {'2': [{ring: ['103']}], '1': [{ring: ['102']}]}\n")


def test_a_digit_of_the_menu_rings_its_group_at_once_or_after_the_timeout_when_an_extension_begins_with_it(tmp_path):
    """"Press 2 for the store": 2 begins no extension, so it rings 103 at once; 1 begins 101, so
    the box waits for more digits, and the digit timeout then makes it the menu's 1."""
    office = make_office(tmp_path, MENU_OFFICE)
    caller = office.invite("+74951112233", "4951000000", trunk="main")
    caller.media_up()
    caller.presses("2")
    office.tick()
    assert [leg.number for leg in office.legs.made[1:]] == ["103"]
    office.legs.to("103").answers_call()
    caller.ends(200)
    second = office.invite("+74951112233", "4951000000", trunk="main")
    second.media_up()
    second.presses("1")
    office.tick()
    assert [leg.number for leg in office.legs.made if leg.role != "caller"] == ["103"]  # 1 could still be 101
    office.time_passes()
    assert office.legs.made[-1].number == "102"


def test_a_number_with_its_own_scenario_rings_its_group_and_the_others_the_days(tmp_path):
    """The office's second number goes to the store (103); its main number rings 101 and 102."""
    office = make_office(tmp_path, GROUP_OFFICE.replace("inbound:\n", "inbound:\n  numbers: {'+74951000001': [{ring: ['103']}]}\n"))
    for dialled in ("74951000001", "4951000000"):
        caller = office.invite("+74951112233", dialled, trunk="main")
        caller.media_up()
        office.media.prompt_ends.pop()()
        office.tick()
        office.time_passes()
    rang = [r["rang"] for r in sorted(office.records(), key=lambda r: r["dst"], reverse=True)]
    assert rang == [["103"], ["101", "102"]]


def test_an_inbound_group_call_says_who_answered_and_whom_it_rang(tmp_path):
    office, _caller = group_ringing(tmp_path)
    reception, sales = office.legs.to("101"), office.legs.to("102")
    reception.rings(), sales.rings()
    sales.answers_call()
    assert reception.hung_up == 0  # the other member's phone stops ringing
    (record,) = office.records()
    assert record["answered_by"] == "102" and record["rang"] == ["101", "102"] and record["dst"] == "4951000000"


def test_a_missed_group_call_rang_each_member_and_nobody_answered(tmp_path):
    office, caller = group_ringing(tmp_path)
    office.legs.to("101").rings(), office.legs.to("102").rings()
    office.time_passes()  # the group's 20 s pass: the next step rings 103
    office.legs.to("103").rings()
    caller.ends(200)  # the caller gives up
    (record,) = office.records()
    assert record["disposition"] == "no_answer" and record["answered_by"] is None
    assert record["rang"] == ["101", "102", "103"]


def test_edge_header_round_trip_survives_hostile_values():
    hostile = EdgeCall(caller="101", name='Eve";x=1\r\nVia: evil', dialled="0%23", to="", trunk="",
                       replaces="abc@host;to-tag=1", call_id="a;b=c", tls=True)
    assert parse_edge_call(format_edge_call(hostile)) == hostile
    assert "\n" not in format_edge_call(hostile)


def test_edge_header_reading():
    assert parse_edge_call("caller=101;future=yes;caller=999").caller == "101"  # unknown ignored, first wins
    assert parse_edge_call("trunk=main;tls=0") == EdgeCall(trunk="main")
    with pytest.raises(ValueError):
        parse_edge_call("caller=101;garbage")
    message = ("INVITE sip:102@127.0.0.1 SIP/2.0\r\nFrom: \"Mallory\" <sip:666@x>\r\n"
               "x-edgepbx-call:  caller=101;dialled=102\r\n\r\n")
    invite = read_invite(7, "127.0.0.1:5060", message)
    assert invite.edge == EdgeCall(caller="101", dialled="102")
    assert read_invite(7, "127.0.0.1:5060", "INVITE sip:1@x SIP/2.0\r\nX-Edgepbx-Call: junk\r\n\r\n").edge is None


def test_what_the_edge_writes_is_what_the_feature_server_reads(monkeypatch):
    """kemi_router.py runs inside Kamailio (module KSR); its header formatter needs none of it."""
    monkeypatch.setitem(sys.modules, "KSR", types.ModuleType("KSR"))
    from appliance.kamailio import kemi_router
    line = kemi_router.edge_call_header(caller="101", name="A;B", dialled="0%23", replaces="c@h", call_id="i@h",
                                        tls=True)
    name, _, value = line.rstrip("\r\n").partition(": ")
    assert name == "X-Edgepbx-Call"
    assert parse_edge_call(value) == EdgeCall(caller="101", name="A;B", dialled="0%23", replaces="c@h",
                                              call_id="i@h", tls=True)


def test_an_answered_call_records_what_each_leg_measured_and_its_mos(office):
    """The figures come from the legs' streams (PJSIP's statistics on the box): a clean caller and
    a callee whose packets arrive with 10 % loss."""
    from appliance.featureserver.quality import LegSample

    phone, sales = answered_call(office)
    phone.stream = LegSample("PCMU", received=500, lost=0, jitter_mean_ms=0.4, jitter_max_ms=2.0, rtt_ms=0.3,
                             sent=500, reported_lost=0, reported_jitter_ms=0.5)
    sales.stream = LegSample("PCMU", received=450, lost=50, jitter_mean_ms=3.0, jitter_max_ms=20.0, rtt_ms=None,
                             sent=500, reported_lost=None, reported_jitter_ms=None)
    office.tick()
    sales.ends(200)
    (record,) = office.records()
    caller, callee = record["quality"]["caller"], record["quality"]["callee"]
    assert caller["codec"] == "PCMU" and caller["loss_pct"] == 0.0 and caller["mos"] >= 4.3
    assert caller["rtt_ms"] == 0.3 and caller["reported_loss_pct"] == 0.0
    assert callee["loss_pct"] == 10.0 and callee["rtt_ms"] is None and callee["reported_loss_pct"] is None
    assert 3.0 < callee["mos"] < 3.6  # poor: G.107's Ie_eff for 10 % random loss on G.711 with PLC


def test_an_unanswered_call_has_no_quality(office):
    office.invite("101", "102")
    office.legs.to("102").ends(486)
    assert office.records()[0]["quality"] is None


def test_the_e_model_by_its_known_points():
    """G.107: G.711 with no loss and little delay is R 93 (MOS 4.4); delay past 177 ms and loss
    bring it down; a MOS never leaves 1.0-4.5."""
    from appliance.featureserver.quality import mos

    assert mos("PCMA", 0, 0, None) == pytest.approx(4.41, abs=0.02)
    assert mos("PCMU", 0, 0, 400) < mos("PCMU", 0, 0, 40)
    assert mos("PCMU", 0, 0, 600) < 4.0
    assert mos("G729", 0, 0, None) < mos("PCMU", 0, 0, None)
    assert mos("PCMU", 100, 200, 2000) == 1.0


def test_a_leg_the_box_heard_nothing_from_is_one_way_audio_not_a_clean_line():
    """Seen in the NAT lab: a softphone whose RTP never reached the box had 0 packets, 0 lost and
    MOS 4.4 on its record, a "good line". Once the box has sent half a second of audio to a party
    it heard nothing from, that leg is all lost with MOS 1.0; a leg that just began is not judged."""
    from appliance.featureserver.quality import LegSample, summary

    silent = LegSample(codec="PCMU", received=0, lost=0, jitter_mean_ms=0, jitter_max_ms=0, rtt_ms=None, sent=600,
                       reported_lost=None, reported_jitter_ms=None)
    assert summary(silent)["loss_pct"] == 100.0 and summary(silent)["mos"] == 1.0
    just_answered = LegSample(codec="PCMU", received=0, lost=0, jitter_mean_ms=0, jitter_max_ms=0, rtt_ms=None, sent=3,
                              reported_lost=None, reported_jitter_ms=None)
    assert summary(just_answered)["mos"] == 4.4 and summary(just_answered)["loss_pct"] == 0.0


def test_a_phones_voice_quality_report_is_read_for_its_own_side_and_nonsense_is_not_trusted():
    """RFC 6035 bodies as Yealink, Poly and snom phones write them (CallID at the top or inside
    LocalMetrics); figures out of range, garbage and a report naming no call give nothing."""
    from appliance.featureserver.quality import parse_vq_report

    top = ("VQSessionReport: CallTerm\r\nCallID: abc@10.0.0.5\r\nLocalMetrics:\r\nPacketLoss: NLR=1.5 JDR=0.0\r\n"
           "Delay: RTD=120 ESD=40 IAJ=3\r\nQualityEst: MOSLQ=3.9 MOSCQ=3.7\r\nRemoteMetrics:\r\nQualityEst: MOSLQ=1.0\r\n")
    said = parse_vq_report(top)
    assert said is not None and said.call_id == "abc@10.0.0.5"
    assert said.figures() == {"phone_mos": 3.9, "phone_mos_cq": 3.7, "phone_loss_pct": 1.5, "phone_rtt_ms": 120.0}
    inside = "VQSessionReport\nLocalMetrics:\nCallID:3c26a8de500f\nPacketLoss:NLR=0.0 JDR=0.0\nDelay:RTD=0 ESD=0 IAJ=4\n"
    assert parse_vq_report(inside).call_id == "3c26a8de500f" and parse_vq_report(inside).figures() == \
        {"phone_loss_pct": 0.0, "phone_rtt_ms": 0.0}
    hostile = "CallID: x\nLocalMetrics:\nQualityEst: MOSLQ=99 MOSCQ=nan MOSCQ=-1\nPacketLoss: NLR=1e9\nDelay: RTD=abc\n"
    assert parse_vq_report(hostile).figures() == {}
    assert parse_vq_report("LocalMetrics:\nQualityEst: MOSLQ=4.0\n") is None
    assert parse_vq_report("\x00" * 10000) is None
