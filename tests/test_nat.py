"""The box behind an office router's NAT, its SIP provider on the "internet", and a softphone at
home behind a NAT of its own: real routers in network namespaces (tests/nat_lab.py: nftables
masquerade, UDP mappings forgotten after 30 s), the provider's registrar a Kamailio of its own, the
provider's switch and every phone pjsua2 (tests/netns_phone.py), audio checked by tone.

The box is set up as an installer would leave it: its LAN address, a trunk that registers and one
the provider trusts by address, no public address configured (it learns it), the router
forwarding the box's outside SIP port and RTP ports."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import pytest

from conftest import ROOT, start_pbx
from nat_lab import (HOME_PHONE, HOME_PUBLIC, NAT_UDP_TIMEOUT, OFFICE_BOX, OFFICE_PHONES, OFFICE_PUBLIC, PROVIDER,
                     VLAN_PHONE, NatLab, Phones, ProviderRegistrar, SipCapture, StunServer, in_ns)
from netns_phone import TONE_OF
from phones import write_tone

RTP = (20000, 20399)
WAN_PORT = 5062
TRUNK_USER, TRUNK_PASSWORD = "nn-office", "trunk-pass-2"


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    work = tmp_path_factory.mktemp("nat")
    forwards = [("udp", WAN_PORT, WAN_PORT), ("tcp", WAN_PORT, WAN_PORT), ("udp", *RTP)]
    lab = NatLab(forward=forwards).up()
    started = []
    try:
        registrar = ProviderRegistrar(lab, work / "provider", 5070, TRUNK_USER, TRUNK_PASSWORD)
        started.append(registrar)
        greeting = write_tone(work / "greeting.wav", 3100.0, seconds=0.5)
        config = work / "office.yaml"
        config.write_text(f"""site: {{name: "Office behind NAT", country: RU, area_code: "831"}}
data_dir: ./var
network: {{bind: {OFFICE_BOX}, sip_port: 5060, rtp_ports: [{RTP[0]}, {RTP[1]}]}}
trunks:
  - {{name: registered, host: {PROVIDER}, port: 5070, username: "{TRUNK_USER}", password: {TRUNK_PASSWORD}, register: true}}
  - {{name: trusted, host: {PROVIDER}, port: 5060, register: false}}
dialplan: {{rules: [{{pattern: '^8(9\\d{{9}})$', number: '+7{{1}}', class: mobile, trunks: [trusted]}}]}}
inbound: {{greeting: {greeting}, digit_timeout: 1, day: [{{ring: ["101"]}}]}}
# the voice VLAN's phones are the office's own: they fetch their configs without credentials
provisioning: {{tftp_port: 0, http_port: 8088, https_port: 0, lan: 192.168.0.0/16, discovery: false, pnp: false}}
extensions:
  - {{number: "101", name: "Reception", password: "pw-101-secret"}}
  - {{number: "102", name: "Sales", password: "pw-102-secret"}}
  - {{number: "103", name: "Store", password: "pw-103-secret", phone: {{mac: "80:5E:C0:20:20:30", vendor: yealink, model: T46U}}}}
  - {{number: "104", name: "At home", password: "pw-104-secret"}}
""")
        pbx = start_pbx(config, netns=lab.ns("office"), timeout=60)
        started.append(pbx)
        deadline = time.monotonic() + 30
        while "config applied" not in pbx.log_text():  # re-advertised with the learned address
            assert time.monotonic() < deadline, pbx.log_text()[-3000:]
            time.sleep(0.3)
        desks = Phones(lab.ns("office"), OFFICE_PHONES, work / "office")
        started.append(desks)
        switch = Phones(lab.ns("inet"), PROVIDER, work / "provider-switch")
        started.append(switch)
        home = Phones(lab.ns("home"), HOME_PHONE, work / "home")
        started.append(home)
        vlan = Phones(lab.ns("vlan"), VLAN_PHONE, work / "vlan")
        started.append(vlan)
        for number in ("101", "102"):
            assert desks.ask("register", number=number, password=f"pw-{number}-secret", registrar=OFFICE_BOX,
                             port=5060) == {"code": 200}
        switch.ask("listen", number="provider", port=5060)
        assert home.ask("register", number="104", password="pw-104-secret", registrar=OFFICE_PUBLIC,
                        port=WAN_PORT) == {"code": 200}
        yield {"lab": lab, "pbx": pbx, "registrar": registrar, "desks": desks, "switch": switch, "home": home,
               "vlan": vlan, "config": config, "work": work}
    finally:
        for part in reversed(started):
            (part.close if isinstance(part, Phones) else part.stop)()
        lab.down()


def status(office) -> dict:
    out = subprocess.run(["ip", "netns", "exec", office["lab"].ns("office"), sys.executable, "-m", "appliance.cli",
                          "status", "--config", str(office["config"]), "--json"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    return json.loads(out)


def talk_and_listen(caller: Phones, caller_number: str, uri: str, callee: Phones, callee_number: str) -> None:
    """`caller` dials `uri`; `callee` answers (automatically); each hears the other's tone."""
    caller.ask("dial", number=caller_number, uri=uri)
    assert callee.ask("talking", number=callee_number, timeout=20)["talking"]
    assert caller.ask("talking", number=caller_number, timeout=5)["talking"]
    heard_by_caller = caller.ask("hears", number=caller_number, hz=TONE_OF[callee_number])
    heard_by_callee = callee.ask("hears", number=callee_number, hz=TONE_OF[caller_number])
    assert heard_by_caller["hears"] and heard_by_callee["hears"], (heard_by_caller, heard_by_callee)


