"""The `edgepbx-portal` command line: run the portal, add sites and users, revoke sites, list calls and sites."""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from .db import open_database, remember_url
from .fleet import FleetError


def _sessions(args: argparse.Namespace):
    return open_database(Path(args.data_dir), args.database_url)


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from .alarms import AlarmWatch
    from .app import create_app
    from .notify import Notifier
    from .storage import open_storage

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # each box holds a socket (GET /api/v1/wait): 1,024 is too few
    data_dir = Path(args.data_dir)
    sessions = _sessions(args)
    remember_url(data_dir, args.database_url)
    app = create_app(sessions, open_storage(args.storage, data_dir))
    app.state.release_keyring = Path(args.release_keyring) if args.release_keyring else None
    watch = AlarmWatch(sessions, Notifier(mail_server(args)), args.alarm_interval)
    watch.start()

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:  # noqa: ANN001
            await super().startup(sockets)
            if self.started:
                logging.getLogger("edgepbx.portal").info("portal ready on http://%s:%d", args.bind, args.port)

    # The client's address (the sign-in rate limit counts per address) and scheme (Secure cookies)
    # come from X-Forwarded-For / -Proto only when a trusted proxy sent them; anyone else's are ignored.
    trusted = ",".join(args.trusted_proxy or [])
    config = uvicorn.Config(app, host=args.bind, port=args.port, log_level="warning", access_log=False,
                            timeout_keep_alive=30, proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None)
    Server(config).run()
    return 0


def mail_server(args: argparse.Namespace):
    """The SMTP server alarms go through (`--smtp HOST:PORT`); its password from the environment
    (EDGEPBX_SMTP_PASSWORD), never the command line, which every user of the machine can read."""
    import os

    from .notify import MailServer

    if not args.smtp:
        return None
    host, _, port = args.smtp.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--smtp must be HOST:PORT, not {args.smtp!r}")
    return MailServer(host, int(port), starttls=args.smtp_tls == "starttls", user=args.smtp_user,
                      password=os.environ.get("EDGEPBX_SMTP_PASSWORD"), sender=args.mail_from,
                      ca_file=Path(args.smtp_ca_file) if args.smtp_ca_file else None)


def is_mail_address(text: str) -> bool:
    """An addr-spec a mail server will take (RFC 5322, by the standard library's parser), with a
    dotted domain: a typo is refused when the contact is added, not at the first alarm."""
    from email.errors import HeaderParseError
    from email.headerregistry import Address

    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return bool(address.username) and "." in address.domain.strip(".") and address.addr_spec == text.strip()


def cmd_contact_add(args: argparse.Namespace) -> int:
    import secrets

    from .models import AlarmContact, Organisation

    if bool(args.email) == bool(args.webhook):
        raise ValueError("give --email ADDRESS or --webhook URL")
    if args.webhook and not args.webhook.startswith(("https://", "http://")):
        raise ValueError("--webhook must be an http(s) URL")
    if args.digest and args.webhook:
        raise ValueError("a digest goes by e-mail")
    if args.email and not is_mail_address(args.email):
        raise ValueError(f"--email {args.email!r} is not an e-mail address (name@domain.example)")
    secret = (args.secret or secrets.token_urlsafe(32)) if args.webhook else None
    with _sessions(args)() as session:
        org_id = None
        if args.org:
            org = session.query(Organisation).filter_by(name=args.org).one_or_none()
            if org is None:
                raise FleetError(404, f"no organisation {args.org}")
            org_id = org.id
        contact = AlarmContact(org_id=org_id, kind="webhook" if args.webhook else "email",
                               target=args.webhook or args.email, severity=args.severity, secret=secret,
                               digest=args.digest, language=args.language)
        session.add(contact)
        session.commit()
        whose = f"organisation {args.org}" if args.org else "the operators (every site)"
        print(f"contact {contact.id}: {contact.kind} {contact.target} for {whose}, {args.severity} and worse"
              + (", a daily digest" if args.digest else ""))
        if secret:
            print(f"webhook secret (X-Edgepbx-Signature, HMAC-SHA256 of TIMESTAMP.BODY): {secret}")
    return 0


