"""tapefix: find and fix TensorFlow code whose gradients are silently broken."""

from typing import TYPE_CHECKING, Any

from tapefix.types import Config, Finding, Fix, Forward, Outcome, Safety, SourceError, SourceResult, Status, Verdict

if TYPE_CHECKING:
    from tapefix.engine import check_source, fix_source
    from tapefix.rule import Invalid, Rule, Valid

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
    "trace",
    "__version__",
]

#: what lives where among the names that need libcst, imported on first use (PEP 562): the command line
#: answers from its cache without loading the parser
_LAZY = {
    "check_source": "tapefix.engine",
    "fix_source": "tapefix.engine",
    "Rule": "tapefix.rule",
    "Valid": "tapefix.rule",
    "Invalid": "tapefix.rule",
    # the run-time trace: TensorFlow is imported only when a trace starts
    "trace": "tapefix.tracing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tapefix' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
