"""tapefix: find and fix TensorFlow code whose gradients are silently broken."""

from tapefix.engine import SourceError, check_source, fix_source
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Config, Finding, Fix, Forward, Outcome, Safety, SourceResult, Status, Verdict

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Finding",
    "Fix",
    "Forward",
    "Invalid",
    "Outcome",
    "Rule",
    "Safety",
    "SourceError",
    "SourceResult",
    "Status",
    "Valid",
    "Verdict",
    "check_source",
    "fix_source",
    "__version__",
]