def hang_up(*groups: Phones) -> None:
    for group in groups:
        group.ask("hangup")


def test_the_box_learns_its_public_address_from_the_providers_answers_and_registers_with_it(office):
    state = status(office)
    assert state["nat"]["public_address"] == OFFICE_PUBLIC, state["nat"]
    assert f"{PROVIDER}:5070" in state["nat"]["public_address_from"] and not state["nat"]["alg_warning"]
    assert next(t for t in state["trunks"] if t["name"] == "registered")["state"] == "registered"
    # the provider holds the public address and the outside port as the office's Contact
    assert f"contact <sip:{TRUNK_USER}@{OFFICE_PUBLIC}:{WAN_PORT}>" in office["registrar"].log_text()


def test_calls_out_and_in_through_the_office_nat_have_audio_both_ways(office):
    desks, switch = office["desks"], office["switch"]
    try:
        talk_and_listen(desks, "101", f"sip:89161234567@{OFFICE_BOX}:5060", switch, "provider")  # out, trusted trunk
        hang_up(desks, switch)
        # in, the way a provider calls a registered office: to its Contact, through its registrar
        talk_and_listen(switch, "provider", f"sip:{TRUNK_USER}@{PROVIDER}:5070", desks, "101")
    finally:
        hang_up(desks, switch)


def test_a_softphone_behind_a_home_nat_calls_and_is_called_with_audio_both_ways(office):
    desks, home = office["desks"], office["home"]
    try:
        talk_and_listen(home, "104", f"sip:102@{OFFICE_PUBLIC}:{WAN_PORT}", desks, "102")
        hang_up(home, desks)
        talk_and_listen(desks, "102", f"sip:104@{OFFICE_BOX}:5060", home, "104")
    finally:
        hang_up(home, desks)


def home_line_call(office, seconds: float) -> dict:
    """The softphone at home calls desk 102 and talks `seconds`; the box's record of the call."""
    desks, home = office["desks"], office["home"]
    since = datetime.now().astimezone().isoformat(timespec="milliseconds")
    try:
        home.ask("dial", number="104", uri=f"sip:102@{OFFICE_PUBLIC}:{WAN_PORT}")
        assert desks.ask("talking", number="102", timeout=20)["talking"]
        assert home.ask("talking", number="104", timeout=5)["talking"]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            home.ask("poll", seconds=min(2.0, max(0.1, end - time.monotonic())))
    finally:
        hang_up(home, desks)
    return office["pbx"].wait_cdr(lambda r: r["src"] == "104" and r["started_at"] > since
                                  and r["disposition"] == "answered" and r["quality"], timeout=10)


def mac_of(ns: str, dev: str) -> str:
    return json.loads(in_ns(ns, "ip", "-j", "link", "show", dev).stdout)[0]["address"]


