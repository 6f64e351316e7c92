"""What a run leaves for a person to read: prediction files, evaluation reports, training curves.

Three callbacks that the command line always adds (configured under ``predictions``,
``evaluation`` and ``training_report``) decide what to write; ``plots`` draws the figures.
Files go beside the run, into the logger's folder ``logs/<experiment>/version_N/``; figures
also go to TensorBoard.
"""

from .evaluation import EvaluationReport
from .predictions import PredictionWriter, write_predictions
from .training_report import TrainingReport, read_curves

__all__ = [
    "EvaluationReport",
    "PredictionWriter",
    "TrainingReport",
    "read_curves",
    "write_predictions",
]
