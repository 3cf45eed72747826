"""Evaluating a collection of tracks: score each one, write museval's JSON, summarize.

A track's targets are scored the way museval's ``eval_mus_track`` scores them, so the numbers are
museval's: when both ``vocals`` and ``accompaniment`` are estimated they form one BSSEval problem
of their own, and every other target is scored jointly with the rest (the vocals included);
otherwise all estimated targets form one problem. Frames are 1 s long and 1 s apart.

Results go to ``OUT/<subset>/<track>.json`` for MUSDB18 (museval's layout, which its ``EvalStore``
reads) and ``OUT/<track>.json`` for a track folder. A track whose file exists is read back instead
of scored again unless ``force``, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.targets import ACCOMPANIMENT, VOCALS
from ..data.tracks import TrackCollection
from ..errors import WaveUNetError
from .bss_eval import BACKENDS, CRITERIA, Conditioning, evaluate_images, silent_sources
from .scores import TargetConditioning, TrackScores, json_number, global_sdr, read_scores, write_scores
from .summary import TargetSummary, frame_median, summarize, write_summary
from .threads import parallel_evaluations
from .tracks import (ReferenceTrack, available_targets, load_reference, read_estimates, select_tracks,
                     separate_track)

#: BSSEval frame length and hop in seconds (SiSEC 2018, museval's defaults)
WINDOW_SECONDS = 1.0
HOP_SECONDS = 1.0

#: gives the estimates of a loaded reference track: {target: [channels, time]}
Estimator = Callable[[ReferenceTrack], dict[str, torch.Tensor]]


@dataclass
class EvaluationConfig:
    """How to score: where results go, which backend, how many tracks at once, whether to redo."""

    out: Path
    backend: str = "fast"
    jobs: int = 1
    force: bool = False
    device: str | None = None  # torch device of the fast backend; None: CPU

    def __post_init__(self):
        self.out = Path(self.out)
        if self.backend not in BACKENDS:
            raise WaveUNetError(f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.jobs < 1:
            raise WaveUNetError(f"jobs {self.jobs}: need at least 1")


def score_track(reference: ReferenceTrack, estimates: dict[str, torch.Tensor], backend: str = "fast",
                device: str | None = None) -> TrackScores:
    """BSSEval v4 scores of the estimated targets of one track, grouped as museval groups them;
    with each target's global SDR (uSDR) and, for the fast backend, its conditioning."""
    targets = [target for target in reference.targets if target in estimates]
    paired = VOCALS in targets and ACCOMPANIMENT in targets
    problems = []
    joint = [target for target in targets if target != ACCOMPANIMENT] if paired else targets
    if len(joint) >= 2:
        problems.append((joint, [t for t in joint if not (paired and t == VOCALS)]))
    elif not paired:
        raise WaveUNetError(f"{reference.location}: only {', '.join(targets) or 'no target'} estimated; "
                            f"BSSEval needs two or more targets (or vocals and accompaniment)")
    if paired:
        problems.append(([VOCALS, ACCOMPANIMENT], [VOCALS, ACCOMPANIMENT]))

    window = int(WINDOW_SECONDS * reference.sample_rate)
    hop = int(HOP_SECONDS * reference.sample_rate)
    scored: dict[str, dict[str, list[float]]] = {}
    conditioning: dict[str, TargetConditioning] = {}
    for group, kept in problems:
        refs = torch.stack([reference.targets[t] for t in group]).transpose(1, 2)  # [S, time, channels]
        ests = torch.stack([estimates[t] for t in group]).transpose(1, 2)
        _refuse_silence(reference, group, refs, ests)
        result = evaluate_images(refs.double().numpy(), ests.double().numpy(), window, hop,
                                 backend=backend, device=device)
        sdr, isr, sir, sar = (np.asarray(m) for m in result.scores)
        for i, target in enumerate(group):
            if target in kept:
                scored[target] = {"SDR": sdr[i].tolist(), "SIR": sir[i].tolist(),
                                  "ISR": isr[i].tolist(), "SAR": sar[i].tolist()}
                if result.conditioning is not None:
                    conditioning[target] = target_conditioning(result.conditioning, i)
    usdr = {target: global_sdr(reference.targets[target], estimates[target]) for target in scored}
    return TrackScores(reference.name, scored, WINDOW_SECONDS, HOP_SECONDS, usdr, conditioning)


def target_conditioning(conditioning: Conditioning, source: int) -> TargetConditioning:
    """Source ``source``'s share of a problem's :class:`~.bss_eval.Conditioning`, for its JSON."""
    frames = []
    for t, ill in enumerate(conditioning.ill_conditioned[source]):
        if not ill:
            frames.append(None)
            continue
        sensitivity = {name: json_number(round(float(conditioning.sensitivity[m, source, t]), 5))
                       for m, name in enumerate(CRITERIA) if name != "SDR"}
        unresolved = [name for m, name in enumerate(CRITERIA) if conditioning.unresolved[m, source, t]]
        frames.append({"sensitivity_dB": sensitivity, "unresolved": unresolved})
    return TargetConditioning(condition=float(conditioning.condition[source]),
                              own_condition=float(conditioning.own_condition[source]),
                              regularized=bool(conditioning.regularized[source]),
                              own_regularized=bool(conditioning.own_regularized[source]), frames=frames)


