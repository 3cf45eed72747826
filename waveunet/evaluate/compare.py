"""Comparing separation systems from their museval scores, as the SiSEC 2018 report does.

Each run is a folder of museval JSON files, one per track (written by ``waveunet evaluate``, by
museval's ``eval_mus_track``, or anyone else's): every ``*.json`` below it but our own summaries.
Per target, each system is reduced to its median over tracks of each track's median over frames
(cSDR for SDR); systems are compared pairwise by a Wilcoxon signed-rank test on the per-track SDR
medians of the tracks both scored (paired by track), and drawn as SiSEC draws them: one box of
per-track SDRs per system, per target, systems ordered by their median.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import AtomicGroup, make_folders, remove_empty_folders
from ..errors import WaveUNetError
from .scores import TrackScores
from .summary import METRICS, frame_median

#: files in a run folder that are ours, not a track's scores
NOT_TRACKS = ("summary.json", "compare.json")


class UnpairedTracksWarning(UserWarning):
    """Tracks scored by only some of the compared systems (left out of the paired tests)."""


@dataclass
class Run:
    """One system's scores: ``tracks[name]`` from the file ``files[name]``."""

    name: str
    folder: Path
    tracks: dict[str, TrackScores]
    files: dict[str, Path]

    @property
    def targets(self) -> list[str]:
        seen = {}
        for scores in self.tracks.values():
            seen.update(dict.fromkeys(scores.targets))
        return list(seen)

    def track_medians(self, target: str, metric: str) -> dict[str, float]:
        """Each track's median over frames of ``metric`` for ``target``."""
        return {name: frame_median(scores.targets[target][metric])
                for name, scores in self.tracks.items() if target in scores.targets}


@dataclass
class PairedTest:
    """Wilcoxon signed-rank test of ``a`` against ``b`` on one target's per-track SDR medians."""

    target: str
    a: str
    b: str
    tracks: int
    median_difference: float  # median over tracks of (a − b), dB
    statistic: float
    p_value: float


@dataclass
class Comparison:
    runs: list[Run]
    targets: list[str]
    medians: dict[str, dict[str, dict[str, float]]]  # target -> system -> metric -> median over tracks
    tests: list[PairedTest]
    unpaired: dict[str, list[str]]  # target -> tracks not scored by every system


def load_run(folder: str | Path) -> Run:
    """Read every museval JSON under ``folder`` (recursively), checked against museval's schema."""
    import jsonschema
    import museval

    folder = Path(folder)
    if not folder.is_dir():
        raise WaveUNetError(f"{folder}: run folder not found")
    schema = json.loads((Path(museval.__file__).parent / "musdb.schema.json").read_text())
    files = sorted(path for path in folder.rglob("*.json")
                   if path.name not in NOT_TRACKS and not path.name.startswith("."))
    if not files:
        raise WaveUNetError(f"{folder}: no museval score files (*.json) in this run folder")
    tracks, sources = {}, {}
    for path in files:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise WaveUNetError(f"{path}: not a JSON file ({error})") from None
        try:
            jsonschema.validate(document, schema)
            if not isinstance(document, dict) or not document.get("targets"):
                raise jsonschema.ValidationError("no 'targets'")
            scores = TrackScores.from_museval(path.stem, document)
        except (jsonschema.ValidationError, KeyError, TypeError, ValueError, IndexError) as error:
            reason = error.message if isinstance(error, jsonschema.ValidationError) else f"missing {error}"
            raise WaveUNetError(f"{path}: not a museval score file ({reason.splitlines()[0]})") from None
        if path.stem in tracks:
            raise WaveUNetError(f"{path}: track {path.stem!r} scored twice in this run (also {sources[path.stem]})")
        tracks[path.stem], sources[path.stem] = scores, path
    return Run(folder.name, folder, tracks, sources)