def cmd_contact_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .models import AlarmContact, Organisation

    with _sessions(args)() as session:
        rows = session.execute(select(AlarmContact, Organisation.name).outerjoin(
            Organisation, Organisation.id == AlarmContact.org_id).order_by(AlarmContact.id)).all()
        listed = [{"id": c.id, "organisation": org, "kind": c.kind, "target": c.target, "severity": c.severity,
                   "digest": c.digest, "language": c.language} for c, org in rows]
    print(json.dumps(listed, indent=1, ensure_ascii=False) if args.json else
          "\n".join(f"{c['id']:>4} {c['kind']:<8} {c['target']:<40} {c['organisation'] or '(operators)':<20} "
                    f"{c['severity']}{' digest' if c['digest'] else ''}" for c in listed))
    return 0


def cmd_contact_remove(args: argparse.Namespace) -> int:
    from .models import AlarmContact

    with _sessions(args)() as session:
        contact = session.get(AlarmContact, args.id)
        if contact is None:
            raise FleetError(404, f"no contact {args.id}")
        session.delete(contact)
        session.commit()
    print(f"contact {args.id} removed")
    return 0


def cmd_alarms(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .models import Alarm, Site
    from .i18n import WORDS

    with _sessions(args)() as session:
        query = select(Alarm, Site.name).join(Site, Site.id == Alarm.site_id).order_by(Alarm.started_at.desc())
        if args.site:
            query = query.where(Site.name == args.site)
        if args.open:
            query = query.where(Alarm.ended_at.is_(None))
        rows = [{"id": a.id, "site": site, "key": a.key, "subject": a.subject, "severity": a.severity,
                 "text": WORDS["en"]["alarm_" + a.key].format(**json.loads(a.detail)),
                 "started_at": a.started_at.isoformat(), "ended_at": a.ended_at.isoformat() if a.ended_at else None,
                 "told": a.told_end if a.ended_at else a.told_start} for a, site in session.execute(query.limit(500))]
    print(json.dumps(rows, indent=1, ensure_ascii=False) if args.json else
          "\n".join(f"{r['started_at'][:19]} {r['ended_at'][:19] if r['ended_at'] else 'open':<19} {r['severity']:<8} "
                    f"{r['site']}: {r['text']}" for r in rows))
    return 0


def cmd_add_site(args: argparse.Namespace) -> int:
    from .fleet import add_site

    with _sessions(args)() as session:
        code = add_site(session, args.org, args.site)
    print(f"site {args.site} of {args.org}: enrolment code (one use, 7 days); on the box run\n"
          f"  edgepbx enroll --config FILE PORTAL_URL CODE")
    print(code)
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    from .users import add_user

    with _sessions(args)() as session:
        add_user(session, args.org, args.user, args.password, args.role, args.extension)
    where = f"organisation {args.org}" if args.org else "the provider (all sites)"
    print(f"user {args.user}: {args.role} of {where}; signs in at /login")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from .fleet import revoke

    with _sessions(args)() as session:
        count = revoke(session, args.site)
    print(f"site {args.site}: {count} credential(s) revoked; the box must enrol again")
    return 0


def cmd_push_config(args: argparse.Namespace) -> int:
    from .configs import push_config

    text = Path(args.file).read_text(encoding="utf-8")
    with _sessions(args)() as session:
        version = push_config(session, args.site, text, check=not args.no_check)
    print(f"site {args.site}: config version {version} queued; the box pulls it at its next heartbeat")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from .configs import config_rows

    with _sessions(args)() as session:
        rows = config_rows(session, args.site)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from .configs import change_words
    from .i18n import WORDS

    for r in rows:
        said = change_words(r["change"], WORDS["en"])
        print(f"v{r['version']:<4} {r['created_at'][:19]}  {r['state']:<9} {r['sha256'][:12]}  "
              f"{r['author'] or '-'}: {said}")
        for error in r["errors"]:
            print(f"       {error}")
    return 0


def cmd_phones(args: argparse.Namespace) -> int:
    from .phones import site_phones

    with _sessions(args)() as session:
        rows = site_phones(session, args.site)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'mac':<13} {'vendor':<12} {'model':<8} {'ext':<6} {'registered':<10} {'last fetch':<20} last action")
    for r in rows:
        action = r["last_action"]
        print(f"{r['mac']:<13} {r['vendor'] or '?':<12} {r['model'] or '?':<8} {r['extension'] or '-':<6} "
              f"{'yes' if r['registered'] else 'no':<10} {(r['last_fetch_at'] or '-')[:19]:<20} "
              + (f"{action['action']} {action['state']}: {action['result'] or ''}" if action else "-"))
    return 0