def test_delay_and_jitter_on_the_home_line_show_in_that_legs_round_trip_and_jitter(office):
    """The "internet" delays the home line's RTP by 60 ms with 15 ms of normal jitter each way
    (tests/slow_line.py: netem's `delay 60ms 15ms distribution normal` in user space, since this
    machine's kernel has no netem); the box's record of a call from home shows it on the
    softphone's leg (a round trip of about 120 ms, jitter of several ms) and not on the desk
    phone's. The softphone speaks PCMU so its packets leave on a steady 20 ms clock."""
    lab, home = office["lab"], office["home"]
    home.ask("codec", only="PCMU/")
    try:
        clean = home_line_call(office, 12.0)["quality"]
        line = subprocess.Popen(["ip", "netns", "exec", lab.ns("inet"), sys.executable, str(ROOT / "tests" / "slow_line.py"),
                                 "home", mac_of(lab.ns("hrouter"), "wan"), "office", mac_of(lab.ns("orouter"), "wan"),
                                 str(RTP[0]), str(RTP[1]), "60", "15"], stdout=subprocess.PIPE, text=True)
        try:
            assert line.stdout.readline().strip() == "ready"
            slow = home_line_call(office, 12.0)["quality"]
        finally:
            line.terminate()
            line.wait(timeout=10)
    finally:
        home.ask("codec", only="")
    print("home line clean:", clean)
    print("home line 60 ms +-15 ms each way:", slow)
    assert clean["caller"]["codec"] == slow["caller"]["codec"] == "PCMU"
    assert clean["caller"]["rtt_ms"] is not None and clean["caller"]["rtt_ms"] < 20, clean["caller"]
    assert clean["caller"]["jitter_ms"] < 5, clean["caller"]
    assert slow["caller"]["rtt_ms"] is not None and 100 <= slow["caller"]["rtt_ms"] <= 200, slow["caller"]
    assert slow["caller"]["jitter_ms"] >= 8 and slow["caller"]["jitter_max_ms"] > slow["caller"]["jitter_ms"], slow["caller"]
    assert slow["callee"]["rtt_ms"] is not None and slow["callee"]["rtt_ms"] < 20, slow["callee"]  # the desk's leg
    assert slow["caller"]["mos"] < clean["caller"]["mos"], (clean["caller"], slow["caller"])


def test_a_call_lasts_past_two_nat_timeouts_and_keepalives_keep_trunk_and_softphone_reachable(office):
    """A call between the office and the softphone (across both NATs) stays up with audio for
    over twice the routers' UDP timeout; meanwhile the box keeps its trunks' and the softphone's
    mappings open, so afterwards the provider's call and a call to the softphone still come in."""
    desks, home, switch, registrar = office["desks"], office["home"], office["switch"], office["registrar"]
    keepalives_before = registrar.log_text().count("provider: OPTIONS from")
    try:
        talk_and_listen(desks, "101", f"sip:104@{OFFICE_BOX}:5060", home, "104")
        held = 2 * NAT_UDP_TIMEOUT + 5
        capture = SipCapture(office["lab"], "orouter", "wan", WAN_PORT, office["work"]).run(held - 5)
        end = time.monotonic() + held
        while time.monotonic() < end:
            home.ask("poll", seconds=min(5.0, max(0.1, end - time.monotonic())))
        assert desks.ask("hears", number="101", hz=TONE_OF["104"])["hears"]
        assert home.ask("hears", number="104", hz=TONE_OF["101"])["hears"]
        hang_up(desks, home)
        per_minute = {peer: 60 * count / (held - 5) for peer, count in json.loads(capture.communicate()[0]).items()}
        print(f"NAT: SIP on the office router's WAN side, both directions: the provider (registration and "
              f"keepalives to two trunks) {per_minute.get(PROVIDER, 0):.0f} bytes/min, the softphone at home "
              f"(pings and its own keepalives; the call's RTP not counted) {per_minute.get(HOME_PUBLIC, 0):.0f} bytes/min")
        keepalives = registrar.log_text().count("provider: OPTIONS from") - keepalives_before
        assert keepalives >= held // 20 - 1, keepalives  # one OPTIONS each 20 s to each trunk
        print(f"NAT: a call held {held} s across both NATs kept two-way audio; {keepalives} keepalive OPTIONS to "
              f"the registrar meanwhile")
        talk_and_listen(switch, "provider", f"sip:{TRUNK_USER}@{PROVIDER}:5070", desks, "101")
        hang_up(switch, desks)
        talk_and_listen(desks, "102", f"sip:104@{OFFICE_BOX}:5060", home, "104")
    finally:
        hang_up(desks, home, switch)


def test_a_trunk_comes_back_when_the_router_forgets_its_nat_table(office):
    """Without a port forward (the mapping the box keeps open is the only way in), the router
    loses its NAT table: the next keepalive opens a new mapping, and the provider's calls come in
    again. The time it took is a figure for docs/nat.md."""
    lab, desks, switch = office["lab"], office["desks"], office["switch"]
    rtp_only = f"    iifname \"wan\" udp dport {RTP[0]}-{RTP[1]} dnat to {OFFICE_BOX}"
    lab.router("orouter", rtp_only)
    try:
        lab.forget_nat()
        forgotten = time.monotonic()
        while True:
            switch.ask("dial", number="provider", uri=f"sip:{TRUNK_USER}@{PROVIDER}:5070")
            if desks.ask("talking", number="101", timeout=4)["talking"]:
                break
            hang_up(switch, desks)
            assert time.monotonic() - forgotten < 3 * 20, "the trunk did not come back"
        took = time.monotonic() - forgotten
        print(f"NAT: after the router forgot its NAT table, the provider's call came in again after {took:.0f} s")
    finally:
        hang_up(switch, desks)
        lab.router("orouter", "\n".join(f"    iifname \"wan\" {p} dport {lo}-{hi} dnat to {OFFICE_BOX}"
                                        for p, lo, hi in lab.forward))


