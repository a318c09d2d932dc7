"""What a source's text alone tells: whether it can hold code that runs under a tape, and which lines
silence which rules. No parse, and no libcst: a run whose files are all cached, or all pass this test,
never imports the parser."""

from __future__ import annotations

import re
from typing import Sequence

from tapefix.types import EntryPoint

#: ``# tapefix: ignore`` or ``# tapefix: ignore[TF101, TF103]``
SUPPRESSION = re.compile(r"#\s*tapefix:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_,\s]+)\])?")


def might_hold_tape(source: str) -> bool:
    """The cheap text test: a module that never names GradientTape holds no tape block."""
    return "GradientTape" in source


def might_run_under_tape(source: str, entry_points: Sequence[EntryPoint] = ()) -> bool:
    """The text test for a module in a project: it holds a tape block, passes a loss to Keras's
    ``compile`` or overrides its ``compute_loss``, or a tape elsewhere runs one of its functions
    (``entry_points``)."""
    return (
        bool(entry_points)
        or might_hold_tape(source)
        or "def compute_loss" in source
        or (".compile(" in source and compiles_custom_loss(source))
    )


# ``loss=`` in a ``compile(...)`` call, and the first characters of its value.
_COMPILE_LOSS = re.compile(r"\.compile\((?:[^()]|\([^()]*\))*?\bloss\s*=\s*([^\s,)]{0,9})", re.S)
_BUILTIN_LOSS = ("'", '"', "tf.", "keras.", "tf_keras.")


def compiles_custom_loss(source: str) -> bool:
    """Whether a ``compile(loss=...)`` call passes the module's own loss: not a string such as
    ``"mse"`` or a built-in ``tf.keras.losses...``, which hold none of the idioms tapefix fixes."""
    return any(not value.startswith(_BUILTIN_LOSS) for value in _COMPILE_LOSS.findall(source))
