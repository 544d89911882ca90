"""Asterisk 22 from Debian unstable, configured as the same office, for side-by-side benchmarks.

The peer lives in a minbase chroot made once by debootstrap (about 45 s, cached in
/var/cache/edgepbx/asterisk-sid) and runs on its own ports: PJSIP endpoints with digest auth,
Dial between phones, every call recorded by MixMonitor, opus/G.722/PCMA/PCMU allowed, media
anchored (direct_media=no), as edgepbx anchors it. Only for bench/: nothing of it is shipped.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(os.environ.get("EDGEPBX_ASTERISK_ROOT", "/var/cache/edgepbx/asterisk-sid"))
MIRROR = "http://deb.debian.org/debian"
CONF = "/etc/edgepbx-bench"  # inside the chroot


def ensure_chroot() -> Path:
    """The chroot with Asterisk, made once (needs root and Debian's debootstrap)."""
    if (ROOT / "usr/sbin/asterisk").exists():
        return ROOT
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    tmp = ROOT.with_name(ROOT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "--include=asterisk,asterisk-modules", "sid", str(tmp),
                    MIRROR], check=True, stdout=subprocess.DEVNULL)
    tmp.rename(ROOT)
    return ROOT


def version() -> str:
    out = subprocess.run(["chroot", str(ensure_chroot()), "asterisk", "-V"], capture_output=True, text=True)
    return out.stdout.strip()


def _configs(extensions: dict[str, str], sip_port: int, rtp: tuple[int, int]) -> dict[str, str]:
    defaults = (ROOT / "etc/asterisk/asterisk.conf").read_text()
    modules_dir = next(line.split("=>", 1)[1].strip() for line in defaults.splitlines()
                       if line.startswith("astmoddir"))
    endpoints = "\n".join(f"""[{n}]
type=endpoint
context=office
disallow=all
allow=opus,g722,alaw,ulaw
auth={n}-auth
aors={n}
direct_media=no
[{n}-auth]
type=auth
auth_type=userpass
username={n}
password={password}
[{n}]
type=aor
max_contacts=1
remove_existing=yes
""" for n, password in extensions.items())
    return {
        "asterisk.conf": f"""[directories]
astetcdir => {CONF}
astmoddir => {modules_dir}
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /run/edgepbx-bench
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin
[options]
maxfiles => 65536
""",
        "modules.conf": """[modules]
autoload=yes
noload => chan_dahdi.so
noload => chan_iax2.so
noload => chan_mobile.so
noload => chan_unistim.so
noload => chan_console.so
noload => chan_audiosocket.so
noload => res_hep.so
noload => res_hep_pjsip.so
noload => res_hep_rtcp.so
noload => cdr_pgsql.so
noload => cel_pgsql.so
noload => res_config_pgsql.so
""",
        "logger.conf": "[general]\n[logfiles]\nconsole => warning,error\n",
        "rtp.conf": f"[general]\nrtpstart={rtp[0]}\nrtpend={rtp[1]}\n",
        "pjsip.conf": f"""[transport-udp]
type=transport
protocol=udp
bind=127.0.0.1:{sip_port}
{endpoints}""",
        "extensions.conf": """[office]
exten => _XXX,1,MixMonitor(${UNIQUEID}.wav)
 same => n,Dial(PJSIP/${EXTEN},30)
 same => n,Hangup()
""",
        "cdr.conf": "[general]\nenable=no\n",
        "cel.conf": "[general]\nenable=no\n",
    }


class AsteriskOffice:
    """Asterisk in the chroot with `extensions` (number -> password) on 127.0.0.1:sip_port."""

    def __init__(self, extensions: dict[str, str], sip_port: int, rtp: tuple[int, int], log: Path):
        self.root = ensure_chroot()
        self.sip_port = sip_port
        self.log = log
        self.proc: subprocess.Popen | None = None
        conf = self.root / CONF.lstrip("/")
        shutil.rmtree(conf, ignore_errors=True)
        conf.mkdir(parents=True)
        for name, text in _configs(extensions, sip_port, rtp).items():
            (conf / name).write_text(text)
        self.recordings = self.root / "var/spool/asterisk/monitor"
        shutil.rmtree(self.recordings, ignore_errors=True)
        self.recordings.mkdir(parents=True)
        (self.root / "run/edgepbx-bench").mkdir(parents=True, exist_ok=True)
        # Asterisk looks up this host's name (and, failing that, A.ROOT-SERVERS.NET) to learn its
        # address: answer from /etc/hosts, and let no lookup leave the machine.
        (self.root / "etc/hosts").write_text(f"127.0.0.1 localhost {socket.gethostname()}\n")
        (self.root / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")

    def start(self, timeout: float = 60.0) -> None:
        proc_dir = self.root / "proc"
        if not os.path.ismount(proc_dir):
            subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True)
        self.proc = subprocess.Popen(["chroot", str(self.root), "/usr/sbin/asterisk", "-f", "-C",
                                      f"{CONF}/asterisk.conf"], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(["chroot", str(self.root), "/usr/sbin/asterisk", "-C", f"{CONF}/asterisk.conf",
                                    "-rx", "core waitfullybooted"], capture_output=True, text=True)
            if ready.returncode == 0 and "fully booted" in ready.stdout.lower():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"Asterisk did not start; see {self.log}")

    def pids(self) -> list[int]:
        """The Asterisk process itself (chroot execs it in place)."""
        return [self.proc.pid] if self.proc else []

    def recording_count(self) -> int:
        return len(list(self.recordings.glob("*.wav")))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        proc_dir = self.root / "proc"
        if os.path.ismount(proc_dir):
            subprocess.run(["umount", "-l", str(proc_dir)], check=False)
