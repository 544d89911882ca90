"""Audio checks for tests: is a given tone present in a WAV file, and how loud."""
from __future__ import annotations

import struct
import time
import wave
from pathlib import Path

import numpy as np


def wait_until_closed(path: Path, timeout: float = 2.0) -> None:
    """PJSIP (2.14 on) closes a recorder's WAV in the media clock thread, a tick or two after the
    recorder is released: the RIFF size field is right only once the file is closed."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path, "rb") as fh:
            data = fh.read(8)
        size = Path(path).stat().st_size
        if len(data) == 8 and data[:4] == b"RIFF" and struct.unpack("<I", data[4:])[0] == size - 8:
            return
        if time.monotonic() > deadline:
            return  # let the reader report what is wrong with the file
        time.sleep(0.02)


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    wait_until_closed(path)
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, "expected 16-bit PCM"
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1)
    return rate, data


def band_level_db(path: Path, freq: float, width: float = 40.0, skip_seconds: float = 0.3) -> float:
    """RMS level (dBFS) of the signal within freq±width, measured by FFT over the whole file."""
    rate, data = read_wav(path)
    data = data[int(skip_seconds * rate):]
    if len(data) < rate // 10:
        return -120.0
    spectrum = np.fft.rfft(data * np.hanning(len(data)))
    freqs = np.fft.rfftfreq(len(data), 1.0 / rate)
    band = (freqs > freq - width) & (freqs < freq + width)
    # Parseval with the Hann window's power gain (0.375): band power as a fraction of full scale.
    power = 2.0 * np.sum(np.abs(spectrum[band]) ** 2) / (len(data) ** 2 * 0.375)
    return 10 * np.log10(max(power, 1e-12))


def duration_seconds(path: Path) -> float:
    rate, data = read_wav(path)
    return len(data) / rate


PRESENT_DB = -35.0  # a test tone played at -13 dBFS arrives well above this through G.711/G.722
ABSENT_DB = -50.0


def has_tone(path: Path, freq: float) -> bool:
    return band_level_db(path, freq) > PRESENT_DB


def lacks_tone(path: Path, freq: float) -> bool:
    return band_level_db(path, freq) < ABSENT_DB
