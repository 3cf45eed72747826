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
``EvalStore``/``MethodStore``. They add, where museval's schema leaves room (its readers ignore
them):

* per target ``"uSDR"``: the MDX challenge's global SDR of the whole track (:func:`global_sdr`);
* per target ``"conditioning"``: the condition numbers of the systems behind SIR/SAR and ISR,
  whether they had to be regularised, and how many frames are ill-conditioned;
* per ill-conditioned frame ``"ill_conditioned"``: how far a float64 solve such as museval's can
  move each score there (dB), and which scores are unresolved (reported as a lower bound).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import torch

from ..atomic import write_text_atomic
from ..errors import WaveUNetError

#: metric order inside a museval frame
METRICS = ("SDR", "SIR", "SAR", "ISR")
#: the MDX challenge's ``delta`` in ``10 log10((Σ s² + δ) / (Σ (s − ŝ)² + δ))``
MDX_DELTA = 1e-7


def global_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """The MDX challenge's SDR of a whole track (Mitsufuji et al., 2021; Demucs' ``new_sdr``):
    ``10 log10((Σ s² + δ) / (Σ (s − ŝ)² + δ))`` over all samples and channels, ``δ = 1e-7``.
    Averaged over tracks it is the "uSDR" papers report beside museval's "cSDR"."""
    reference, estimate = reference.double(), estimate.double()
    numerator = reference.square().sum() + MDX_DELTA
    denominator = (reference - estimate).square().sum() + MDX_DELTA
    return float(10 * torch.log10(numerator / denominator))


@dataclass
class TargetConditioning:
    """How well determined one target's scores are (see :class:`~.bss_eval.Conditioning`).

    ``frames[i]`` is None for a well-conditioned frame, else ``{"sensitivity_dB": {metric: dB},
    "unresolved": [metric, ...]}``.
    """

    condition: float
    own_condition: float
    regularized: bool
    own_regularized: bool
    frames: list[dict | None]

    @property
    def ill_conditioned_frames(self) -> int:
        return sum(frame is not None for frame in self.frames)

    def to_json(self) -> dict:
        return {"condition": json_number(self.condition), "own_condition": json_number(self.own_condition),
                "regularized": self.regularized, "own_regularized": self.own_regularized,
                "ill_conditioned_frames": self.ill_conditioned_frames}


@dataclass
class TrackScores:
    """``targets[target][metric]`` lists the scores (dB) of the frames ``hop`` seconds apart;
    ``usdr[target]`` is the target's :func:`global_sdr` and ``conditioning[target]`` its
    :class:`TargetConditioning` (either may be missing, e.g. for museval's own files)."""

    track: str
    targets: dict[str, dict[str, list[float]]]
    window: float = 1.0  # seconds
    hop: float = 1.0  # seconds
    usdr: dict[str, float] = field(default_factory=dict)
    conditioning: dict[str, TargetConditioning] = field(default_factory=dict)

    def to_museval(self) -> dict:
        """The track as museval's JSON document (plus our keys)."""
        targets = []
        for name, metrics in self.targets.items():
            conditioning = self.conditioning.get(name)
            frames = []
            for i in range(len(metrics["SDR"])):
                frame = {"time": i * self.hop, "duration": self.window,
                         "metrics": {metric: _quantize(metrics[metric][i]) for metric in METRICS}}
                if conditioning is not None and conditioning.frames[i] is not None:
                    frame["ill_conditioned"] = conditioning.frames[i]
                frames.append(frame)
            target = {"name": name, "frames": frames}
            if name in self.usdr:
                target["uSDR"] = _quantize(self.usdr[name])
            if conditioning is not None:
                target["conditioning"] = conditioning.to_json()
            targets.append(target)
        return {"targets": targets, "museval_version": _museval_version()}

    @classmethod
    def from_museval(cls, track: str, document: dict) -> TrackScores:
        """Read museval's JSON document (as :func:`json.load` gives it), ours or museval's."""
        targets, usdr, conditioning, window, hop = {}, {}, {}, 1.0, 1.0
        for target in document["targets"]:
            frames = target["frames"]
            name = target["name"]
            targets[name] = {metric: [_float(frame["metrics"][metric]) for frame in frames] for metric in METRICS}
            if len(frames) > 1:
                window, hop = float(frames[0]["duration"]), float(frames[1]["time"] - frames[0]["time"])
            elif frames:
                window = hop = float(frames[0]["duration"])
            if "uSDR" in target:
                usdr[name] = _float(target["uSDR"])
            if "conditioning" in target:
                info = target["conditioning"]
                conditioning[name] = TargetConditioning(
                    condition=_float(info["condition"]), own_condition=_float(info["own_condition"]),
                    regularized=bool(info["regularized"]), own_regularized=bool(info["own_regularized"]),
                    frames=[frame.get("ill_conditioned") for frame in frames])
        return cls(track, targets, window, hop, usdr, conditioning)


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


def json_number(value: float) -> float | None:
    """A JSON-safe number: None for NaN and infinities (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _museval_version() -> str:
    return version("museval")
