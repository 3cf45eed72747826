"""Progress bars (tqdm) for work measured in seconds of audio."""

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
