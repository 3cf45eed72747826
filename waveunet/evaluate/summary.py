"""One number per target and metric over a set of tracks.

SiSEC 2018 (and museval's ``EvalStore``) reduce each track to the median of its frames, then take
the median over tracks. The mean over tracks of the same per-track medians is reported beside it.
NaN frames (silent references or estimates) and NaN tracks are skipped, as pandas does.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import write_text_atomic
from .scores import TrackScores

#: metric order in the summary (museval's printout order)
METRICS = ("SDR", "SIR", "ISR", "SAR")
AGGREGATION = ("each track: median over its frames; then over tracks: median (SiSEC 2018) and mean; "
               "NaN frames and tracks skipped")


@dataclass
class TargetSummary:
    """``median[metric]`` / ``mean[metric]`` over ``tracks`` tracks of each track's frame median."""

    target: str
    tracks: int
    median: dict[str, float]
    mean: dict[str, float]


def summarize(scores: Sequence[TrackScores]) -> list[TargetSummary]:
    """Aggregate the tracks' scores per target, targets in order of first appearance."""
    per_track: dict[str, dict[str, list[float]]] = {}
    for track in scores:
        for target, metrics in track.targets.items():
            values = per_track.setdefault(target, {metric: [] for metric in METRICS})
            for metric in METRICS:
                values[metric].append(frame_median(metrics[metric]))
    return [
        TargetSummary(target=target, tracks=len(values["SDR"]),
                      median={m: _nan_reduce(np.nanmedian, values[m]) for m in METRICS},
                      mean={m: _nan_reduce(np.nanmean, values[m]) for m in METRICS})
        for target, values in per_track.items()
    ]


def frame_median(values: Sequence[float]) -> float:
    """The median of a track's frame scores, NaN frames skipped (NaN if all are)."""
    return _nan_reduce(np.nanmedian, values)


def _nan_reduce(reduce, values) -> float:
    # NaN (not a warning) when every value is NaN, as pandas' skipna aggregations give
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(reduce(np.asarray(values, dtype=float))) if len(values) else float("nan")


def format_table(summary: Sequence[TargetSummary]) -> str:
    """A fixed-width table: one row per target, median and mean of each metric in dB."""
    header = f"{'target':<16}{'tracks':>7}" + "".join(f"{m + ' median':>12}{m + ' mean':>10}" for m in METRICS)
    rows = [header]
    for row in summary:
        cells = "".join(f"{row.median[m]:>12.3f}{row.mean[m]:>10.3f}" for m in METRICS)
        rows.append(f"{row.target:<16}{row.tracks:>7}{cells}")
    return "\n".join(rows)


def write_summary(summary: Sequence[TargetSummary], out: Path) -> tuple[Path, Path]:
    """``out/summary.json`` and ``out/summary.csv`` (one row per target and metric), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "aggregation": AGGREGATION,
        "targets": {row.target: {"tracks": row.tracks, "median": row.median, "mean": row.mean}
                    for row in summary},
    }
    json_path, csv_path = out / "summary.json", out / "summary.csv"
    write_text_atomic(json_path, json.dumps(document, indent=2) + "\n")
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["target", "metric", "median", "mean", "tracks"])
    for row in summary:
        for metric in METRICS:
            writer.writerow([row.target, metric, f"{row.median[metric]:.5f}", f"{row.mean[metric]:.5f}", row.tracks])
    write_text_atomic(csv_path, table.getvalue())
    return json_path, csv_path
