"""The configurator's pages: an office's extensions listed, added, renamed, given a new password
and removed; its features; its incoming calls (greetings and music uploaded, hours, holidays, ring
groups); its dial plan tested; and any earlier version restored. The same pages serve an organisation's admin
(`/settings/...`, their own sites; a viewer reads them) and the provider's operator
(`/fleet/SITE/...`, any site). Every change is a new config version (portal/configurator.py)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.config import KEY_TYPES, PERMISSIONS
from appliance.countryplans import COUNTRIES

from .. import boxwords, config_edit, configurator, dialwords, extension_form, incoming, sounds, trunk_form, users
from ..configs import change_said, change_words, config_rows, restore
from ..deps import PageRefused, db, operator, org_user, signed_form, storage, stored_file, upload_form
from ..fleet import FleetError, site_by_name
from ..models import Site
from ..pages import message, render
from ..storage import Storage

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Place:
    """Whose page this is: the site, where its forms post, and whether the reader may edit."""
    site: Site
    prefix: str  # where its forms post: /settings or /fleet/SITE
    can_edit: bool
    site_field: str | None = None  # a customer's pages name the site in a hidden field

    def page_url(self, page: str) -> str:
        return f"{self.prefix}/{page}" + (f"?site={quote(self.site_field)}" if self.site_field else "")


def customer_place(session: Session, me: users.SignedIn, name: str | None) -> Place:
    """The organisation's site by name (its first when none is named); another's is not found."""
    query = select(Site).where(Site.org_id == me.org_id).order_by(Site.name)
    site = session.scalar(query.where(Site.name == name) if name else query.limit(1))
    if site is None:
        raise PageRefused(404, "page_not_found", me)
    return Place(site, "/settings", me.role == "admin", site.name if name else None)


def operator_place(session: Session, me: users.SignedIn, name: str) -> Place:
    try:
        site = site_by_name(session, name)
    except FleetError:
        raise PageRefused(404, "page_not_found", me) from None
    return Place(site, f"/fleet/{site.name}", True)


PAGES = ("extensions", "features", "incoming", "trunks", "dialplan")


def show(request: Request, session: Session, me: users.SignedIn, place: Place, status: int = 200,
         page: str = "extensions", extension: str | None = None, **said: object) -> Response:
    """A configurator page (`extension`: the page of that one extension) with what was just said."""
    space = configurator.workspace(session, place.site)
    versions = config_rows(session, place.site.name)[:20]
    tested = None
    if page == "dialplan" and (number := request.query_params.get("number", "").strip()):
        tested = configurator.dialplan_test(session, place.site, number, request.query_params.get("from", "").strip())
    named = sounds.named(session, place.site) if page == "incoming" else {}
    chosen = next((e for e in space.extensions if e["number"] == extension), None) if space and extension else None
    models = extension_form.models()
    if extension and space and chosen is None:
        return message(request, 404, me, "page_not_found")
    return render(request, "extension.html" if chosen else f"{page}.html", status, me=me, place=place, space=space,
                  versions=versions, said=said, page=page, change_words=change_words, tested=tested,
                  dial_shape=dialwords.shape, box_words=boxwords.said, sounds=named, with_dids=incoming.with_dids, extension=chosen, models=models,
                  model_keys={f"{vendor}:{model}": keys for vendor, model, keys in models},
                  key_types=KEY_TYPES, permissions=PERMISSIONS, countries=COUNTRIES,
                  trunks_editable=trunks_editable(place), operator_page=place.prefix.startswith("/fleet/"))


def trunks_editable(place: Place) -> bool:
    """Trunks are the provider's: its operators edit them, an office's admins only where it allows."""
    return place.can_edit and (place.prefix.startswith("/fleet/") or place.site.office_edits_trunks)


@router.get("/settings/{page}")
def customer_page(page: str, request: Request, site: str | None = None, me: users.SignedIn = Depends(org_user),
                  session: Session = Depends(db)) -> Response:
    if page not in PAGES:
        return message(request, 404, me, "page_not_found")
    return show(request, session, me, customer_place(session, me, site), page=page)


@router.get("/settings/extensions/{number}")
def customer_extension(number: str, request: Request, site: str | None = None, me: users.SignedIn = Depends(org_user),
                       session: Session = Depends(db)) -> Response:
    return show(request, session, me, customer_place(session, me, site), extension=number)


@router.get("/fleet/{name}/extensions/{number}")
def operator_extension(name: str, number: str, request: Request, me: users.SignedIn = Depends(operator),
                       session: Session = Depends(db)) -> Response:
    return show(request, session, me, operator_place(session, me, name), extension=number)


@router.get("/fleet/{name}/{page}")
def operator_page(name: str, page: str, request: Request, me: users.SignedIn = Depends(operator),
                  session: Session = Depends(db)) -> Response:
    if page not in PAGES:
        return message(request, 404, me, "page_not_found")
    return show(request, session, me, operator_place(session, me, name), page=page)


def org_admin(me: users.SignedIn = Depends(org_user)) -> users.SignedIn:
    """An organisation's admin; a viewer's post is refused before its body is read."""
    if me.role != "admin":
        raise PageRefused(403, "viewer_cannot_edit", me)
    return me


admin_form = signed_form(org_admin)  # a customer's posted change


def change(request: Request, session: Session, me: users.SignedIn, place: Place, fields: dict[str, str],
           action: str, number: str | None) -> Response:
    """One form's change saved as a version; the page again, saying what happened."""
    page = fields["page"] if fields.get("page") in PAGES else "features" if action == "features" else "extensions"
    show_page = partial(show, request, session, me, place, page=page)
    try:
        base = int(fields.get("base", ""))
    except ValueError:
        return show_page(400, error_key="form_incomplete")
    password = None
    if action == "add":
        number, password = fields.get("number", "").strip(), config_edit.new_password()
        edit = partial(config_edit.add_extension, number=number, name=fields.get("name", ""), password=password)
        summary = change_said("add", number=number, name=" ".join(fields.get("name", "").split())[:64])
    elif action == "rename":
        edit = partial(config_edit.rename_extension, number=number, name=fields.get("name", ""))
        summary = change_said("rename", number=number, name=" ".join(fields.get("name", "").split())[:64])
    elif action == "password":
        password = config_edit.new_password()
        edit = partial(config_edit.set_password, number=number, password=password)
        summary = change_said("password", number=number)
    elif action == "remove":
        edit = partial(config_edit.remove_extension, number=number)
        summary = change_said("remove", number=number)
    elif action == "features":
        try:
            edit, summary = features_edit(fields)
        except config_edit.EditRefused as exc:
            return show_page(422, error_key=exc.key, field=exc.field, form=fields, action=action)
    elif action == "details":
        show_page = partial(show_page, extension=number)
        try:
            edit, summary = extension_form.edit_from_form(fields, number or "")
        except config_edit.EditRefused as exc:
            return show_page(422, error_key=exc.key, field=exc.field, form=fields, action=action)
    else:  # restore
        try:
            version = restore(session, place.site.name, int(number or 0), me.username, base=base)
        except (ValueError, FleetError) as exc:
            session.rollback()
            return refused(show_page, session, place, exc, fields, base)
        return show_page(saved=version)
    return save_change(request, show_page, session, me, place, fields, base, edit, summary, action, number=number,
                       password=password)


