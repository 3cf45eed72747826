"""Progress bars (tqdm) for work measured in seconds of audio, and the figures commands report:
durations, sizes and speed, written so that they read true (pure functions)."""

from __future__ import annotations


class SecondsBar:
    """A tqdm bar over ``seconds`` of audio called ``name``, or nothing at all when not ``enabled``."""

    def __init__(self, name: str, seconds: float, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=round(seconds, 1), desc=name, unit="s", leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]")

    def update_to(self, seconds: float) -> None:
        """Seconds done so far."""
        if self._bar is not None:
            self._bar.update(min(seconds, self._bar.total) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_seconds(seconds: float) -> str:
    """``6.8 s``; below a second two significant digits, so that 0.05 s is not shown as 0.1 s.

    >>> format_seconds(6.83), format_seconds(0.05), format_seconds(0.0042), format_seconds(0)
    ('6.8 s', '0.05 s', '0.0042 s', '0 s')
    """
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds:.2g} s"


def format_bytes(size: int | None) -> str:
    """``54.3 MiB``: binary units, three significant digits.

    >>> format_bytes(0), format_bytes(1023), format_bytes(56_938_496), format_bytes(5 * 2**40)
    ('0 bytes', '1023 bytes', '54.3 MiB', '5.00 TiB')
    """
    if size is None:
        return "an unknown size"
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1000 or unit == "TiB":
            break
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def speed(audio_seconds: float, elapsed: float) -> str:
    """How processing time compares with the audio's duration, in words that are true either way.

    >>> speed(6.8, 1.1), speed(10, 20), speed(5, 5)
    ('6.2x faster than real time', '2.0x slower than real time', 'as fast as real time')
    """
    if elapsed <= 0:
        return "faster than the clock can measure"
    ratio = audio_seconds / elapsed
    if round(ratio, 1) == 1.0:
        return "as fast as real time"
    if ratio > 1:
        return f"{ratio:.1f}x faster than real time"
    return f"{1 / ratio:.1f}x slower than real time"
