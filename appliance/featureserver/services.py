"""What a call needs from the feature server, handed to it when it is made (instead of the call
reaching into the server): the office config, the records, the live-call table, the ringing
board, the dial plan and the ways to reach a callee, the toll-fraud limits, the SIP adapter's
legs and media, the library thread's timers, and the transfer machine."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import Config
from ..dialplan import DialPlan
from ..ringing import RingingBoard
from .limits import OutsideCallLimits
from .model import CallKind, Leg, LegFactory, Media, TransferKind
from .records import CallRecords
from .table import CallTable
from .targets import Reach

# (call, the leg that pressed a key, the key, the call's two parties) -> a transfer, or None
TransferStarter = Callable[[CallKind, Leg, str, tuple[Leg, Leg]], "TransferKind | None"]


@dataclass
class Services:
    cfg: Config
    records: CallRecords
    table: CallTable
    board: RingingBoard
    dialplan: DialPlan
    reach: Reach
    limits: OutsideCallLimits
    media: Media
    legs: LegFactory
    later: Callable[[float, Callable[[], None]], None]   # run on the library thread after some seconds
    call_soon: Callable[[Callable[[], None]], None]      # thread-safe: run on the library thread
    start_transfer: TransferStarter
