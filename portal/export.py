"""The call report as a file: a real Excel workbook (.xlsx: typed cells, talk time as a
duration, numbers as text so `+7…` keeps its plus, a frozen header row) and a CSV that Excel
reads right (talk time in seconds as a plain number, said in its header; `;` for Russian Excel).
Every row is one conversation, times in its site's zone."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Callable

from openpyxl import Workbook
from openpyxl.styles import Font

from .reports import Conversation

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def spreadsheet_safe(cell: str | None) -> str:
    """A CSV cell Excel or LibreOffice would evaluate as a formula (a caller's From user can be
    `=HYPERLINK(...)`) gets a leading apostrophe; phone numbers such as +79161234567 stay as they are."""
    text = cell or ""
    if text.startswith(FORMULA_START) and text != "+" and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def headers(t: dict[str, str], seconds_in_header: bool) -> list[str]:
    return [t["col_time"], t["col_direction"], t["col_from"], t["col_to"], t["col_answered_by"], t["col_result"],
            t["col_talk_seconds"] if seconds_in_header else t["col_talk"], t["col_site"], t["col_recording"],
            t["col_called_back"], t["col_call_id"]]


def row(c: Conversation, t: dict[str, str], names: Callable[[int, str], str],
        called_back: dict[str, object]) -> list[object]:
    """One conversation's cells, typed: the local start time, texts, talk seconds (an int)."""
    call = c.first
    legs = "; ".join(f"→ {leg.dst_number or leg.dst}" for leg in c.linked)
    answered = call.answered_by or call.picked_up_by
    back = called_back.get(call.id, "")
    return [
        c.started.replace(tzinfo=None), t.get("dir_" + call.direction, call.direction),
        call.src + (f" ({call.src_name})" if call.src_name and call.src_name != call.src else ""),
        (call.dst_number or call.dst) + (f" {legs}" if legs else ""),
        f"{answered} ({names(call.site_id, answered)})".replace(" ()", "") if answered else "",
        t.get("res_" + (call.disposition or "live"), call.disposition or ""), call.billsec or 0, c.site,
        t["yes"] if call.recording_sha256 else "",
        (t["yes"] if back else t["no"]) if call.id in called_back else "", call.id]


def to_csv(found: list[Conversation], t: dict[str, str], russian: bool, names, called_back) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if russian else ",")
    writer.writerow(headers(t, seconds_in_header=True))
    for c in found:
        cells = row(c, t, names, called_back)
        cells[0] = cells[0].strftime("%Y-%m-%d %H:%M:%S")
        writer.writerow([v if isinstance(v, int) else spreadsheet_safe(v) for v in cells])
    return "\ufeff" + out.getvalue()


def to_xlsx(found: list[Conversation], t: dict[str, str], zone: str, names, called_back) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = t["calls"][:31]
    sheet.append(headers(t, seconds_in_header=False))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for c in found:
        cells = row(c, t, names, called_back)
        cells[6] = timedelta(seconds=cells[6])  # a duration Excel sums and shows as [h]:mm:ss
        sheet.append(cells)
        line = sheet.max_row
        sheet.cell(line, 1).number_format = "yyyy-mm-dd hh:mm:ss"
        sheet.cell(line, 7).number_format = "[h]:mm:ss"  # numbers stay text cells: +7… keeps its plus
    for letter, width in zip("ABCDEFGHIJK", (20, 12, 28, 28, 22, 14, 10, 16, 8, 12, 38)):
        sheet.column_dimensions[letter].width = width
    sheet.cell(sheet.max_row + 2, 1, f"{t['times_in']} {zone}")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
