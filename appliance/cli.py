"""The `edgepbx` command line: run, check, cdr list, extensions."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import config as config_mod
from . import credentials
from .clock import use_site_clock
from .files import write_private


def _load(path: str) -> config_mod.Config:
    """Loads a config or exits 2 printing every error as FILE:LINE: message; from then on this
    process keeps the site's time (appliance/clock.py)."""
    try:
        cfg = config_mod.load(path)
    except config_mod.InvalidConfig as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        sys.exit(2)
    use_site_clock(cfg.timezone)
    return cfg


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{args.config}: OK ({len(cfg.extensions)} extensions, SIP on {cfg.network.bind}:{cfg.network.sip_port})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .supervisor import Supervisor, print_extensions

    cfg = _load(args.config)
    log_dir = Path(args.log_dir) if args.log_dir else None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"edgepbx: --log-dir {log_dir}: cannot be a folder for the services' logs ({exc.strerror})",
                  file=sys.stderr)
            return 2
    _setup_logging(cfg.log_level)
    print_extensions(cfg)
    return Supervisor(cfg, log_dir).run()


def cmd_featureserver(args: argparse.Namespace) -> int:
    from .featureserver.server import run

    cfg = _load(args.config)
    _setup_logging(cfg.log_level)
    run(cfg)
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from provisioning.service import run

    cfg = _load(args.config)
    _setup_logging(cfg.log_level)
    if not cfg.provisioning.enabled:
        print(f"{args.config}: no provisioning section; nothing to serve", file=sys.stderr)
        return 2
    run(cfg)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from provisioning.status import device_rows

    cfg = _load(args.config)
    rows = device_rows(cfg)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'mac':<13} {'vendor':<12} {'model':<13} {'ext':<6} {'registered':<42} {'last fetch':<40} user agent")
    for r in rows:
        fetch = r["last_fetch"]
        fetched = f"{fetch['at'][:19]} {fetch['protocol']} {fetch['file']}" if fetch else "-"
        registered = f"from {r['registered_from']} since {r['registered_since'][:19]}" if r["registered"] else "no"
        print(f"{r['mac'] or '-':<13} {r['vendor'] or '?':<12} {r['model'] or '?':<13} {r['extension'] or '-':<6} "
              f"{registered:<42} {fetched:<40} {r['user_agent'] or '-'}")
    return 0


def cmd_dialplan_test(args: argparse.Namespace) -> int:
    from .dialplan import DialPlan

    cfg = _load(args.config)
    if args.caller and cfg.extension(args.caller) is None:
        print(f"edgepbx: {args.caller} is not an extension of {args.config}", file=sys.stderr)
        return 2
    route = DialPlan(cfg).route(args.number, args.caller)
    if args.json:
        print(json.dumps(route.as_dict()))
        return 0
    print(f"{route.dialled}: {route.klass}, sends {route.number}"
          + (f" via {', '.join(route.trunks)}" if route.trunks else "")
          + (f" ({route.rule})" if route.rule else "") + (f"; {route.reason}" if route.reason else ""))
    return 0