def cmd_phone_action(args: argparse.Namespace) -> int:
    from .phones import request_action

    with _sessions(args)() as session:
        request_action(session, args.site, args.mac, args.action)
    print(f"site {args.site}: {args.action} of phone {args.mac} queued; the box sends it at its next heartbeat")
    return 0


def cmd_firmware(args: argparse.Namespace) -> int:
    """`firmware add|pin|unpin|list`: phone firmware files and the versions the phones run."""
    from . import firmware
    from .storage import open_storage

    needed = {"add": ("file", "vendor", "model", "version"), "pin": ("vendor", "model", "version"),
              "unpin": ("vendor", "model")}.get(args.action, ())
    missing = [("--" + n if n != "file" else "FILE") for n in needed if not getattr(args, n)]
    if missing:
        raise ValueError(f"firmware {args.action} needs {', '.join(missing)}")
    with _sessions(args)() as session:
        if args.action == "add":
            row = firmware.add(session, open_storage(args.storage, Path(args.data_dir)), args.vendor, args.model,
                               args.version, Path(args.file), by=args.by)
            print(f"{row.vendor} {row.model} {row.version}: {row.filename}, {row.size} bytes, sha256 {row.sha256}")
        elif args.action == "pin":
            firmware.pin(session, args.vendor, args.model, args.version, args.site, by=args.by)
            print(f"{args.vendor} {args.model} phones {'of ' + args.site if args.site else 'of every site'} run "
                  f"{args.version}; each box fetches it at its next heartbeat")
        elif args.action == "unpin":
            gone = firmware.unpin(session, args.vendor, args.model, args.site)
            print(f"{gone} pin(s) removed")
        else:
            rows = firmware.listing(session)
            if args.json:
                print(json.dumps(rows, indent=1))
            for r in rows if not args.json else []:
                print(f"{r['vendor']:<12} {r['model']:<14} {r['version']:<16} {r['size']:>11}  "
                      f"{', '.join(r['pinned']) or '-'}")
    return 0


def release_keyring(given: str | None) -> Path:
    """The provider's bundle-signing certificate (or CA) that releases must be signed with."""
    named = given or os.environ.get("EDGEPBX_RELEASE_KEYRING")
    if not named:
        raise ValueError("--keyring FILE (or EDGEPBX_RELEASE_KEYRING): the certificate the bundles are signed with")
    return Path(named)