def save_change(request: Request, show_page: Callable[..., Response], session: Session, me: users.SignedIn,
                place: Place, fields: dict[str, str], base: int, edit: Callable[[str], str], summary: str,
                action: str, **shown: object) -> Response:
    """An edit saved as the next version, and the page saying so; or why not, beside the form. A
    form sent with `preview` is not saved: the page shows the change as a diff to review, with a
    button that sends the same form again to save it."""
    try:
        if fields.get("preview") == "1":
            diff = configurator.preview(session, place.site.name, base, edit)
            return show_page(preview=diff, form=fields, action=action, posted_to=request.url.path, **shown)
        version = configurator.save(session, place.site.name, base, edit, me.username, summary)
    except config_edit.EditRefused as exc:
        return show_page(422, error_key=exc.key, field=exc.field, form=fields, action=action)
    except FleetError as exc:
        session.rollback()
        return refused(show_page, session, place, exc, fields, base, action)
    return show_page(saved=version, **shown)


def features_edit(fields: dict[str, str]) -> tuple[Callable[[str], str], str]:
    """The features form as an edit: pickup on or off and its codes, the transfer key, recording
    and how long the box keeps recordings (the box's checks judge the codes)."""
    try:
        keep_days = int(fields.get("keep_days", "").strip())
    except ValueError:
        raise config_edit.EditRefused("keep_days_shape", "keep_days") from None
    pickup, recording = fields.get("pickup") == "on", fields.get("recording") == "on"
    codes = {key: fields.get(key, "").strip() for key in ("pickup_code", "directed_pickup_prefix", "transfer_key")}

    def edit(text: str) -> str:
        text = config_edit.set_section(text, "features", {"pickup": pickup} | codes)
        return config_edit.set_section(text, "recording", {"enabled": recording, "keep_days": keep_days})
    return edit, change_said("features", pickup=pickup, recording=recording, keep_days=keep_days)