def cmd_trunks(args: argparse.Namespace) -> int:
    from .trunks import run

    cfg = _load(args.config)
    _setup_logging(cfg.log_level)
    run(cfg)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .cloud.status import cloud_status
    from .trunk_state import trunk_states

    from .featureserver.limits import recent_toll_alarm
    from .nat import nat_status

    cfg = _load(args.config)
    trunks = trunk_states(cfg)
    cloud = cloud_status(cfg)
    toll = recent_toll_alarm(cfg.data_dir)
    nat = nat_status(cfg)
    if args.json:
        print(json.dumps({"trunks": trunks, "cloud": cloud, "toll_alarm": toll, "nat": nat}, indent=1))
        return 0
    print(f"outside face: {cfg.network.bind}:{cfg.network.wan_port}; public address {nat['public_address'] or 'unknown'}"
          f" ({nat['public_address_from']})")
    if nat["alg_warning"]:
        print(f"WARNING: {nat['alg_warning']}")
    if toll:
        print(f"TOLL ALARM at {toll['at']}: a call out was refused, {toll['reason']} (security.outside_calls)")
    if not trunks:
        print(f"{args.config}: no trunks configured")
    else:
        print(f"{'trunk':<16} {'server':<24} {'state':<16} last answer")
    for t in trunks:
        answer = f"{t['last_code']} {t['last_reason'] or ''}".strip() if t["last_code"] is not None else "-"
        print(f"{t['name']:<16} {t['host']:<24} {t['state']:<16} {answer}")
    if not cloud["enrolled"]:
        print("cloud: not enrolled (edgepbx enroll --config FILE PORTAL_URL CODE)")
    else:
        depth = cloud["outbox"]
        print(f"cloud: site {cloud['site']} at {cloud['portal_url']}; last sync {cloud['last_sync_at'] or 'never'}; "
              f"outbox {depth['cdr']} call records, {depth['recording']} recordings"
              + (f", {depth['rejected']} refused" if depth["rejected"] else ""))
        if cloud["last_error"]:
            print(f"cloud: last error at {cloud['last_error_at']}: {cloud['last_error']}")
        if cloud["config"]:
            remote = cloud["config"]
            print(f"cloud: config version {remote['version']} from the portal: {remote['state']} at {remote['at']}")
            for error in remote["errors"] or []:
                print(f"  {error}")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    from .cloud.client import PortalRefused, PortalUnreachable
    from .cloud.link import enroll

    from .backup import BackupRefused

    cfg = _load(args.config)
    try:
        link, restored = enroll(cfg, args.portal_url, args.code, say=lambda line: print(f"edgepbx: {line}", flush=True),
                                restore=True if args.restore else None)
    except (ValueError, BackupRefused) as exc:
        print(f"edgepbx: {exc}", file=sys.stderr)
        return 2
    except PortalRefused as exc:
        print(f"edgepbx: the portal refused the code: {exc.message}", file=sys.stderr)
        return 1
    except PortalUnreachable as exc:
        print(f"edgepbx: cannot reach the portal: {exc}", file=sys.stderr)
        return 1
    if restored is not None:
        print(f"{args.config}: restored {len(restored.config.extensions)} extensions, their passwords, the box's TLS "
              f"identity and the phones' credentials (the first-boot config is {args.config}.previous); a box already "
              "running starts on them at `systemctl restart edgepbx` (the image) or the next `edgepbx run`")
        from .console import lan_address

        old = restored.network
        if old.get("address") and old["address"].split("/")[0] != lan_address():
            print(f"the phones know the dead box at {old['address'].split('/')[0]}: give this box that address (the "
                  f"router's DHCP reservation, or the serial console: {old['address']}, gateway {old['gateway']})")
    print(f"enrolled as site {link.site} of {link.portal_url}; `edgepbx run` syncs call records and recordings there"
          " and backs the box up to it")
    return 0


def cmd_cloud(args: argparse.Namespace) -> int:
    from .cloud.agent import run

    cfg = _load(args.config)
    _setup_logging(cfg.log_level)
    run(cfg)
    return 0


def cmd_call_back(args: argparse.Namespace) -> int:
    """What the portal's call-back button does, from the box's shell: rings EXTENSION, then dials NUMBER."""
    from .cloud.callback import request_call_back

    started, detail = request_call_back(_load(args.config), args.extension, args.number)
    print(f"edgepbx: {detail}", file=sys.stdout if started else sys.stderr)
    return 0 if started else 1


