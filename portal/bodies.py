"""The box API's request and response bodies (pydantic). Requests are read as leniently as the
box agent has always been answered: a value of the wrong type is still the service's to refuse
(sync.py, fleet.py, configs.py, with a 4xx that says why), so an older or newer box is judged by
the same rules whichever way its body was shaped."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

# Any JSON value as text (what str() of it gives), as the API has always read these fields.
Text = Annotated[str, BeforeValidator(lambda value: value if isinstance(value, str) else str(value))]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Enrolment(Body):
    code: Text = ""
    hostname: Text = "?"


class CallBatch(Body):
    calls: Any = None  # a list of call records (sync.upsert_calls checks each)


class RecordingOffer(Body):
    call_id: Text = ""
    sha256: Any = None
    size: Any = None


class ConfigResult(Body):
    applied: Any = False
    errors: Any = None


class PhoneActionResult(Body):
    code: Any = None
    detail: Text = ""


class CallbackResult(Body):
    started: Any = None
    detail: Text = ""


class Enrolled(BaseModel):
    site: str
    credential: str


class Accepted(BaseModel):
    accepted: int


class RecordingState(BaseModel):
    status: str             # "stored", or "upload" from `offset`
    offset: int | None = None


class HeartbeatAnswer(BaseModel):
    ok: bool
    config_version: int | None
    phone_actions: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]


class PushedConfig(BaseModel):
    version: int
    sha256: str
    config: str


class Done(BaseModel):
    ok: bool = True
