"""Repairs the header of a WAV file whose writer died before closing it.

pjmedia's WAV writer writes the RIFF and data sizes only when the file is closed; after a
crash or power loss they are wrong (zero), and players refuse or truncate the file. The audio
itself is on disk, so fixing the two size fields from the file length recovers the call.
"""
from __future__ import annotations

import struct
from pathlib import Path


def repair(path: Path) -> bool:
    """Fixes RIFF and data chunk sizes in place; returns True if the file was changed."""
    with open(path, "r+b") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{path}: not a RIFF/WAVE file")
        size = fh.seek(0, 2)
        offset = 12
        block_align = 2
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_len = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"fmt ":
                fmt = fh.read(16)
                block_align = max(1, struct.unpack("<HHIIHH", fmt)[4])
            if chunk_id == b"data":
                available = size - offset - 8
                data_len = available - available % block_align
                changed = chunk_len != data_len or struct.unpack("<I", head[4:8])[0] != size - 8
                if changed:
                    fh.seek(4)
                    fh.write(struct.pack("<I", size - 8))
                    fh.seek(offset + 4)
                    fh.write(struct.pack("<I", data_len))
                return changed
            offset += 8 + chunk_len + (chunk_len & 1)
        raise ValueError(f"{path}: no data chunk")


def is_closed(path: Path) -> bool:
    """True once the writer has closed the file: its RIFF size covers the whole file. (pjmedia
    writes the sizes at close, a media tick after the call's CDR ends.)"""
    with open(path, "rb") as fh:
        head = fh.read(12)
        size = fh.seek(0, 2)
    return len(head) == 12 and head[:4] == b"RIFF" and struct.unpack("<I", head[4:8])[0] == size - 8 and size > 44
