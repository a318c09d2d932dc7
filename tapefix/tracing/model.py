"""The values a run-time trace produces: places in source, what happened to tensors, and the diagnosis of
each gradient call. Plain dataclasses: no TensorFlow here, so reports can be built, printed and compared
in a process that never imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass(frozen=True)
class Place:
    """A place in a source file: 1-based line, 1-based column; ``text`` is the expression there (or the
    line) as written."""

    path: str
    line: int
    column: int = 1
    text: str = ""
    function: str = ""

    def label(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass
class SourceResult:
    """What one gradient source got back."""

    name: str
    status: str  #: "present", "none", "nonfinite", or "raised"
    norm: Optional[float] = None


@dataclass
class Diagnostic:
    """One cause of a broken gradient, at the line that caused it."""

    code: str  #: a rule code (TF104) or "" for a plain cause
    message: str  #: what happened at ``place``
    place: Place  #: in the user's code
    explanation: List[str] = field(default_factory=list)  #: the lines printed under the event
    kind: str = "none"  #: "none", "nonfinite" or "raise": what it explains
    sources: Tuple[str, ...] = ()  #: the sources whose gradient it explains
    target: str = ""
    gradient_at: Optional[Place] = None  #: the gradient call it explains
    library: Optional[Place] = None  #: where it happened inside a library, when it did
    fix: str = ""  #: the static rule's fix for this line, described
    fix_safety: str = ""


@dataclass
class GradientCall:
    """One tape.gradient / jacobian / batch_jacobian call and what it returned."""

    index: int  #: 1-based, in the order the program made them
    kind: str  #: "gradient", "jacobian" or "batch_jacobian"
    place: Optional[Place]
    target: str
    sources: List[SourceResult]
    mode: str = "eager"  #: "eager" or "graph" (inside a tf.function while it is traced)
    error: str = ""  #: the exception it raised, if it did
    diagnostics: List[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and all(s.status == "present" for s in self.sources)