def cmd_extensions(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.json:
        passwords = credentials.sip_passwords(cfg)
        print(json.dumps([{"number": e.number, "name": e.name, "password": passwords[e.number]}
                          for e in cfg.extensions], indent=1))
    else:
        from .supervisor import print_extensions
        print_extensions(cfg)
    return 0


def _passphrase(args: argparse.Namespace, twice: bool) -> str:
    """From --passphrase-file, else EDGEPBX_BACKUP_PASSPHRASE, else asked at the terminal."""
    if args.passphrase_file:
        return Path(args.passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
    if os.environ.get("EDGEPBX_BACKUP_PASSPHRASE"):
        return os.environ["EDGEPBX_BACKUP_PASSPHRASE"]
    import getpass

    first = getpass.getpass("backup passphrase: ")
    if twice and getpass.getpass("the same again: ") != first:
        raise SystemExit("edgepbx: the two passphrases differ; nothing was written")
    return first


def cmd_capture(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .capture import CaptureFailed, capture

    cfg = _load(args.config)
    try:
        captured = capture(cfg, args.seconds, Path(args.output))
    except (CaptureFailed, OSError) as exc:
        print(f"edgepbx: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(captured)))
    else:
        print(f"{args.output}: {captured.packets} packets of SIP and RTP, {captured.size // 1024 + 1} KB in "
              f"{captured.seconds} s (stopped by {captured.stopped_by}); open it with Wireshark")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import BackupRefused, collect, seal

    cfg = _load(args.config)
    credentials.sip_passwords(cfg)  # the passwords the phones use exist before they are saved
    contents = collect(cfg)
    out = Path(args.output)
    try:
        blob = seal(contents, _passphrase(args, twice=True))
        write_private(out, blob)
    except (BackupRefused, OSError) as exc:
        print(f"edgepbx: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {cfg.site_name}: the config, {len(cfg.extensions)} extensions' passwords, "
          f"{len(contents.data)} box files, {len(contents.files)} files the config names; {len(blob) // 1024 + 1} KB, "
          "encrypted with the passphrase")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .backup import MAX_BACKUP_BYTES, BackupRefused, restore, unseal

    source = Path(args.backup)
    try:
        if source.stat().st_size > MAX_BACKUP_BYTES:
            raise BackupRefused(f"{source} is larger than any backup ({MAX_BACKUP_BYTES >> 20} MB)")
        contents = unseal(source.read_bytes(), _passphrase(args, twice=False))
        cfg = restore(contents, Path(args.config))
    except (BackupRefused, OSError) as exc:
        print(f"edgepbx: {source}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: restored {contents.site or cfg.site_name} from the backup of {contents.created_at}: "
          f"{len(cfg.extensions)} extensions, {len(contents.data)} box files, {len(contents.files)} files the config "
          f"names; the old config is {args.config}.previous. Enrol with a replacement code to reach the portal.")
    return 0


def cmd_cdr_list(args: argparse.Namespace) -> int:
    from .cdr import CdrStore

    cfg = _load(args.config)
    path = cfg.data_dir / "cdr.sqlite"
    records = CdrStore(path).list(limit=args.limit, include_live=args.include_live) if path.exists() else []
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"{'started':<26} {'dir':<9} {'from':<8} {'to':<14} {'result':<10} {'dur':>5} {'bill':>5}  recording")
    for r in records:
        print(f"{r['started_at']:<26} {r['direction']:<9} {r['src']:<8} {r['dst']:<14} {r['disposition'] or 'live':<10} "
              f"{r['duration'] if r['duration'] is not None else '':>5} {r['billsec'] if r['billsec'] is not None else '':>5}  "
              f"{r['recording'] or '-'}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from .console import run

    import serial

    cfg = _load(args.config)
    network_file = Path(args.network_file) if args.network_file else cfg.data_dir / "network" / "20-lan.network"
    try:
        run(cfg, args.device, network_file, shlex.split(args.reboot_command), shlex.split(args.restart_command))
    except serial.SerialException as exc:
        print(f"edgepbx: cannot use the serial line {args.device}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from .update import selftest

    cfg = _load(args.config)
    problems = selftest(cfg)
    for problem in problems:
        print(f"selftest: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"selftest: SIP answers on {cfg.network.bind}:{cfg.network.sip_port}, call records open")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    import subprocess

    from .update import UpdateRefused, update

    cfg = _load(args.config)
    try:
        update(cfg, args.bundle, force=args.force)
    except UpdateRefused as exc:
        print(f"edgepbx update: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the download failed, or the file could not be read
        print(f"edgepbx update: {args.bundle}: {exc}", file=sys.stderr)
        return 1
    print("edgepbx update: installed into the other slot; it is tried on the next boot and kept only if "
          "edgepbx passes its self-test there")
    if args.no_reboot:
        return 0
    print("edgepbx update: rebooting", flush=True)
    return subprocess.run(["systemctl", "reboot"]).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepbx", description="Office phone system appliance")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", required=True, help="office config file (YAML)")
        return p

    run = with_config(sub.add_parser("run", help="start every enabled service (Ctrl-C stops)"))
    run.add_argument("--log-dir", help="where each service's whole output goes (default DATA_DIR/log); "
                                       "the terminal gets warnings, errors and the ready lines")
    run.set_defaults(func=cmd_run)
    with_config(sub.add_parser("check", help="validate a config; errors as FILE:LINE: message")).set_defaults(func=cmd_check)
    with_config(sub.add_parser("featureserver", help="run the feature server alone (used by `run`)")
                ).set_defaults(func=cmd_featureserver)
    with_config(sub.add_parser("provision", help="run the provisioning servers alone (used by `run`)")
                ).set_defaults(func=cmd_provision)
    dev = with_config(sub.add_parser("devices", help="known and discovered phones, last config fetch, registration"))
    dev.add_argument("--json", action="store_true")
    dev.set_defaults(func=cmd_devices)
    ext = with_config(sub.add_parser("extensions", help="list extensions with their SIP passwords"))
    ext.add_argument("--json", action="store_true")
    ext.set_defaults(func=cmd_extensions)
    with_config(sub.add_parser("trunks", help="keep the trunks registered (used by `run`)")).set_defaults(func=cmd_trunks)
    capture = with_config(sub.add_parser("capture", help="N seconds of the box's SIP and RTP into a pcap file "
                                                           "(Wireshark opens it)"))
    capture.add_argument("--seconds", type=float, default=30, help="how long (1 to 120; default 30)")
    capture.add_argument("--output", required=True, help="the pcap file to write")
    capture.add_argument("--json", action="store_true", help="say packets, size, seconds and why it stopped as JSON")
    capture.set_defaults(func=cmd_capture)
    backup = with_config(sub.add_parser("backup", help="what makes this box itself, in one file encrypted with a "
                                                       "passphrase (for a replacement box, offline)"))
    backup.add_argument("--output", required=True, help="the backup file to write")
    backup.add_argument("--passphrase-file", help="read the passphrase from this file (else EDGEPBX_BACKUP_PASSPHRASE, "
                                                  "else it is asked)")
    backup.set_defaults(func=cmd_backup)
    restore = with_config(sub.add_parser("restore", help="put a backup onto this box (its config file is replaced; "
                                                         "stop edgepbx first)"))
    restore.add_argument("backup", help="the file `edgepbx backup` wrote")
    restore.add_argument("--passphrase-file", help="read the passphrase from this file")
    restore.set_defaults(func=cmd_restore)
    enroll = with_config(sub.add_parser("enroll", help="link the box to a cloud portal with a one-time code"))
    enroll.add_argument("portal_url", help="e.g. https://portal.example.com")
    enroll.add_argument("code", help="the site's enrolment code from the portal")
    enroll.add_argument("--restore", action="store_true",
                        help="put the site's newest backup on this box even though its config has extensions "
                             "(a first-boot config is restored without it)")
    enroll.set_defaults(func=cmd_enroll)
    with_config(sub.add_parser("cloud", help="sync to the cloud portal (used by `run`)")).set_defaults(func=cmd_cloud)
    console = with_config(sub.add_parser("console", help="the installer's menu on a serial line (115200 8N1)"))
    console.add_argument("--device", required=True, help="e.g. /dev/ttyS0 or /dev/ttyUSB0")
    console.add_argument("--network-file", help="systemd-networkd file the network choice writes "
                                                "(default DATA_DIR/network/20-lan.network)")
    console.add_argument("--reboot-command", default="systemctl reboot")
    console.add_argument("--restart-command", default="systemctl restart edgepbx.service",
                         help="what starts the phone system again after a restore from the portal")
    console.set_defaults(func=cmd_console)
    status = with_config(sub.add_parser("status", help="trunk registration state and the cloud link"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    dialplan = sub.add_parser("dialplan", help="the office dial plan").add_subparsers(dest="dialplan_command",
                                                                                      required=True)
    dp_test = with_config(dialplan.add_parser("test", help="how a dialled number is classified, rewritten, routed"))
    dp_test.add_argument("number")
    dp_test.add_argument("--from", dest="caller", help="the calling extension (applies its permissions)")
    dp_test.add_argument("--json", action="store_true")
    dp_test.set_defaults(func=cmd_dialplan_test)
    cdr = sub.add_parser("cdr", help="call records").add_subparsers(dest="cdr_command", required=True)
    cdr_list = with_config(cdr.add_parser("list", help="call records, newest first"))
    cdr_list.add_argument("--json", action="store_true")
    cdr_list.add_argument("--limit", type=int, default=100)
    cdr_list.add_argument("--include-live", action="store_true", help="also calls still in progress")
    cdr_list.set_defaults(func=cmd_cdr_list)
    with_config(sub.add_parser("selftest", help="does SIP answer and the CDR database open (confirms an update)")
                ).set_defaults(func=cmd_selftest)
    back = with_config(sub.add_parser("call-back", help="ring an extension, then dial a number for it "
                                                       "(the portal's call-back button)"))
    back.add_argument("extension")
    back.add_argument("number")
    back.set_defaults(func=cmd_call_back)
    upd = with_config(sub.add_parser("update", help="install a signed update bundle (image/) and reboot into it"))
    upd.add_argument("bundle", help="a .raucb file or an http(s) URL")
    upd.add_argument("--force", action="store_true", help="even while calls are up (they drop)")
    upd.add_argument("--no-reboot", action="store_true", help="install only; the new slot boots next time")
    upd.set_defaults(func=cmd_update)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
