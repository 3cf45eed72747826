"""Framewise scores of one track, and museval's JSON file for them.

museval (``TrackStore``) writes, per track::

    {"targets": [{"name": "vocals",
                  "frames": [{"time": 0.0, "duration": 1.0,
                              "metrics": {"SDR": -16.89156, "SIR": 9.75952, "SAR": -3.94092, "ISR": -14.67801}},
                             ...]},
                 ...],
     "museval_version": "0.4.1"}

with every value rounded to 5 decimals and infinities stored as NaN. The files written here have the
same content, pass museval's schema (``musdb.schema.json``), and are read back by museval's
``EvalStore``/``MethodStore``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import WaveUNetError

#: metric order inside a museval frame
METRICS = ("SDR", "SIR", "SAR", "ISR")


@dataclass
class TrackScores:
    """``targets[target][metric]`` lists the scores (dB) of the frames ``hop`` seconds apart."""

    track: str
    targets: dict[str, dict[str, list[float]]]
    window: float = 1.0  # seconds
    hop: float = 1.0  # seconds

    def to_museval(self) -> dict:
        """The track as museval's JSON document."""
        targets = []
        for name, metrics in self.targets.items():
            frames = [
                {"time": i * self.hop, "duration": self.window,
                 "metrics": {metric: _quantize(metrics[metric][i]) for metric in METRICS}}
                for i in range(len(metrics["SDR"]))
            ]
            targets.append({"name": name, "frames": frames})
        return {"targets": targets, "museval_version": _museval_version()}

    @classmethod
    def from_museval(cls, track: str, document: dict) -> TrackScores:
        """Read museval's JSON document (as :func:`json.load` gives it)."""
        targets, window, hop = {}, 1.0, 1.0
        for target in document["targets"]:
            frames = target["frames"]
            targets[target["name"]] = {metric: [float(frame["metrics"][metric]) for frame in frames]
                                       for metric in METRICS}
            if len(frames) > 1:
                window, hop = float(frames[0]["duration"]), float(frames[1]["time"] - frames[0]["time"])
            elif frames:
                window = hop = float(frames[0]["duration"])
        return cls(track, targets, window, hop)


def write_scores(scores: TrackScores, path: Path) -> None:
    """Write museval's JSON for ``scores`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(scores.to_museval(), indent=2)
    write_text_atomic(path, text)


def read_scores(path: Path, track: str) -> TrackScores:
    """Read a museval JSON file written by us or by museval."""
    try:
        return TrackScores.from_museval(track, json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise WaveUNetError(f"{path}: not a museval score file ({type(error).__name__}: {error}); "
                            f"delete it or rerun with --force") from None


def _quantize(value: float) -> float:
    # museval's TrackStore._q: infinities become NaN, the rest is rounded to 5 decimals
    # (Decimal.quantize rounds half to even on the exact binary value, as round() does).
    value = float(value)
    return math.nan if math.isinf(value) else round(value, 5)


def _museval_version() -> str:
    return version("museval")
