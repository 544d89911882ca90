"""`edgepbx selftest` (what confirms a booted slot after an update) and `edgepbx update`'s refusal
while calls are up, against a running appliance with real phones. The install itself, the slot
switch and the rollback are tested on the booted image (test_image.py): RAUC needs its slots."""
from __future__ import annotations

import subprocess

import pjsua2 as pj

from conftest import EDGEPBX, ROOT


def edgepbx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(EDGEPBX + list(args), capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_selftest_passes_on_a_running_box_and_an_update_waits_for_the_call_to_end(pbx, lab, phones, tmp_path):
    passed = edgepbx("selftest", "--config", str(pbx.config))
    assert passed.returncode == 0 and f"SIP answers on 127.0.0.1:{pbx.sip_port}" in passed.stdout, passed.stderr
    bundle = tmp_path / "edgepbx-x86.raucb"
    bundle.write_bytes(b"not installed: the call must stop the update first")
    a = phones("101")
    phones("102")  # registered: the call is answered
    call = a.dial("102")
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, "call to be answered")
    refused = edgepbx("update", "--config", str(pbx.config), str(bundle))
    assert refused.returncode == 1
    assert "1 call(s) up; the update restarts the box" in refused.stderr
    call.hangup_now()
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "call to end")
    pbx.wait_cdr(lambda r: r["src"] == "101" and r["dst"] == "102" and r["ended_at"])
    # No call now: the update goes on to RAUC, which has no slots on a development machine.
    tried = edgepbx("update", "--config", str(pbx.config), str(bundle), "--no-reboot")
    assert tried.returncode == 1 and "this slot stays as it is" in tried.stderr + tried.stdout, tried.stderr


def test_selftest_fails_with_the_reason_when_sip_does_not_answer(tmp_path):
    from conftest import write_office
    config = write_office(tmp_path)
    failed = edgepbx("selftest", "--config", str(config))
    assert failed.returncode == 1
    assert "answered nothing to OPTIONS" in failed.stderr


def test_a_download_cut_midway_is_refused_and_leaves_nothing_on_the_data_partition(tmp_path):
    """The update server (a loopback socket) promises 4 MiB and hangs up after 1 MiB, as a line
    that drops would: the box says so, installs nothing and keeps no partial bundle."""
    import socket
    import threading

    from conftest import write_office
    config = write_office(tmp_path)
    server = socket.create_server(("127.0.0.1", 0))

    def serve_half() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: 4194304\r\nConnection: close\r\n\r\n" + b"\0" * (1 << 20))

    threading.Thread(target=serve_half, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/edgepbx-x86.raucb"
    cut = edgepbx("update", "--config", str(config), url, "--no-reboot")
    server.close()
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert f"could not download {url}" in cut.stderr and "nothing was installed" in cut.stderr, cut.stderr
    assert "Traceback" not in cut.stderr
    assert not list((tmp_path / "var" / "update").glob("*")), "a partial bundle was left on the data partition"


def test_the_heartbeat_says_the_release_in_the_booted_slot_and_the_board(tmp_path):
    """What `sites --json` shows per box: the release RAUC installed in the booted slot (the
    flashed slot runs the package's version), the slot from the boot loader's command line, and
    the board from RAUC's system.conf; off the image, no slot and no board."""
    from appliance.slots import SLOTS_FILE, booted_software

    cmdline, conf = tmp_path / "cmdline", tmp_path / "system.conf"
    conf.write_text("[system]\ncompatible=edgepbx-x86\nbootloader=grub\n")
    (tmp_path / SLOTS_FILE).parent.mkdir()
    (tmp_path / SLOTS_FILE).write_text('{"B": "1.0.0+3f2a"}')
    cmdline.write_text("BOOT_IMAGE=/vmlinuz root=PARTLABEL=rootB rauc.slot=B console=ttyS0\n")
    assert booted_software(tmp_path, "0.9.0", cmdline, conf) == {"version": "1.0.0+3f2a", "slot": "B",
                                                                  "compatible": "edgepbx-x86"}
    cmdline.write_text("root=PARTLABEL=rootA rauc.slot=A\n")
    assert booted_software(tmp_path, "0.9.0", cmdline, conf)["version"] == "0.9.0"  # as flashed
    cmdline.write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1\n")
    assert booted_software(tmp_path, "0.9.0", cmdline, tmp_path / "absent.conf") == {
        "version": "0.9.0", "slot": None, "compatible": None}
