"""The inference log: every prediction recorded off the hot path, feedback, A/B analysis, batch scoring.

``lm.inference`` is an ``InferenceLog``; see docs/inference.md for the walkthrough.
"""

from loopml.serving.inference.ab import AbAnalysis, ArmResult, analyse_ab
from loopml.serving.inference.records import ArmStats, Feedback, InferenceRecord, RewardStats, arm_key
from loopml.serving.inference.scoring import score_dataset
from loopml.serving.inference.service import InferenceLog
from loopml.serving.inference.writer import LogWriter

__all__ = [
    "AbAnalysis",
    "ArmResult",
    "ArmStats",
    "Feedback",
    "InferenceLog",
    "InferenceRecord",
    "LogWriter",
    "RewardStats",
    "analyse_ab",
    "arm_key",
    "score_dataset",
]