def compare(folders: Sequence[str | Path]) -> Comparison:
    """Load the runs and compare them. Runs must score the same targets; tracks scored by only
    some of them are left out of the paired tests, with an :class:`UnpairedTracksWarning`."""
    if len(folders) < 2:
        raise WaveUNetError("compare needs at least two runs")
    runs = [load_run(folder) for folder in folders]
    _name_uniquely(runs)
    targets = runs[0].targets
    for run in runs[1:]:
        if set(run.targets) != set(targets):
            raise WaveUNetError(f"{run.folder}: scores targets {', '.join(run.targets)} but {runs[0].folder} "
                                f"scores {', '.join(targets)}; compare runs of the same targets")
    medians = {target: {run.name: {metric: _median(run.track_medians(target, metric).values()) for metric in METRICS}
                        for run in runs} for target in targets}
    tests, unpaired = [], {}
    for target in targets:
        per_run = [run.track_medians(target, "SDR") for run in runs]
        everywhere = set.intersection(*(set(values) for values in per_run))
        scored = set.union(*(set(values) for values in per_run))
        if scored - everywhere:
            unpaired[target] = sorted(scored - everywhere)
        for (i, a), (j, b) in combinations(enumerate(runs), 2):
            tests.append(paired_test(target, a.name, b.name, per_run[i], per_run[j]))
    if unpaired:
        names = sorted(set().union(*unpaired.values()))
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.warn(UnpairedTracksWarning(f"{len(names)} track(s) not scored by every run, left out of the "
                                            f"paired tests: {listed}"), stacklevel=2)
    return Comparison(runs, targets, medians, tests, unpaired)


def paired_test(target: str, a: str, b: str, scores_a: dict[str, float], scores_b: dict[str, float]) -> PairedTest:
    """scipy's Wilcoxon signed-rank test (two-sided) of the per-track scores both runs have."""
    from scipy.stats import wilcoxon

    tracks = sorted(name for name in scores_a.keys() & scores_b.keys()
                    if math.isfinite(scores_a[name]) and math.isfinite(scores_b[name]))
    x = np.array([scores_a[name] for name in tracks])
    y = np.array([scores_b[name] for name in tracks])
    if len(tracks) == 0 or np.all(x == y):
        statistic = p_value = math.nan  # no differences to rank
    else:
        result = wilcoxon(x, y)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    difference = float(np.median(x - y)) if len(tracks) else math.nan
    return PairedTest(target, a, b, len(tracks), difference, statistic, p_value)


def _median(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.median(values)) if values else math.nan


def _name_uniquely(runs: list[Run]) -> None:
    """Runs named by their folders; folders of the same name get their parents' names too."""
    names = [run.name for run in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.folder.parent.name}/{run.folder.name}"
    if len({run.name for run in runs}) < len(runs):
        for i, run in enumerate(runs):
            run.name = f"{i + 1}:{run.name}"


def format_comparison(comparison: Comparison) -> str:
    """Per target, the median table; then the paired tests."""
    lines = []
    width = max(len(run.name) for run in comparison.runs) + 2
    for target in comparison.targets:
        lines.append(f"{target}:")
        lines.append(f"  {'system':<{width}}{'tracks':>7}" + "".join(f"{m:>9}" for m in METRICS))
        for run in comparison.runs:
            count = len(run.track_medians(target, "SDR"))
            cells = "".join(f"{comparison.medians[target][run.name][m]:>9.3f}" for m in METRICS)
            lines.append(f"  {run.name:<{width}}{count:>7}{cells}")
    lines.append("Wilcoxon signed-rank tests on per-track SDR (median over frames), paired by track:")
    for test in comparison.tests:
        lines.append(f"  {test.target}: {test.a} vs {test.b}: {test.tracks} tracks, median difference "
                     f"{test.median_difference:+.3f} dB, p = {test.p_value:.3g}")
    return "\n".join(lines)