def test_status_warns_when_the_router_rewrites_sip(office):
    """The router's SIP ALG (the kernel's nf_nat_sip, as many routers have it) rewrites the box's
    public address back to its LAN address in the provider's answers: `edgepbx status` says so
    and tells the installer to turn it off; once it is off, the warning goes."""
    lab = office["lab"]
    forwards = "\n".join(f"    iifname \"wan\" {p} dport {lo}-{hi} dnat to {OFFICE_BOX}" for p, lo, hi in lab.forward)
    lab.router("orouter", forwards, alg=True)
    lab.forget_nat()
    try:
        deadline = time.monotonic() + 90  # a re-registration or two (the registrar allows 30 s)
        while not status(office)["nat"]["alg_warning"]:
            assert time.monotonic() < deadline, status(office)["nat"]
            time.sleep(1)
        warning = status(office)["nat"]["alg_warning"]
        assert "SIP ALG" in warning and "turn it off" in warning, warning
        human = subprocess.run(["ip", "netns", "exec", lab.ns("office"), sys.executable, "-m", "appliance.cli", "status",
                                "--config", str(office["config"])], capture_output=True, text=True, cwd=ROOT).stdout
        assert "WARNING: SIP packets arrive rewritten" in human
    finally:
        lab.router("orouter", forwards)
        lab.forget_nat()
    deadline = time.monotonic() + 90
    while status(office)["nat"]["alg_warning"]:
        assert time.monotonic() < deadline, "the warning stayed after the ALG was turned off"
        time.sleep(1)


def test_a_phone_on_a_routed_voice_vlan_fetches_its_config_and_calls_with_audio(office):
    """Another subnet of the office, routed to the box's LAN without NAT: the phone gets its
    config (naming the box's own address) and its calls need no NAT handling."""
    lab, vlan, desks = office["lab"], office["vlan"], office["desks"]
    fetched = in_ns(lab.ns("vlan"), "curl", "-s", "-S", "--max-time", "10", f"http://{OFFICE_BOX}:8088/805ec0202030.cfg")
    assert f"account.1.sip_server.1.address = {OFFICE_BOX}" in fetched.stdout
    assert "account.1.password = pw-103-secret" in fetched.stdout
    assert vlan.ask("register", number="103", password="pw-103-secret", registrar=OFFICE_BOX, port=5060) == {"code": 200}
    try:
        talk_and_listen(vlan, "103", f"sip:101@{OFFICE_BOX}:5060", desks, "101")
    finally:
        hang_up(vlan, desks)


def test_with_a_stun_server_the_box_advertises_its_public_address_from_the_start(office, tmp_path):
    """network.stun_server: a second box on the office LAN asks the STUN server (coturn) before
    its edge starts, and its outside face advertises the answer at once."""
    lab = office["lab"]
    stun = StunServer(lab, tmp_path)
    second = "192.168.1.11"
    in_ns(lab.ns("office"), "ip", "addr", "add", f"{second}/24", "dev", "lan")
    config = tmp_path / "office.yaml"
    config.write_text(f"""data_dir: ./var
network: {{bind: {second}, sip_port: 5060, rtp_ports: [{RTP[0]}, {RTP[1]}], stun_server: "{stun.address}"}}
extensions:
  - {{number: "201", name: "Second office"}}
""")
    box = None
    try:
        box = start_pbx(config, netns=lab.ns("office"), timeout=60)
        shown = subprocess.run(["ip", "netns", "exec", lab.ns("office"), sys.executable, "-m", "appliance.cli", "status",
                                "--config", str(config), "--json"], capture_output=True, text=True, cwd=ROOT,
                               check=True).stdout
        nat = json.loads(shown)["nat"]
        assert nat["public_address"] == OFFICE_PUBLIC and nat["public_address_from"] == f"STUN server {stun.address}"
        assert f"advertise {OFFICE_PUBLIC}:{WAN_PORT}" in (box.data_dir / "kamailio" / "kamailio.cfg").read_text()
        assert "learned from" not in box.log_text()  # known before the edge started: no restart
    finally:
        if box:
            box.stop()
        stun.stop()
        in_ns(lab.ns("office"), "ip", "addr", "del", f"{second}/24", "dev", "lan", check=False)
