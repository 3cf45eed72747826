"""Evaluation of source separation with BSSEval v4, the metrics of SiSEC 2018 and museval.

``bss_eval`` scores arrays; the track and summary layers score MUSDB18 or a folder of tracks and
write museval's per-track JSON plus a SiSEC-style summary.
"""

from .bss_eval import BACKENDS, BSSEvalScores, bss_eval

__all__ = ["BACKENDS", "BSSEvalScores", "bss_eval"]
