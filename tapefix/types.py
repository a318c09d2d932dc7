"""Plain values that cross tapefix's function boundaries.

Frozen dataclasses and enums (and ``SourceError``, the one exception that crosses them); this module
imports nothing of tapefix, nor libcst: a run whose results all come from the cache never imports the
parser.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple


class Safety(str, enum.Enum):
    """How freely a fix may be applied (the ruff model)."""

    SAFE = "safe"  #: applied by default
    UNSAFE = "unsafe"  #: applied only with --unsafe-fixes; changes behaviour in a documented way
    DISPLAY_ONLY = "display-only"  #: shown, never applied


class Forward(str, enum.Enum):
    """What a fix does to forward values; the verifier checks exactly this."""

    EXACT = "exact"  #: bit-identical forward values, exact gradient
    ULP = "ulp"  #: within a few units in the last place (transcendental ops, reductions)
    STRAIGHT_THROUGH = "straight-through"  #: identical forward values, surrogate gradient
    SINGULAR = "singular"  #: identical except at the singular points (x == 0), where inf/nan become finite


@dataclass(frozen=True)
class Position:
    """A place in a source text: line is 1-based, column 0-based in code points."""

    line: int
    column: int


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] (code-point offsets) with ``text``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Fix:
    """One rewrite: its edits apply together or not at all."""

    edits: Tuple[Edit, ...]
    safety: Safety
    forward: Forward
    description: str


@dataclass(frozen=True)
class Finding:
    """One idiom found in one module."""

    code: str
    message: str
    start: Position
    end: Position
    start_offset: int
    end_offset: int
    fix: Optional[Fix] = None
    #: the finding is in a function reached from a tape only through a call; the function may also run
    #: outside any tape, so its fix is never safe
    through_call: bool = False
    #: why no fix is offered, when there is none
    no_fix_reason: str = ""


class Status(str, enum.Enum):
    """What happened to a finding in a run."""

    FIXED = "fixed"
    FIXABLE = "fixable"  #: a fix exists but was not applied (unsafe without --unsafe-fixes, or a dry run)
    MANUAL = "manual"  #: no fix: needs a human
    REJECTED = "rejected"  #: a fix exists but verification failed or could not run, so it was not applied


@dataclass(frozen=True)
class Verdict:
    """The verifier's word on one fix."""

    status: str  #: "verified", "failed" or "unverified"
    reason: str
    modes: Tuple[str, ...] = ()
    inputs: int = 0
    before: str = ""
    after: str = ""
    #: whose gradient was checked: "statement", "function", "tape block" (the whole block, the other fixes
    #: in it applied too) or "tape slice" (the block with the definitions it reads and its gradient calls)
    level: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "verified"


@dataclass(frozen=True)
class Outcome:
    """A finding as reported after a run: the finding, what happened to it, and the verdict if verified."""

    finding: Finding
    status: Status
    verdict: Optional[Verdict] = None


@dataclass(frozen=True)
class Config:
    """What to look for and what to apply."""

    select: Optional[Tuple[str, ...]] = None  #: rule codes or prefixes; None means all
    ignore: Tuple[str, ...] = ()
    unsafe_fixes: bool = False

    def enabled(self, code: str) -> bool:
        if self.select is not None and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)


@dataclass(frozen=True)
class EntryPoint:
    """A function that a tape runs through a call, and which of its arguments are on the gradient path.

    Going into the analysis of a module it names a function of that module that a tape in *another*
    module calls (``focal_loss``, or ``FocalLoss`` for a class); coming out of
    ``ModuleAnalysis.external_calls`` it names, as written, a callee the module does not define
    (``losses.focal_loss``).
    """

    function: str
    #: whether each positional argument is a tensor on the gradient path
    positional: Tuple[bool, ...] = ()
    #: keyword arguments that are tensors on the gradient path
    keywords: Tuple[str, ...] = ()
    #: what runs is the value ``function(...)`` returns: the nested def a loss factory returns, or the
    #: ``call`` of a Keras ``Loss`` class (``compile(loss=focal_loss(gamma=2))``, ``loss=FocalLoss()``)
    result: bool = False


@dataclass(frozen=True)
class SourceResult:
    """The result of fixing one source text."""

    source: str
    fixed_source: str
    outcomes: Tuple[Outcome, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return self.source != self.fixed_source


class SourceError(Exception):
    """The source cannot be analysed (it does not parse). ``line`` is 1-based when known."""

    def __init__(self, message: str, line: Optional[int] = None, column: Optional[int] = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


#: The verifier's hook: given a source and fixes proposed for it, a verdict per finding.
Verifier = Callable[[str, Sequence[Finding]], Sequence[Verdict]]


def applicable(finding: Finding, config: Config) -> bool:
    """Whether a run with ``config`` applies the finding's fix (unsafe ones only with unsafe fixes on)."""
    fix = finding.fix
    if fix is None or fix.safety is Safety.DISPLAY_ONLY:
        return False
    return fix.safety is Safety.SAFE or config.unsafe_fixes


class ExamplesError(Exception):
    """``--verify-with`` could not get the user's inputs; the message says why."""
