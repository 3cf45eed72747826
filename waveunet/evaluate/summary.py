"""One number per target and metric over a set of tracks: the two SDRs papers report, and the rest.

* **cSDR** ("chunk-level", SiSEC 2018; museval's ``EvalStore``): each track's median SDR over its
  1-second frames, then the median over tracks.
* **uSDR** ("utterance-level", the MDX challenge 2021, Demucs): each track's global SDR
  ``10 log10(Σ s² / Σ (s − ŝ)²)`` over the whole track and its channels (with MDX's ``δ = 1e-7``
  in both sums), then the mean over tracks.

SIR, ISR and SAR are aggregated like cSDR (median of frame medians; the mean over tracks of the
same frame medians is given beside). NaN frames (silent references or estimates) and NaN tracks
are skipped, as pandas does. The summary also counts the frames whose scores are ill-conditioned
(museval's value there is not reproducible, see :class:`~waveunet.evaluate.bss_eval.Conditioning`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import AtomicGroup
from .bss_eval import SENSITIVITY_DB
from .scores import TrackScores

#: metric order in the summary (museval's printout order)
METRICS = ("SDR", "SIR", "ISR", "SAR")
AGGREGATION = {
    "cSDR": "median over tracks of each track's median SDR over its frames (SiSEC 2018, museval)",
    "uSDR": "mean over tracks of each track's global SDR over all samples and channels, "
            "10 log10((sum s^2 + 1e-7) / (sum (s - s_hat)^2 + 1e-7)) (MDX challenge 2021)",
    "median": "per metric: median over tracks of each track's median over its frames",
    "mean": "per metric: mean over tracks of the same per-track medians",
    "skipped": "NaN frames (silent references or estimates) and NaN tracks",
    "ill_conditioned": "frames where a rounding-level change of the correlations (what a float64 solve "
                       f"such as museval's makes) moves a score by more than {SENSITIVITY_DB:g} dB, or "
                       "where an error energy is within its rounding bound (the score is then a lower bound)",
}


@dataclass
class TargetSummary:
    """``median[metric]`` / ``mean[metric]`` over ``tracks`` tracks of each track's frame median;
    ``csdr`` and ``usdr`` the two SDRs; ``ill_conditioned`` frames out of ``frames``, in
    ``ill_tracks``."""

    target: str
    tracks: int
    median: dict[str, float]
    mean: dict[str, float]
    csdr: float = math.nan
    usdr: float = math.nan
    usdr_tracks: int = 0
    frames: int = 0
    ill_conditioned: int = 0
    ill_tracks: list[str] = field(default_factory=list)


def summarize(scores: Sequence[TrackScores]) -> list[TargetSummary]:
    """Aggregate the tracks' scores per target, targets in order of first appearance."""
    per_track: dict[str, dict[str, list[float]]] = {}
    usdr: dict[str, list[float]] = {}
    counts: dict[str, list] = {}
    for track in scores:
        for target, metrics in track.targets.items():
            values = per_track.setdefault(target, {metric: [] for metric in METRICS})
            for metric in METRICS:
                values[metric].append(frame_median(metrics[metric]))
            if target in track.usdr:
                usdr.setdefault(target, []).append(track.usdr[target])
            frames, ill, tracks = counts.setdefault(target, [0, 0, []])
            conditioning = track.conditioning.get(target)
            flagged = conditioning.ill_conditioned_frames if conditioning else 0
            counts[target] = [frames + len(metrics["SDR"]), ill + flagged, tracks + ([track.track] if flagged else [])]
    summary = []
    for target, values in per_track.items():
        median = {m: _nan_reduce(np.nanmedian, values[m]) for m in METRICS}
        track_usdr = usdr.get(target, [])
        frames, ill, tracks = counts[target]
        summary.append(TargetSummary(
            target=target, tracks=len(values["SDR"]), median=median,
            mean={m: _nan_reduce(np.nanmean, values[m]) for m in METRICS},
            csdr=median["SDR"], usdr=_nan_reduce(np.nanmean, track_usdr), usdr_tracks=len(track_usdr),
            frames=frames, ill_conditioned=ill, ill_tracks=tracks))
    return summary


def frame_median(values: Sequence[float]) -> float:
    """The median of a track's frame scores, NaN frames skipped (NaN if all are)."""
    return _nan_reduce(np.nanmedian, values)


def _nan_reduce(reduce, values) -> float:
    # NaN (not a warning) when every value is NaN, as pandas' skipna aggregations give
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(reduce(np.asarray(values, dtype=float))) if len(values) else float("nan")


def format_table(summary: Sequence[TargetSummary]) -> str:
    """A fixed-width table: one row per target; cSDR, uSDR, the other metrics' medians, and the
    ill-conditioned frames; a legend below."""
    header = (f"{'target':<16}{'tracks':>7}{'cSDR':>9}{'uSDR':>9}"
              + "".join(f"{m:>9}" for m in METRICS[1:]) + f"{'ill-cond. frames':>19}")
    rows = [header]
    for row in summary:
        cells = "".join(f"{row.median[m]:>9.3f}" for m in METRICS[1:])
        rows.append(f"{row.target:<16}{row.tracks:>7}{row.csdr:>9.3f}{row.usdr:>9.3f}{cells}"
                    f"{f'{row.ill_conditioned}/{row.frames}':>19}")
    rows.append("cSDR: median over frames, then over tracks (SiSEC 2018); uSDR: global SDR per track, "
                "mean over tracks (MDX 2021); SIR, ISR, SAR: as cSDR. dB.")
    return "\n".join(rows)


def summary_document(summary: Sequence[TargetSummary]) -> dict:
    return {
        "aggregation": AGGREGATION,
        "targets": {row.target: {"tracks": row.tracks, "cSDR": _json(row.csdr), "uSDR": _json(row.usdr),
                                 "uSDR_tracks": row.usdr_tracks,
                                 "median": {m: _json(v) for m, v in row.median.items()},
                                 "mean": {m: _json(v) for m, v in row.mean.items()},
                                 "ill_conditioned": {"frames": row.ill_conditioned, "of": row.frames,
                                                     "tracks": row.ill_tracks}}
                    for row in summary},
    }


def summary_csv(summary: Sequence[TargetSummary]) -> str:
    """One row per target: tracks, cSDR, uSDR, median and mean of each metric, ill-conditioned frames."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["target", "tracks", "cSDR", "uSDR"] + [f"{m}_{a}" for m in METRICS for a in ("median", "mean")]
                    + ["ill_conditioned_frames", "frames"])
    for row in summary:
        writer.writerow([row.target, row.tracks, _cell(row.csdr), _cell(row.usdr)]
                        + [_cell(getattr(row, a)[m]) for m in METRICS for a in ("median", "mean")]
                        + [row.ill_conditioned, row.frames])
    return table.getvalue()


def write_summary(summary: Sequence[TargetSummary], out: Path) -> tuple[Path, Path]:
    """``out/summary.json`` and ``out/summary.csv``, which appear together (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "summary.json", out / "summary.csv"
    with AtomicGroup(force=True) as group:  # a rerun updates the summary of the same folder
        group.add(json_path).write_text(json.dumps(summary_document(summary), indent=2) + "\n")
        group.add(csv_path).write_text(summary_csv(summary))
    return json_path, csv_path


def _json(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _cell(value: float) -> str:
    return f"{value:.5f}" if math.isfinite(value) else "nan"
