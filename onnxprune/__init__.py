"""onnxprune: structured channel pruning of ONNX models, from any framework.

import onnxprune
model, report = onnxprune.prune("model.onnx", onnxprune.PruneConfig(ratio=0.5))
print(report.to_text())
"""

from .analysis_report import AnalysisReport, analyze
from .config import PruneConfig
from .errors import BadInputError, OnnxPruneError, UnsupportedModelError, ValidationError
from .pipeline import Plan, make_plan, prune, prune_file
from .report import PruneReport

__version__ = "0.1.0"

__all__ = [
    "AnalysisReport",
    "BadInputError",
    "OnnxPruneError",
    "Plan",
    "PruneConfig",
    "PruneReport",
    "UnsupportedModelError",
    "ValidationError",
    "__version__",
    "analyze",
    "make_plan",
    "prune",
    "prune_file",
]
