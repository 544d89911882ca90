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


def write_tones(path: Path, tones: tuple[tuple[float, float], ...], seconds: float, rate: int = 16000) -> Path:
    """A 16-bit mono WAV of sines mixed, each (frequency in Hz, RMS level in dBFS): what a codec
    must carry through at its frequency and level."""
    t = np.arange(int(rate * seconds)) / rate
    # a sine's RMS is its peak / sqrt(2): peak = sqrt(2) * 10^(dB/20) gives the level in dBFS
    mix = sum(np.sqrt(2) * 10 ** (db / 20) * np.sin(2 * np.pi * freq * t) for freq, db in tones)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((mix * 32767).astype("<i2").tobytes())
    return path


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
    return _band_level_db(data[int(skip_seconds * rate):], rate, freq, width)


def _band_level_db(data: np.ndarray, rate: int, freq: float, width: float = 40.0) -> float:
    if len(data) < rate // 10:
        return -120.0
    spectrum = np.fft.rfft(data * np.hanning(len(data)))
    freqs = np.fft.rfftfreq(len(data), 1.0 / rate)
    band = (freqs > freq - width) & (freqs < freq + width)
    # Parseval with the Hann window's power gain (0.375): band power as a fraction of full scale.
    power = 2.0 * np.sum(np.abs(spectrum[band]) ** 2) / (len(data) ** 2 * 0.375)
    return 10 * np.log10(max(power, 1e-12))


def has_tone_in_part(path: Path, freq: float, part_seconds: float = 0.2) -> bool:
    """The tone is present in some part of the file: for a cadenced tone (ringback: 1 s on, 4 s
    off) whose on-time may begin or end inside the window a test records."""
    rate, data = read_wav(path)
    step = int(part_seconds * rate)
    return any(_band_level_db(data[i:i + step], rate, freq) > PRESENT_DB for i in range(0, len(data) - step + 1, step // 2))


def duration_seconds(path: Path) -> float:
    rate, data = read_wav(path)
    return len(data) / rate


PRESENT_DB = -35.0  # a test tone played at -13 dBFS arrives well above this through G.711/G.722
ABSENT_DB = -50.0


def has_tone(path: Path, freq: float) -> bool:
    return band_level_db(path, freq) > PRESENT_DB


def lacks_tone(path: Path, freq: float) -> bool:
    return band_level_db(path, freq) < ABSENT_DB


def alaw_to_linear(payload: bytes) -> np.ndarray:
    """G.711 A-law bytes as 16-bit samples (ITU-T G.711)."""
    a = np.frombuffer(payload, dtype=np.uint8) ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, (a & 0x0F).astype(np.int32)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent.astype(np.int32) - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.float64)


def tone_share_in_alaw_rtp(packets: list[bytes], freq: float, rate: int = 8000) -> float:
    """How much of the power of RTP packets' payloads, decoded as A-law, lies within 40 Hz of
    `freq`: near 1 for a phone's tone sent in the clear, near 0 for encrypted payloads (SRTP)."""
    samples = []
    for packet in packets:
        if len(packet) <= 12 or packet[0] >> 6 != 2:
            continue
        header = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10 and len(packet) >= header + 4:  # an RTP header extension
            header += 4 + 4 * int.from_bytes(packet[header + 2:header + 4], "big")
        samples.append(alaw_to_linear(packet[header:header + 160]))
    if not samples:
        return 0.0
    data = np.concatenate(samples)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data)))) ** 2
    freqs = np.fft.rfftfreq(len(data), 1.0 / rate)
    return float(spectrum[(freqs > freq - 40) & (freqs < freq + 40)].sum() / max(spectrum.sum(), 1e-12))