def cmd_release(args: argparse.Namespace) -> int:
    """`release add FILE.raucb | list`: box software bundles, checked with RAUC before they are kept."""
    from . import rollouts
    from .storage import open_storage

    with _sessions(args)() as session:
        if args.action == "add":
            if not args.file:
                raise ValueError("release add needs the bundle FILE.raucb")
            row = rollouts.add_release(session, open_storage(args.storage, Path(args.data_dir)), Path(args.file),
                                       release_keyring(args.keyring), by=args.by)
            print(f"{row.compatible}, {row.size} bytes, sha256 {row.sha256}, signed by {row.signer or '?'}")
            print(row.version)
            return 0
        rows = rollouts.releases(session)
    if args.json:
        print(json.dumps(rows, indent=1))
    for r in rows if not args.json else []:
        print(f"{r['version']:<40} {r['compatible']:<16} {r['size']:>11}  {r['uploaded_at'][:19]}  {r['uploaded_by']}")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    """`rollout start|status|pause|resume|abort`: box software to sites in waves that stop themselves."""
    from . import rollouts

    with _sessions(args)() as session:
        if args.action == "start":
            if not args.release or not (args.sites or args.all):
                raise ValueError("rollout start needs --release VERSION and --sites A,B or --all")
            names = None if args.all else [n.strip() for n in args.sites.split(",") if n.strip()]
            rollout = rollouts.start(session, args.release, names, args.by, canary=args.canary,
                                     wave_percent=args.wave_percent, window=args.window,
                                     deadline_seconds=args.deadline_minutes * 60)
            shown = rollouts.status(session, rollout.id, with_sites=False)[0]
            print(f"rollout {rollout.id}: {args.release} to {shown['sites_total']} site(s) in {shown['waves']} wave(s) "
                  f"({shown['canary']} canary), {'window ' + args.window if args.window else 'any time'}")
            return 0
        if args.action != "status":
            rollout = rollouts.control(session, args.rollout, args.action)
            print(f"rollout {rollout.id}: {rollout.state}")
            return 0
        rows = rollouts.status(session, args.rollout, with_sites=args.rollout is not None or args.json)
    if args.json:
        print(json.dumps(rows if args.rollout is None else rows[0], indent=1))
        return 0
    for r in rows:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(r["counts"].items()))
        print(f"rollout {r['id']}: {r['version']} {r['state']}{' (' + r['reason'] + ')' if r['reason'] else ''}; "
              f"wave {r['wave'] if r['wave'] is not None else '-'} of {r['waves']}; {counts}")
        for site in r.get("sites", []):
            print(f"  wave {site['wave']:<3} {site['site']:<24} {site['state']:<12} {site['detail']}")
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    from .fleet import site_by_name
    from .sync import site_calls

    with _sessions(args)() as session:
        calls = site_calls(session, site_by_name(session, args.site))
    if args.json:
        print(json.dumps(calls, indent=1))
        return 0
    for c in calls:
        print(f"{c['started_at']:<30} {c['direction']:<9} {c['src']:<8} {c['dst']:<14} {c['disposition'] or 'live':<10} "
              f"{c['billsec'] if c['billsec'] is not None else '':>5}  {(c['recording_sha256'] or '-')[:12]}")
    return 0


def cmd_sites(args: argparse.Namespace) -> int:
    from .fleet import site_rows

    with _sessions(args)() as session:
        rows = site_rows(session)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'organisation':<20} {'site':<20} {'state':<8} {'last heartbeat':<26} {'outbox':>6}  version")
    for r in rows:
        status = r["status"]
        print(f"{r['org']:<20} {r['site']:<20} {'online' if r['online'] else 'offline':<8} "
              f"{(r['last_heartbeat_at'] or '-')[:25]:<26} {status.get('outbox_depth', '-'):>6}  {status.get('version', '-')}")
    return 0