def refused(show_page: Callable[..., Response], session: Session, place: Place, exc: Exception,
            fields: dict[str, str], base: int, action: str = "") -> Response:
    """A save that did not happen: the box's checks failed (their messages), or someone else saved
    first (who and what; the page now shows their version)."""
    if isinstance(exc, FleetError) and exc.status == 409:
        between = configurator.saved_between(session, place.site, base)
        return show_page(409, conflict=between, form=fields, action=action)
    if isinstance(exc, FleetError) and exc.status == 422:
        return show_page(422, box_errors=exc.message.split("\n")[1:] or [exc.message], form=fields, action=action)
    return show_page(404 if isinstance(exc, FleetError) and exc.status == 404 else 400, error_key="form_incomplete")


ACTIONS = ("rename", "password", "remove", "details")


@router.post("/settings/features")
def customer_features(request: Request, posted=Depends(admin_form), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    fields, me = posted
    return change(request, session, me, customer_place(session, me, fields.get("site")), fields, "features", None)


@router.post("/fleet/{name}/features")
def operator_features(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                      session: Session = Depends(db)) -> Response:
    fields, me = posted
    return change(request, session, me, operator_place(session, me, name), fields, "features", None)


@router.post("/settings/extensions")
def customer_add(request: Request, site: str | None = None, posted=Depends(admin_form),  # noqa: ANN001
                 session: Session = Depends(db)) -> Response:
    fields, me = posted
    return change(request, session, me, customer_place(session, me, fields.get("site") or site), fields, "add", None)


@router.post("/settings/extensions/{number}/{action}")
def customer_change(number: str, action: str, request: Request, posted=Depends(admin_form),  # noqa: ANN001
                    session: Session = Depends(db)) -> Response:
    fields, me = posted
    if action not in ACTIONS:
        return message(request, 404, me, "page_not_found")
    return change(request, session, me, customer_place(session, me, fields.get("site")), fields, action, number)


@router.post("/settings/versions/{version}/restore")
def customer_restore(version: str, request: Request, posted=Depends(admin_form),  # noqa: ANN001
                     session: Session = Depends(db)) -> Response:
    fields, me = posted
    return change(request, session, me, customer_place(session, me, fields.get("site")), fields, "restore", version)


@router.post("/fleet/{name}/extensions")
def operator_add(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                 session: Session = Depends(db)) -> Response:
    fields, me = posted
    return change(request, session, me, operator_place(session, me, name), fields, "add", None)


@router.post("/fleet/{name}/extensions/{number}/{action}")
def operator_change(name: str, number: str, action: str, request: Request,
                    posted=Depends(signed_form(operator)), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    fields, me = posted
    if action not in ACTIONS:
        return message(request, 404, me, "page_not_found")
    return change(request, session, me, operator_place(session, me, name), fields, action, number)


@router.post("/fleet/{name}/versions/{version}/restore")
def operator_restore(name: str, version: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                     session: Session = Depends(db)) -> Response:
    fields, me = posted
    return change(request, session, me, operator_place(session, me, name), fields, "restore", version)


# --- incoming calls: the scenario form, greetings and music ---------------------------------------

def incoming_change(request: Request, session: Session, me: users.SignedIn, place: Place,
                    fields: dict[str, str]) -> Response:
    show_page = partial(show, request, session, me, place, page="incoming")
    space = configurator.workspace(session, place.site)
    try:
        base = int(fields.get("base", ""))
        dids = tuple(incoming.with_dids(space.incoming, [d for t in space.trunks for d in t["dids"]])) if space else ()
        edit, summary = incoming.edit_from_form(fields, [e["number"] for e in space.extensions] if space else [], dids)
    except ValueError:
        return show_page(400, error_key="form_incomplete")
    except config_edit.EditRefused as exc:
        return show_page(422, error_key=exc.key, field=exc.field, form=fields, action="incoming")
    return save_change(request, show_page, session, me, place, fields, base, edit, summary, "incoming")


def sound_change(request: Request, session: Session, store: Storage, me: users.SignedIn, place: Place,
                 fields: dict[str, str]) -> Response:
    """An uploaded greeting or music converted and named in the config by its hash; or, with
    `reset`, the box's own sound again."""
    show_page = partial(show, request, session, me, place, page="incoming")
    upload: UploadFile | None = getattr(request.state, "upload", None)
    slot = fields.get("slot", "")
    try:
        base = int(fields.get("base", ""))
    except ValueError:
        base = -1
    if slot not in sounds.SLOTS or base < 0:
        return show_page(400, error_key="form_incomplete")
    if fields.get("reset") == "1":
        value, summary = None, change_said("sound_reset", slot=slot)
    elif upload is None or not upload.filename:
        return show_page(422, error_key="sound_choose", field=slot)
    else:
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "upload"
                with open(path, "wb") as out:
                    shutil.copyfileobj(upload.file, out, 1 << 20)
                sound = sounds.add(session, store, place.site, path, upload.filename, me.username)
        except sounds.SoundRefused as exc:
            session.rollback()
            return show_page(422, error_key=exc.key, field=slot, detail=exc.detail)
        finally:
            upload.file.close()
        value = f"sha256:{sound.sha256}"
        summary = change_said("sound", slot=slot, name=sound.filename[:64])
    edit = partial(config_edit.set_section, key=incoming.sound_section(slot), values={slot: value})
    return save_change(request, show_page, session, me, place, fields, base, edit, summary, "sound")


admin_upload = signed_form(org_admin, upload_form)  # a customer's greeting or music


@router.post("/settings/incoming")
def customer_incoming(request: Request, posted=Depends(admin_form), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    fields, me = posted
    return incoming_change(request, session, me, customer_place(session, me, fields.get("site")), fields)


@router.post("/fleet/{name}/incoming")
def operator_incoming(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                      session: Session = Depends(db)) -> Response:
    fields, me = posted
    return incoming_change(request, session, me, operator_place(session, me, name), fields)


@router.post("/settings/incoming/sound", max_body_size=sounds.MAX_UPLOAD_BYTES + (64 << 10))
def customer_sound(request: Request, posted=Depends(admin_upload), session: Session = Depends(db),  # noqa: ANN001
                   store: Storage = Depends(storage)) -> Response:
    fields, me = posted
    return sound_change(request, session, store, me, customer_place(session, me, fields.get("site")), fields)


@router.post("/fleet/{name}/incoming/sound", max_body_size=sounds.MAX_UPLOAD_BYTES + (64 << 10))
def operator_sound(name: str, request: Request, posted=Depends(signed_form(operator, upload_form)),  # noqa: ANN001
                   session: Session = Depends(db), store: Storage = Depends(storage)) -> Response:
    fields, me = posted
    return sound_change(request, session, store, me, operator_place(session, me, name), fields)


@router.get("/settings/sounds/{sha256}")
def customer_sound_file(sha256: str, request: Request, site: str | None = None, me: users.SignedIn = Depends(org_user),
                        session: Session = Depends(db), store: Storage = Depends(storage)) -> Response:
    """A sound of the organisation's site, for the page's player."""
    return sound_file(request, session, store, customer_place(session, me, site).site, sha256, me)


@router.get("/fleet/{name}/sounds/{sha256}")
def operator_sound_file(name: str, sha256: str, request: Request, me: users.SignedIn = Depends(operator),
                        session: Session = Depends(db), store: Storage = Depends(storage)) -> Response:
    return sound_file(request, session, store, operator_place(session, me, name).site, sha256, me)


def sound_file(request: Request, session: Session, store: Storage, site: Site, sha256: str,
               me: users.SignedIn) -> Response:
    try:
        found = sounds.of_site(session, site, sha256)
    except FleetError:
        return message(request, 404, me, "page_not_found")
    session.close()
    return stored_file(request, store, found.sha256, found.size, "sounds", "audio/wav")


# --- trunks and the dialling area: the provider's (operators edit; the office reads) -------------

TRUNK_ACTIONS = ("save", "remove")


def trunk_change(request: Request, session: Session, me: users.SignedIn, place: Place, fields: dict[str, str],
                 what: str, trunk: str | None = None) -> Response:
    """A trunk added, changed or removed, or the dialling area set."""
    show_page = partial(show, request, session, me, place, page="trunks")
    try:
        base = int(fields.get("base", ""))
        if what == "add":  # the config is parsed only here: a new trunk must not pass the box's limit
            space = configurator.workspace(session, place.site)
            edit, summary = trunk_form.add_trunk(fields, len(space.trunks) if space else 0)
        elif what == "save":
            edit, summary = trunk_form.edit_trunk(fields, trunk or "")
        elif what == "remove":
            edit, summary = trunk_form.remove_trunk(trunk or "")
        else:
            edit, summary = trunk_form.edit_area(fields, COUNTRIES)
    except ValueError:
        return show_page(400, error_key="form_incomplete")
    except config_edit.EditRefused as exc:
        return show_page(422, error_key=exc.key, field=exc.field, form=fields, action=what, trunk=trunk)
    return save_change(request, show_page, session, me, place, fields, base, edit, summary, what, trunk=trunk)


def customer_trunk_place(session: Session, me: users.SignedIn, fields: dict[str, str]) -> Place:
    place = customer_place(session, me, fields.get("site"))
    if not trunks_editable(place):
        raise PageRefused(403, "trunks_by_provider", me)
    return place


@router.post("/settings/trunks")
def customer_add_trunk(request: Request, posted=Depends(admin_form), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    fields, me = posted
    return trunk_change(request, session, me, customer_trunk_place(session, me, fields), fields, "add")


@router.post("/settings/trunks/{trunk}/{action}")
def customer_trunk(trunk: str, action: str, request: Request, posted=Depends(admin_form),  # noqa: ANN001
                   session: Session = Depends(db)) -> Response:
    fields, me = posted
    if action not in TRUNK_ACTIONS:
        return message(request, 404, me, "page_not_found")
    return trunk_change(request, session, me, customer_trunk_place(session, me, fields), fields, action, trunk)


@router.post("/settings/dialling-area")
def customer_area(request: Request, posted=Depends(admin_form), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    fields, me = posted
    return trunk_change(request, session, me, customer_trunk_place(session, me, fields), fields, "area")


@router.post("/fleet/{name}/office-trunks")
def operator_office_trunks(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                           session: Session = Depends(db)) -> Response:
    """Whether the office's admins may change its trunks and dialling area themselves."""
    fields, me = posted
    place = operator_place(session, me, name)
    place.site.office_edits_trunks = fields.get("office_edits_trunks") == "on"
    session.commit()
    return show(request, session, me, place, page="trunks", office_trunks_saved=True)


@router.post("/fleet/{name}/trunks")
def operator_add_trunk(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                       session: Session = Depends(db)) -> Response:
    fields, me = posted
    return trunk_change(request, session, me, operator_place(session, me, name), fields, "add")


@router.post("/fleet/{name}/trunks/{trunk}/{action}")
def operator_trunk(name: str, trunk: str, action: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                   session: Session = Depends(db)) -> Response:
    fields, me = posted
    if action not in TRUNK_ACTIONS:
        return message(request, 404, me, "page_not_found")
    return trunk_change(request, session, me, operator_place(session, me, name), fields, action, trunk)


@router.post("/fleet/{name}/dialling-area")
def operator_area(name: str, request: Request, posted=Depends(signed_form(operator)),  # noqa: ANN001
                  session: Session = Depends(db)) -> Response:
    fields, me = posted
    return trunk_change(request, session, me, operator_place(session, me, name), fields, "area")
