"""Real office networks in network namespaces the tests make themselves (nothing leaves the machine):

    office LAN 192.168.1.0/24           office router              "internet"            home router         home LAN 10.0.0.0/24
    box .10, desk phones .20 --- lan .1 | NAT | wan 203.0.113.2 --- 203.0.113.1      198.51.100.2 | NAT | 10.0.0.1 --- softphone .20
    voice VLAN 192.168.20.0/24 - vlan .1 (routed, no NAT)             198.51.100.1 ---
    desk phone .30                                                provider 192.0.2.10

Both routers masquerade (nftables) with the UDP conntrack timeouts shortened to 30 s, as small
routers keep them; the office router forwards the box's public SIP port and its RTP ports. Each
phone group is a process of its own (tests/netns_phone.py) in its namespace."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT
from json_lines import JsonLines

OFFICE_BOX, OFFICE_PHONES, OFFICE_GW = "192.168.1.10", "192.168.1.20", "192.168.1.1"
OFFICE_PUBLIC, INTERNET_OFFICE_SIDE = "203.0.113.2", "203.0.113.1"
HOME_PUBLIC, INTERNET_HOME_SIDE = "198.51.100.2", "198.51.100.1"
HOME_GW, HOME_PHONE = "10.0.0.1", "10.0.0.20"
VLAN_GW, VLAN_PHONE = "192.168.20.1", "192.168.20.30"  # the office's voice VLAN, routed (no NAT)
PROVIDER = "192.0.2.10"
NAT_UDP_TIMEOUT = 30
ROLES = ("office", "vlan", "orouter", "inet", "hrouter", "home")


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def in_ns(ns: str, *command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", "netns", "exec", ns, *command], capture_output=True, text=True, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{ns}: {' '.join(command)}: {done.stderr.strip()}")
    return done


@dataclass
class NatLab:
    """The namespaces and links above; `forward` lists (protocol, first port, last port) the office
    router forwards to the box."""
    forward: list[tuple[str, int, int]]
    name: str = field(default_factory=lambda: f"ep{os.getpid() % 100000}")

    def ns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def up(self) -> "NatLab":
        for role in ROLES:
            ip("netns", "add", self.ns(role))
            ip("-n", self.ns(role), "link", "set", "lo", "up")
        self._link("office", "lan", "orouter", "lan")
        self._link("vlan", "lan", "orouter", "vlan")
        self._link("orouter", "wan", "inet", "office")
        self._link("inet", "home", "hrouter", "wan")
        self._link("hrouter", "lan", "home", "lan")
        self._addresses("office", "lan", f"{OFFICE_BOX}/24", f"{OFFICE_PHONES}/24", gateway=OFFICE_GW)
        self._addresses("orouter", "lan", f"{OFFICE_GW}/24")
        self._addresses("orouter", "vlan", f"{VLAN_GW}/24")
        self._addresses("vlan", "lan", f"{VLAN_PHONE}/24", gateway=VLAN_GW)
        self._addresses("orouter", "wan", f"{OFFICE_PUBLIC}/24", gateway=INTERNET_OFFICE_SIDE)
        self._addresses("inet", "office", f"{INTERNET_OFFICE_SIDE}/24")
        self._addresses("inet", "home", f"{INTERNET_HOME_SIDE}/24")
        ip("-n", self.ns("inet"), "addr", "add", f"{PROVIDER}/32", "dev", "lo")
        in_ns(self.ns("inet"), "sysctl", "-qw", "net.ipv4.ip_forward=1")  # the internet routes between its sides
        self._addresses("hrouter", "wan", f"{HOME_PUBLIC}/24", gateway=INTERNET_HOME_SIDE)
        self._addresses("hrouter", "lan", f"{HOME_GW}/24")
        self._addresses("home", "lan", f"{HOME_PHONE}/24", gateway=HOME_GW)
        forwards = "\n".join(f"    iifname \"wan\" {proto} dport {lo}-{hi} dnat to {OFFICE_BOX}"
                             for proto, lo, hi in self.forward)
        self.router("orouter", forwards)
        self.router("hrouter", "")
        return self

    def _link(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        ip("link", "add", f"{self.name}{a[:2]}{b[:2]}", "type", "veth", "peer", "name", f"{self.name}{b[:2]}{a[:2]}")
        ip("link", "set", f"{self.name}{a[:2]}{b[:2]}", "netns", self.ns(a), "name", a_dev)
        ip("link", "set", f"{self.name}{b[:2]}{a[:2]}", "netns", self.ns(b), "name", b_dev)
        ip("-n", self.ns(a), "link", "set", a_dev, "up")
        ip("-n", self.ns(b), "link", "set", b_dev, "up")

    def _addresses(self, role: str, dev: str, *cidrs: str, gateway: str | None = None) -> None:
        for cidr in cidrs:
            ip("-n", self.ns(role), "addr", "add", cidr, "dev", dev)
        if gateway:
            ip("-n", self.ns(role), "route", "add", "default", "via", gateway)

    def router(self, role: str, prerouting: str, alg: bool = False) -> None:
        """(Re)writes a router's NAT: masquerade out of wan, `prerouting` DNAT rules in, and with
        `alg` the kernel's SIP helper (nf_nat_sip), the "SIP ALG" of many routers, on the provider's
        ports (5060, and 5070 where the test's registrar listens)."""
        ns = self.ns(role)
        in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(ns, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout={NAT_UDP_TIMEOUT}",
              f"net.netfilter.nf_conntrack_udp_timeout_stream={NAT_UDP_TIMEOUT}")
        helper = ('table ip alg {\n  ct helper sip { type "sip" protocol udp; }\n'
                  '  chain pre {\n    type filter hook prerouting priority filter;\n'
                  '    udp dport { 5060, 5070 } ct helper set "sip"\n    udp sport { 5060, 5070 } ct helper set "sip"\n  }\n}\n'
                  if alg else "")
        rules = (f"flush ruleset\ntable ip nat {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat;\n"
                 f"{prerouting}\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat;\n"
                 f"    oifname \"wan\" masquerade\n  }}\n}}\n{helper}")
        in_ns(ns, "nft", "-f", "-", input=rules)

    def forget_nat(self, role: str = "orouter") -> None:
        """The router loses its NAT table (a reboot, a full conntrack table)."""
        in_ns(self.ns(role), "conntrack", "-F")

    def down(self) -> None:
        for role in ROLES:
            subprocess.run(["ip", "netns", "del", self.ns(role)], capture_output=True)


class Phones:
    """tests/netns_phone.py in a namespace: `ask` sends one request and returns its answer."""

    def __init__(self, ns: str, address: str, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"phones-{address}.log"
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(ROOT / "tests" / "netns_phone.py"),
                                      address, str(workdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.log, "w"), text=True, cwd=ROOT)
        self.answers = JsonLines(self.proc, str(self.log))
        assert self.answers.next(30) == {"ready": True}

    def ask(self, op: str, wait: float = 90, **args) -> dict:
        """`wait`: how long this process waits for the answer (the op's own timeout is in `args`)."""
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        answer = self.answers.next(wait)
        assert "error" not in answer, f"{op}: {answer['error']} (see {self.log})"
        return answer

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


PROVIDER_REALM = "provider.test"


class Daemon:
    """A server of the lab running in one of its namespaces (self.proc), stopped with SIGTERM."""
    proc: subprocess.Popen

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ProviderRegistrar(Daemon):
    """The SIP provider's registrar and proxy: a Kamailio of its own in the "internet" namespace
    at PROVIDER:port, as providers run them. It challenges REGISTERs (digest, one account), keeps
    the registered Contact and, as providers do for customers behind NAT, the address and port
    the REGISTER really came from (nathelper fix_nated_register, where calls then go), adds
    `received` to Vias that name another address than the one a request came from, answers
    OPTIONS, and relays calls from the provider's own phone network (PROVIDER:5060) to the office."""

    def __init__(self, lab: NatLab, workdir: Path, port: int, user: str, password: str):
        from appliance.kamailio.render import module_dir

        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "provider.cfg"
        cfg.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:{PROVIDER}:{port}
mpath="{module_dir()}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "nathelper.so"
modparam("usrloc", "db_mode", 0)
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("auth", "secret", "provider-secret")
modparam("registrar", "max_expires", 30)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    force_rport();
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("OPTIONS")) {{ xlog("L_INFO", "provider: OPTIONS from $si:$sp\\n"); sl_send_reply("200", "OK"); exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_auth_check("{PROVIDER_REALM}", "{password}", "0", "1")) {{ auth_challenge("{PROVIDER_REALM}", "0"); exit; }}
        if (nat_uac_test("19")) {{ fix_nated_register(); }}  # as providers do: reach it where it really is
        if (!save("location")) {{ sl_reply_error(); }}
        xlog("L_INFO", "provider: {user} registered from $si:$sp contact $ct\\n");
        exit;
    }}
    if (is_method("INVITE") && $si == "{PROVIDER}" && $sp == 5060) {{
        if (!lookup("location")) {{ sl_send_reply("480", "Not Registered"); exit; }}
        record_route();
        t_relay();
        exit;
    }}
    sl_send_reply("403", "Forbidden");
}}
""")
        self.log = workdir / "provider.log"
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("inet"), "kamailio", "-DD", "-E", "-f", str(cfg),
                                      "-Y", str(workdir), "-w", str(workdir)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class StunServer(Daemon):
    """A STUN server on the "internet" (coturn, STUN only): what `network.stun_server` asks."""

    def __init__(self, lab: NatLab, workdir: Path, port: int = 3478):
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "stun.log"
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("inet"), "turnserver", "--stun-only", "-n",
                                      "--no-cli", "--no-tls", "--no-dtls", "-L", PROVIDER, "-p", str(port),
                                      "--log-file", "stdout", "--simple-log"], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        self.address = f"{PROVIDER}:{port}"


class SipCapture:
    """SIP on one link of the lab (scapy in its namespace): bytes per peer, both directions."""

    def __init__(self, lab: NatLab, role: str, iface: str, port: int, workdir: Path):
        script = ("import json, sys\nfrom scapy.all import sniff, IP, UDP\ncounts = {}\n"
                  "def count(p):\n    peer = p[IP].dst if p[UDP].sport == %d else p[IP].src\n"
                  "    counts[peer] = counts.get(peer, 0) + len(p[IP])\n"
                  "sniff(iface=%r, filter='udp port %d', prn=count, store=False, timeout=float(sys.argv[1]))\n"
                  "print(json.dumps(counts), flush=True)\n" % (port, iface, port))
        self.script = workdir / "sip_capture.py"
        self.script.write_text(script)
        self.lab, self.role = lab, role

    def run(self, seconds: float) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.lab.ns(self.role), sys.executable, str(self.script),
                                 str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