def comparison_document(comparison: Comparison) -> dict:
    def number(value):
        return value if math.isfinite(value) else None

    return {
        "runs": {run.name: str(run.folder) for run in comparison.runs},
        "aggregation": "median over tracks of each track's median over frames",
        "medians": {target: {system: {m: number(v) for m, v in metrics.items()} for system, metrics in systems.items()}
                    for target, systems in comparison.medians.items()},
        "tests": [{"target": t.target, "a": t.a, "b": t.b, "metric": "SDR", "test": "wilcoxon signed-rank, two-sided",
                   "tracks": t.tracks, "median_difference": number(t.median_difference),
                   "statistic": number(t.statistic), "p_value": number(t.p_value)} for t in comparison.tests],
        "unpaired_tracks": comparison.unpaired,
    }


def comparison_csv(comparison: Comparison) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["target", "system", "tracks"] + [f"{m}_median" for m in METRICS])
    for target in comparison.targets:
        for run in comparison.runs:
            writer.writerow([target, run.name, len(run.track_medians(target, "SDR"))]
                            + [f"{comparison.medians[target][run.name][m]:.5f}" for m in METRICS])
    return table.getvalue()


#: the box plot's size: inches wide, and per target inches per system plus a margin
FIGURE_WIDTH, SYSTEM_HEIGHT, TARGET_MARGIN, DPI = 8.0, 0.45, 0.9, 100


def figure_size(n_targets: int, n_systems: int) -> tuple[int, int]:
    """The box plot's size in pixels (width, height)."""
    height = n_targets * (SYSTEM_HEIGHT * n_systems + TARGET_MARGIN)
    return round(FIGURE_WIDTH * DPI), round(height * DPI)


def boxplot_png(comparison: Comparison) -> bytes:
    """SiSEC-style box plots: per target, one horizontal box of per-track SDRs per system,
    systems ordered by median (best on top), the median written beside each box."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_targets, n_systems = len(comparison.targets), len(comparison.runs)
    width, height = figure_size(n_targets, n_systems)
    figure, axes = plt.subplots(n_targets, 1, figsize=(width / DPI, height / DPI), dpi=DPI, squeeze=False)
    for axis, target in zip(axes[:, 0], comparison.targets):
        data = [(run.name, [v for v in run.track_medians(target, "SDR").values() if math.isfinite(v)])
                for run in comparison.runs]
        data.sort(key=lambda item: np.median(item[1]) if item[1] else -np.inf)  # best last: on top
        # horizontal boxes: `orientation` from matplotlib 3.10, `vert` before it
        horizontal = {"orientation": "horizontal"} if _matplotlib_version() >= (3, 10) else {"vert": False}
        boxes = axis.boxplot([values or [np.nan] for _, values in data], widths=0.6, **horizontal,
                             patch_artist=True, showfliers=True,
                             medianprops={"color": "black", "linewidth": 1.5},
                             flierprops={"marker": ".", "markersize": 3})
        for patch in boxes["boxes"]:
            patch.set_facecolor("#9ecae1")
        axis.set_yticks(range(1, len(data) + 1), [name for name, _ in data])
        for position, (_, values) in enumerate(data, start=1):
            if values:
                axis.annotate(f"{np.median(values):.2f}", (np.median(values), position + 0.33),
                              ha="center", va="bottom", fontsize=7)
        axis.set_title(f"{target}", loc="left", fontsize=10, fontweight="bold")
        axis.set_xlabel("SDR (dB), per track: median over 1 s frames")
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _matplotlib_version() -> tuple[int, int]:
    import matplotlib

    major, minor = matplotlib.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def write_comparison(comparison: Comparison, out: str | Path, force: bool = False) -> list[Path]:
    """``compare.json``, ``compare.csv`` and ``boxplot.png`` in ``out``; all rendered first, then
    written together (atomically), so a failure leaves nothing behind."""
    out = Path(out)
    png = boxplot_png(comparison)
    document = json.dumps(comparison_document(comparison), indent=2) + "\n"
    table = comparison_csv(comparison)
    paths = [out / "compare.json", out / "compare.csv", out / "boxplot.png"]
    created = make_folders(out)
    try:
        with AtomicGroup(force=force) as group:
            group.add(paths[0]).write_text(document)
            group.add(paths[1]).write_text(table)
            group.add(paths[2], suffix=".png").write_bytes(png)
    except BaseException:
        remove_empty_folders(created)
        raise
    return paths
