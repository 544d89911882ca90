"""The portal's routes fuzzed with Schemathesis (PyPI) from its own OpenAPI description: the box
API with a real site credential, the pages (their OpenAPI is made here with the pages included,
which the running portal leaves out of /openapi.json) with a signed-in operator's and a customer
admin's session, against a real portal on PostgreSQL. No answer may be a 5xx, and none may take a
second or more. Examples per route are bounded so that CI stays fast (FUZZ_EXAMPLES to change)."""
from __future__ import annotations

import os
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from portal.app import create_app
from portal.routes import boxes, calls, fleet, office, settings as settings_pages, signin
from portal_lab import close_portal, start_portal
from test_portal_web import PASSWORD, Box, call, signed_in

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SLOW = 1.0  # seconds


def openapi_with_pages() -> dict:
    """The portal's whole route table as OpenAPI: the same routes the running portal serves."""
    for area in (boxes, calls, fleet, office, signin, settings_pages):  # this test process's copy; the portal runs apart
        area.router.include_in_schema = True
        for route in area.router.routes:
            route.include_in_schema = True
    return create_app(None, None).openapi()  # only its routes are read


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    portal = start_portal(tmp_path_factory.mktemp("fuzz"), "postgresql")
    box = Box(portal, "Acme", "acme-hq")
    box.send(call("+79161234567", "101", "inbound", "answered", 12), call("101", "84951234567", "outbound", "busy"))
    portal.cli("add-user", "--org", "Acme", "--user", "anna", "--password", PASSWORD, "--role", "admin")
    portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
    yield portal, box
    close_portal(portal)


def fuzz(schema, base_url: str, session: requests.Session, headers: dict) -> tuple[int, list[str]]:
    """Every operation of `schema`, EXAMPLES cases each; returns the number of requests and what went wrong."""
    sent, wrong = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def one(case) -> None:
            nonlocal sent
            if case.path == "/api/v1/wait" and isinstance(case.query, dict):  # held open by design: briefly here
                case.query["seconds"] = 0.2
            started = time.monotonic()
            response = case.call(base_url=base_url, session=session, headers=headers, allow_redirects=False, timeout=10)
            took = time.monotonic() - started
            sent += 1
            if response.status_code >= 500 or took >= SLOW:
                wrong.append(f"{case.method} {case.formatted_path} -> {response.status_code} in {took:.2f} s: "
                             f"{response.text[:200]!r} (query {case.query}, body {str(case.body)[:200]})")

        one()
    return sent, wrong


def test_the_box_api_answers_every_generated_request_without_a_5xx_within_a_second(lab):
    portal, box = lab
    schema = schemathesis.openapi.from_url(f"{portal.url}/openapi.json")
    sent, wrong = fuzz(schema, portal.url, requests.Session(), box.auth)
    assert sent >= 5 * EXAMPLES and not wrong, "\n".join(wrong[:20])


@pytest.mark.parametrize("user, home", [("olga", "/fleet"), ("anna", "/calls")])
def test_every_page_answers_generated_requests_of_a_signed_in_user_without_a_5xx_within_a_second(lab, user, home):
    portal, _box = lab
    browser, answer = signed_in(portal, user)
    assert answer.status_code == 303
    schema = schemathesis.openapi.from_dict(openapi_with_pages())
    sent, wrong = fuzz(schema, portal.url, browser, {})
    assert sent >= 12 * EXAMPLES and not wrong, "\n".join(wrong[:20])
    assert browser.get(f"{portal.url}{home}", timeout=10, allow_redirects=False).status_code == 200  # still signed in