def _refuse_silence(reference: ReferenceTrack, group, refs, ests) -> None:
    for kind, signals in (("reference", refs), ("estimate", ests)):
        silent = silent_sources(signals)
        if bool(silent.any()):
            target = group[int(silent.nonzero()[0, 0])]
            raise WaveUNetError(f"{reference.location}: the {target} {kind} is silent throughout; "
                                f"BSSEval (museval) cannot score a silent source")


def scores_path(out: Path, track: str, subset: str | None) -> Path:
    """``out/<subset>/<track>.json`` (museval's layout) or ``out/<track>.json`` without a subset."""
    return (out / subset if subset else out) / f"{track}.json"


@dataclass
class EvaluationResult:
    scores: list[TrackScores]
    summary: list[TargetSummary]
    scored: int  # tracks scored in this run (the others were read back)
    files: tuple[Path, Path]  # summary.json, summary.csv


def evaluate_collection(collection: TrackCollection, indices: Sequence[int], targets: Sequence[str],
                        estimator: Estimator, config: EvaluationConfig,
                        echo: Callable[[str], None] = print) -> EvaluationResult:
    """Score tracks ``indices`` of ``collection``, write their JSON and the summary.

    Tracks are decoded and estimated one after another here (a model is not shared across
    threads); up to ``config.jobs`` of them are scored at once by worker threads, each on its
    share of torch's CPU threads (:mod:`.threads`). A failing track stops the run after the tracks
    in flight are written.
    """
    results: dict[int, TrackScores] = {}
    todo = []
    for index in indices:
        name = collection.track_names[index]
        path = scores_path(config.out, name, collection.subset_of(index))
        if path.exists() and not config.force:
            results[index] = read_scores(path, name)
            echo(f"{name}: scores exist in {path}, skipped (use --force to redo)")
        else:
            todo.append(index)

    def score_and_write(reference: ReferenceTrack, estimates) -> TrackScores:
        scores = score_track(reference, estimates, config.backend, config.device)
        write_scores(scores, scores_path(config.out, reference.name, reference.subset))
        # as stored (5 decimals, infinities as NaN), so that a resumed run summarizes the same numbers
        return TrackScores.from_museval(scores.track, scores.to_museval())

    def collect(index: int, future: Future, started: float) -> None:
        results[index] = scores = future.result()
        medians = "  ".join(f"{t} {frame_median(m['SDR']):.2f}" for t, m in scores.targets.items())
        echo(f"[{len(results)}/{len(indices)}] {scores.track}: median SDR {medians} dB "
             f"({time.time() - started:.1f} s)")

    with parallel_evaluations(config.jobs), ThreadPoolExecutor(max_workers=config.jobs) as pool:
        pending: deque[tuple[int, Future, float]] = deque()
        for index in todo:
            started = time.time()
            reference = load_reference(collection, index, targets)
            estimates = estimator(reference)
            pending.append((index, pool.submit(score_and_write, reference, estimates), started))
            while len(pending) > config.jobs:  # bound the decoded tracks held in memory
                collect(*pending.popleft())
        while pending:
            collect(*pending.popleft())

    ordered = [results[index] for index in indices]
    summary = summarize(ordered)
    files = write_summary(summary, config.out)
    return EvaluationResult(ordered, summary, len(todo), files)


def evaluate_estimates(estimates_dir: str | Path, collection: TrackCollection, config: EvaluationConfig,
                       tracks: Sequence[str] | None = None,
                       echo: Callable[[str], None] = print) -> EvaluationResult:
    """Score the files ``estimates_dir/<track>/<target>.wav`` against ``collection``.

    Without ``tracks``, every folder of ``estimates_dir`` (in whichever subset of the collection
    holds its track); a folder named after no track is an error, as is a folder without any.
    """
    estimates_dir = Path(estimates_dir)
    if not estimates_dir.is_dir():
        raise WaveUNetError(f"{estimates_dir}: estimates folder not found")
    if tracks:
        indices = select_tracks(collection, tracks)
    else:
        folders = sorted(f.name for f in estimates_dir.iterdir() if f.is_dir() and not f.name.startswith("."))
        index = {name: i for i, name in enumerate(collection.track_names)}
        unknown = [name for name in folders if name not in index]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise WaveUNetError(f"{estimates_dir / unknown[0]}: no track of that name in "
                                f"{collection.description}{more}")
        if not folders:
            raise WaveUNetError(f"{estimates_dir}: no folder named after a track of {collection.description}")
        indices = sorted(index[name] for name in folders)
    return evaluate_collection(collection, indices, available_targets(collection),
                               lambda reference: read_estimates(estimates_dir / reference.name, reference),
                               config, echo)


def evaluate_model(model, collection: TrackCollection, config: EvaluationConfig,
                   tracks: Sequence[str] | None = None, device: str | None = None,
                   echo: Callable[[str], None] = print) -> EvaluationResult:
    """Separate each track's mixture with ``model`` and score every target it estimates that the
    collection has (``accompaniment`` included)."""
    # in the collection's order, which is museval's (vocals, drums, bass, other, accompaniment)
    targets = [target for target in available_targets(collection) if target in model.config.sources]
    if not targets:
        raise WaveUNetError(f"{collection.description}: has none of the model's sources "
                            f"({', '.join(model.config.sources)})")
    return evaluate_collection(collection, select_tracks(collection, tracks), targets,
                               lambda reference: separate_track(model, reference, device), config, echo)