def i18n_languages() -> tuple[str, ...]:
    from .i18n import LANGUAGES

    return LANGUAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepbx-portal", description="The edgepbx cloud portal")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--data-dir", required=True, help="the portal's directory (SQLite, recordings)")
        p.add_argument("--database-url", help="postgresql://… (default: SQLite in the data dir, or the URL "
                                              "`run` last used there)")
        return p

    run = common(sub.add_parser("run", help="serve the sync API"))
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--bind", default="127.0.0.1")
    run.add_argument("--storage", help="recordings: a directory (default DATA_DIR/objects) or s3://BUCKET[/PREFIX] "
                                       "(endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)")
    run.add_argument("--trusted-proxy", action="append", metavar="ADDRESS",
                     help="a reverse proxy or load balancer (address or CIDR; repeat for more) whose "
                          "X-Forwarded-For and X-Forwarded-Proto are believed; without it they are ignored")
    run.add_argument("--release-keyring", default=os.environ.get("EDGEPBX_RELEASE_KEYRING"),
                     help="the certificate box software bundles must be signed with, for the /rollouts page's "
                          "uploads (default $EDGEPBX_RELEASE_KEYRING)")
    run.add_argument("--smtp", metavar="HOST:PORT", help="the mail server alarms are e-mailed through")
    run.add_argument("--smtp-tls", choices=("starttls", "none"), default="starttls")
    run.add_argument("--smtp-user", help="the SMTP login (its password from EDGEPBX_SMTP_PASSWORD)")
    run.add_argument("--smtp-ca-file", help="a CA bundle the mail server's certificate chains to")
    run.add_argument("--mail-from", default="edgepbx@localhost", help="the alarms' sender address")
    run.add_argument("--alarm-interval", type=float, default=10.0,
                     help="seconds between alarm rounds (open, close, tell); one instance does it at a time")
    run.set_defaults(func=cmd_run)
    cadd = common(sub.add_parser("add-contact", help="tell an e-mail address or a webhook of alarms"))
    cadd.add_argument("--org", help="this organisation's sites (default: the operators, every site)")
    cadd.add_argument("--email")
    cadd.add_argument("--webhook", help="an https URL that gets each alarm's start and end as signed JSON")
    cadd.add_argument("--secret", help="the webhook's HMAC key (default: a random one, printed)")
    cadd.add_argument("--severity", choices=("warning", "critical"), default="warning",
                      help="the least severe alarm it is told of")
    cadd.add_argument("--digest", action="store_true", help="one e-mail a day listing the day's alarms instead")
    cadd.add_argument("--language", choices=i18n_languages(), default="en")
    cadd.set_defaults(func=cmd_contact_add)
    clist = common(sub.add_parser("contacts", help="who is told of alarms"))
    clist.add_argument("--json", action="store_true")
    clist.set_defaults(func=cmd_contact_list)
    crem = common(sub.add_parser("remove-contact", help="stop telling a contact"))
    crem.add_argument("--id", type=int, required=True)
    crem.set_defaults(func=cmd_contact_remove)
    alarms = common(sub.add_parser("alarms", help="alarms, newest first: what, where, when it began and ended"))
    alarms.add_argument("--site")
    alarms.add_argument("--open", action="store_true", help="only those still going on")
    alarms.add_argument("--json", action="store_true")
    alarms.set_defaults(func=cmd_alarms)
    add = common(sub.add_parser("add-site", help="create a site (and its organisation); prints its enrolment code"))
    add.add_argument("--org", required=True)
    add.add_argument("--site", required=True)
    add.set_defaults(func=cmd_add_site)
    user = common(sub.add_parser("add-user", help="create a person's sign-in for the web pages (or reset it)"))
    user.add_argument("--org", help="the organisation whose calls they see (not for operators)")
    user.add_argument("--user", required=True)
    user.add_argument("--password", required=True, help="at least 10 characters; only its argon2 hash is kept")
    user.add_argument("--role", required=True, choices=("admin", "viewer", "operator"))
    user.add_argument("--extension", help="the user's own extension: the call-back button rings it")
    user.set_defaults(func=cmd_add_user)
    rev = common(sub.add_parser("revoke-site", help="revoke a site's credentials"))
    rev.add_argument("--site", required=True)
    rev.set_defaults(func=cmd_revoke)
    push = common(sub.add_parser("push-config", help="queue a new office config for a site's box"))
    push.add_argument("--site", required=True)
    push.add_argument("--file", required=True, help="the office config (YAML), as `edgepbx check` takes it")
    push.add_argument("--no-check", action="store_true", help="skip the portal's validation (the box still validates)")
    push.set_defaults(func=cmd_push_config)
    cfgs = common(sub.add_parser("configs", help="a site's config versions and what its box said (never their text)"))
    cfgs.add_argument("--site", required=True)
    cfgs.add_argument("--json", action="store_true")
    cfgs.set_defaults(func=cmd_configs)
    phones = common(sub.add_parser("phones", help="a site's phones as its box last reported them"))
    phones.add_argument("--site", required=True)
    phones.add_argument("--json", action="store_true")
    phones.set_defaults(func=cmd_phones)
    act = common(sub.add_parser("phone-action", help="make a site's phone re-fetch its config or reboot"))
    act.add_argument("--site", required=True)
    act.add_argument("--mac", required=True)
    act.add_argument("--action", required=True, choices=("resync", "reboot"))
    act.set_defaults(func=cmd_phone_action)
    calls = common(sub.add_parser("calls", help="a site's calls, oldest first"))
    calls.add_argument("--site", required=True)
    calls.add_argument("--json", action="store_true")
    calls.set_defaults(func=cmd_calls)
    fw = common(sub.add_parser("firmware", help="phone firmware: add a file, pin a version (fleet or site), list"))
    fw.add_argument("action", choices=("add", "pin", "unpin", "list"))
    fw.add_argument("file", nargs="?", help="add: the firmware file as the vendor ships it")
    fw.add_argument("--vendor")
    fw.add_argument("--model")
    fw.add_argument("--version")
    fw.add_argument("--site", help="pin/unpin: this site only (default: every site without a pin of its own)")
    fw.add_argument("--storage", help="add: the store `run` uses (default DATA_DIR/objects, or s3://...)")
    fw.add_argument("--by", default="operator", help="who did it (kept beside the file or pin)")
    fw.add_argument("--json", action="store_true")
    fw.set_defaults(func=cmd_firmware)
    rel = common(sub.add_parser("release", help="box software: add a signed RAUC bundle, list them"))
    rel.add_argument("action", choices=("add", "list"))
    rel.add_argument("file", nargs="?", help="add: the bundle (make bundle's FILE.raucb)")
    rel.add_argument("--keyring", help="add: the certificate bundles must be signed with (default $EDGEPBX_RELEASE_KEYRING)")
    rel.add_argument("--storage", help="add: the store `run` uses (default DATA_DIR/objects, or s3://...)")
    rel.add_argument("--by", default="operator", help="who added it")
    rel.add_argument("--json", action="store_true")
    rel.set_defaults(func=cmd_release)
    ro = common(sub.add_parser("rollout", help="box software to sites in waves that halt on the first failure"))
    ro.add_argument("action", choices=("start", "status", "pause", "resume", "abort"))
    ro.add_argument("--release", help="start: the release's version")
    ro.add_argument("--sites", help="start: A,B,... (the first --canary of them go first)")
    ro.add_argument("--all", action="store_true", help="start: every site (canaries by name)")
    ro.add_argument("--canary", type=int, default=1, help="start: sites updated before any wave (default 1)")
    ro.add_argument("--wave-percent", type=int, default=25, help="start: each wave's share of the rest (default 25)")
    ro.add_argument("--window", help="start: HH:MM-HH:MM in each site's time zone (default any time)")
    ro.add_argument("--deadline-minutes", type=int, default=30,
                    help="start: a box not back on the release this long after installing halts the rollout")
    ro.add_argument("--rollout", type=int, help="which rollout (default the newest unfinished)")
    ro.add_argument("--by", default="operator", help="who started it")
    ro.add_argument("--json", action="store_true")
    ro.set_defaults(func=cmd_rollout)
    sites = common(sub.add_parser("sites", help="every site: online or not, last heartbeat, outbox"))
    sites.add_argument("--json", action="store_true")
    sites.set_defaults(func=cmd_sites)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FleetError as exc:
        print(f"edgepbx-portal: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"edgepbx-portal: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # the database is unreachable, refuses us, or the URL is wrong
        print(f"edgepbx-portal: database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
