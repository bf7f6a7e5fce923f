"""Cutting clips out of an episode's audio with PyAV (the optional `audio` extra).

The one module that imports `av`. A clip is encoded as mono mp3 (libmp3lame, 44.1 kHz,
64 kbit/s): mp3 is what AnkiMobile, AnkiDroid and AnkiWeb all play, and at that rate a
20-second clip is about 160 KB. The input is opened once per episode and each clip is
reached by seeking, so cutting a hundred clips never decodes the whole hour.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path

from cards.errors import AudioError

RATE = 44100
BIT_RATE = 64_000
INSTALL_HINT = "audio clips need PyAV: pip install 'cards[audio]'"


def _av():
    try:
        import av
    except ImportError:
        raise AudioError(INSTALL_HINT) from None
    return av


def available() -> bool:
    """Whether PyAV can be imported."""
    try:
        _av()
    except AudioError:
        return False
    return True


def duration(path: Path) -> float | None:
    """The length of an audio file in seconds, or None when the container does not say."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = _audio_stream(container, path)
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return None if container.duration is None else container.duration / 1_000_000
    except (av.FFmpegError, OSError) as e:
        raise AudioError(f"cannot read audio: {_reason(e)}", path=str(path)) from None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _audio_stream(container, path: Path):
    if not container.streams.audio:
        raise AudioError("no audio stream in this file", path=str(path))
    return container.streams.audio[0]


def cut(path: Path, spans: Iterable[tuple[str, float, float]],
        on_clip: Callable[[str], None] | None = None) -> dict[str, bytes]:
    """Mono mp3 bytes for each (key, start, end) span of the file, by key.

    Spans past the end of the audio give shorter clips, or none when nothing is left.
    """
    av = _av()
    from av.audio.resampler import AudioResampler

    out: dict[str, bytes] = {}
    try:
        with av.open(str(path)) as container:
            stream = _audio_stream(container, path)
            for key, start, end in sorted(spans, key=lambda s: s[1]):
                data = _cut_one(av, AudioResampler, container, stream, start, end)
                if data:
                    out[key] = data
                if on_clip:
                    on_clip(key)
    except (av.FFmpegError, OSError) as e:
        raise AudioError(f"cannot cut audio: {_reason(e)}", path=str(path)) from None
    return out


def _cut_one(av, resampler_cls, container, stream, start: float, end: float) -> bytes:
    # Seek a little early: the demuxer lands on a packet at or before the target, and
    # the decoded frames before `start` are dropped sample-exactly below.
    target = max(0.0, start - 0.5)
    container.seek(int(target / stream.time_base), stream=stream, backward=True)
    buf = io.BytesIO()
    samples = 0
    with av.open(buf, "w", format="mp3") as out:
        # LAME's quality 7 ("fast"): a quarter less work than its default, and no audible loss for speech.
        encoder = out.add_stream("libmp3lame", rate=RATE, layout="mono", options={"compression_level": "7"})
        encoder.bit_rate = BIT_RATE
        resampler = resampler_cls(format="s16p", layout="mono", rate=RATE)

        def encode(frame) -> None:
            for packet in encoder.encode(frame):
                out.mux(packet)

        for frame in container.decode(stream):
            t = frame.time
            if t is None:
                continue
            rate = frame.sample_rate
            if t + frame.samples / rate <= start:
                continue
            if t >= end:
                break
            first = max(0, round((start - t) * rate))
            last = min(frame.samples, round((end - t) * rate))
            if last <= first:
                continue
            if first > 0 or last < frame.samples:
                frame = _trim(av, frame, first, last)
            frame.pts = None
            for piece in resampler.resample(frame):
                samples += piece.samples
                encode(piece)
        for piece in resampler.resample(None):
            samples += piece.samples
            encode(piece)
        encode(None)
    return buf.getvalue() if samples else b""


def _trim(av, frame, first: int, last: int):
    data = frame.to_ndarray()
    if frame.format.is_planar:
        data = data[:, first:last]
    else:  # packed: the channels' samples interleaved in one row
        channels = len(frame.layout.channels)
        data = data[:, first * channels:last * channels]
    piece = av.AudioFrame.from_ndarray(data, format=frame.format.name, layout=frame.layout.name)
    piece.sample_rate = frame.sample_rate
    return piece


def tone(path: Path, seconds: float, *, rate: int = RATE, codec: str = "libmp3lame") -> Path:
    """Write a test signal: a tone whose pitch steps every second (for tests and benchmarks)."""
    av = _av()
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = BIT_RATE
        done = 0
        total = int(round(seconds * rate))
        while done < total:
            n = min(rate, total - done)
            t = (np.arange(n) + done) / rate
            pitch = 220 + (done // rate % 10) * 20
            frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)[None, :],
                                               format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
            done += n
        for packet in stream.encode(None):
            out.mux(packet)
    return path
