"""The box API's request and response bodies (pydantic). Requests are read as leniently as the
box agent has always been answered: a value of the wrong type is still the service's to refuse
(sync.py, fleet.py, configs.py, with a 4xx that says why), so an older or newer box is judged by
the same rules whichever way its body was shaped."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Numbers in URLs are database keys (PostgreSQL integer) and byte offsets (bigint): a larger one
# is a 422 with the reason, not the database's overflow as a 500 (found by tests/test_api_fuzz.py).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ByteOffset = Annotated[int, Query(ge=0, le=2**62)]
Count = Annotated[int, Query(ge=0, le=100_000)]

# Any JSON value as text (what str() of it gives), as the API has always read these fields; NUL
# characters dropped (PostgreSQL's text cannot hold them: a 500, found by tests/test_api_fuzz.py).
Text = Annotated[str, BeforeValidator(lambda value: (value if isinstance(value, str) else str(value)).replace("\x00", ""))]


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


class BoxConfig(Body):
    config: Text = ""  # the office config the box runs (YAML), written on site


class ConfigVersion(BaseModel):
    version: int


class WakeAnswer(BaseModel):
    wake: bool  # true: the box has something to collect (its heartbeat fetches it)


WaitVersion = Annotated[int | None, Query(ge=0, le=2**31 - 1)]
WaitSeconds = Annotated[float, Query(ge=0, le=60)]


class PhoneActionResult(Body):
    code: Any = None
    detail: Text = ""


class CallbackResult(Body):
    started: Any = None
    detail: Text = ""


class DiskState(Body):
    total_bytes: int | None = Field(None, ge=0)
    free_bytes: int | None = Field(None, ge=0)


class TrunkState(Body):
    name: str = Field("", max_length=64)
    state: str = Field("", max_length=32)
    last_code: int | None = None


class OutboxState(Body):
    """What the box still has to send, and what it set aside because the portal refused it."""
    cdr: int = Field(0, ge=0)
    recording: int = Field(0, ge=0)
    rejected: int = Field(0, ge=0)


class TollAlarm(Body):
    at: str = Field("", max_length=64)
    reason: str = Field("", max_length=500)


class UpgradeHalt(BaseModel):
    model_config = ConfigDict(extra="allow")
    mac: str = Field("", max_length=32)
    extension: str | None = Field(None, max_length=32)
    version: str = Field("", max_length=64)


class FirmwareUpgrades(BaseModel):
    """The box's phone upgrades: how many phones are being upgraded, done, failed; and why they stopped."""
    model_config = ConfigDict(extra="allow")
    upgrading: int = Field(0, ge=0)
    done: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    halted: UpgradeHalt | None = None


class UpdateReport(BaseModel):
    """Where the box is with the release its rollout offered it."""
    model_config = ConfigDict(extra="allow")
    version: str = Field(max_length=64)
    state: Literal["downloading", "ready", "installing", "failed"]
    detail: str = Field("", max_length=500)


class _Read(BaseModel):
    """A part of what a box reported, read for a page: unknown keys ignored, missing ones default."""
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class PhoneSummary(_Read):
    mac: str = ""
    vendor: str = ""
    model: str = ""


class ExtensionSummary(_Read):
    number: str
    name: str = ""
    permissions: str = ""
    pickup_group: str = ""
    phone: PhoneSummary | None = None


class FeaturesSummary(_Read):
    pickup: bool = True
    pickup_code: str = ""
    directed_pickup_prefix: str = ""
    transfer_key: str = ""


class StepSummary(_Read):
    kind: str
    targets: list[str] = Field(default_factory=list)
    timeout: int | float | None = None


class InboundSummary(_Read):
    hours: dict[str, list[str]] | None = None
    holidays: list[str] = Field(default_factory=list)
    digit_timeout: int | float | None = None
    day: list[StepSummary] | None = None
    night: list[StepSummary] | None = None


class RuleSummary(_Read):
    pattern: str
    class_: str = Field("", alias="class")
    trunks: list[str] = Field(default_factory=list)
    name: str = ""


class TrunkSummary(_Read):
    name: str
    register_: bool = Field(False, alias="register")
    dids: list[str] = Field(default_factory=list)


class SettingsSummary(_Read):
    """The office settings a box reports in its heartbeat (appliance/cloud/settings.py), as the
    settings page shows them: a box's summary of another shape shows as unreadable, not as a 500."""
    site: str = ""
    timezone: str | None = None
    country: str | None = None
    area_code: str | None = None
    extensions: list[ExtensionSummary] = Field(default_factory=list)
    pickup_groups: dict[str, list[str]] = Field(default_factory=dict)
    features: FeaturesSummary = Field(default_factory=FeaturesSummary)
    inbound: InboundSummary = Field(default_factory=InboundSummary)
    dialplan: list[RuleSummary] = Field(default_factory=list)
    trunks: list[TrunkSummary] = Field(default_factory=list)
    recording: bool = True
    no_answer_timeout: int | float | None = None


class Heartbeat(BaseModel):
    """What a box says of itself every minute. The fields the portal's pages and alarms read are
    typed (a box that sends `"disk": []` gets 422 with the reason, and no page breaks on it);
    the rest is kept as sent."""
    model_config = ConfigDict(extra="allow")
    version: str | None = Field(None, max_length=64)
    heartbeat_seconds: int = Field(60, ge=1, le=3600)
    disk: DiskState | None = None
    trunks: list[TrunkState] = Field(default_factory=list, max_length=64)
    toll_alarm: TollAlarm | None = None
    phones_registered: int | None = None
    extensions: int | None = None
    outbox_depth: int | None = None
    outbox: OutboxState | None = None
    phones: list[dict[str, Any]] = Field(default_factory=list, max_length=2000)
    settings: dict[str, Any] | None = None
    firmware_upgrades: FirmwareUpgrades | None = None
    slot: str | None = Field(None, max_length=8)  # the RAUC slot booted (A or B); None off the image
    compatible: str | None = Field(None, max_length=64)  # the board (RAUC's compatible), None off the image
    update: UpdateReport | None = None


class BackupShown(BaseModel):
    id: int
    created_at: datetime
    size: int


class Enrolled(BaseModel):
    site: str
    credential: str
    backup_key: str  # base64 of the 32-byte key the box seals its backups with
    backup: BackupShown | None = None  # the site's newest backup: a replacement box restores it


class BackupStored(BaseModel):
    id: int
    created_at: datetime


class BackupKey(BaseModel):
    backup_key: str


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
    captures: list[dict[str, Any]] = []  # [{"id", "seconds"}]: an operator's remote diagnostics
    firmware: list[dict[str, Any]] = []  # what the site's phones should run: [{"vendor", "model", "version", "sha256", ...}]
    update: dict[str, Any] | None = None  # box software offered by a rollout: {"rollout", "version", "sha256", "size", "window"}


class CaptureResult(Body):
    ok: bool = False
    packets: int | None = Field(default=None, ge=0, le=2**31 - 1)
    detail: Text = ""


class PushedConfig(BaseModel):
    version: int
    sha256: str
    config: str


class Done(BaseModel):
    ok: bool = True
