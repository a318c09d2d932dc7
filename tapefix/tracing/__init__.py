"""Run-time diagnosis of broken gradients: ``tapefix-trace SCRIPT`` and ``tapefix.trace()``.

While a GradientTape records, the trace watches what happens to the tensors it traces (conversions to
NumPy or Python, ops with no gradient, integer casts, variables assigned or created), and at each
``tape.gradient`` / ``jacobian`` / ``batch_jacobian`` call explains every None, NaN, inf or exception it
returns, at the line that caused it, in the static rules' codes. TensorFlow is imported only when a trace
starts; importing this package does not import it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, List, Optional, Sequence, TextIO

from tapefix.tracing.model import Diagnostic, GradientCall, Place, SourceResult
from tapefix.tracing.report import StaticFixes, diagnostics, exit_code, render_text

__all__ = ["Diagnostic", "GradientCall", "Place", "SourceResult", "Trace", "trace"]


class Trace:
    """The result of a traced block: every gradient call and what explains it."""

    def __init__(self) -> None:
        self.calls: List[GradientCall] = []
        self.notes: List[str] = []
        self.failed = False  #: the traced code raised before any gradient call

    @property
    def diagnostics(self) -> List[Diagnostic]:
        return diagnostics(self.calls)

    @property
    def exit_code(self) -> int:
        return exit_code(self.calls, self.failed)

    def text(self) -> str:
        return render_text(self.calls, self.failed, self.notes)


@contextlib.contextmanager
def trace(
    *,
    eager: bool = False,
    report: Optional[TextIO] = None,
    roots: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    fixes: bool = True,
) -> Iterator[Trace]:
    """Diagnose the gradient calls made in the block::

        with tapefix.trace() as t:
            train_step(batch)
        t.diagnostics   # also printed to sys.stderr when something was explained

    ``eager`` runs tf.functions eagerly for the block, so breaks inside them are visible; ``roots`` are the
    folders of the user's own code (default: the folder of the file that opened the block, and any
    notebook cell); ``report`` is where the text report goes when something was explained (default
    sys.stderr; pass ``open(os.devnull, "w")`` to silence it); ``steps`` stops the block, by raising
    ``StopProgram``, after that many gradient calls. Nothing stays patched after the block.
    """
    from tapefix.tracing import recorder as rec_module

    if roots is None:
        caller = sys._getframe(2).f_code.co_filename
        roots = [os.path.dirname(os.path.abspath(caller))] if not caller.startswith("<") else [os.getcwd()]
    result = Trace()
    static = StaticFixes() if fixes else None

    def on_call(call: GradientCall) -> None:
        if static is not None:
            for diagnostic in call.diagnostics:
                static.attach(diagnostic)
        result.calls.append(call)

    recorder = rec_module.Recorder(roots, steps=steps, on_call=on_call)
    previous_eager = None
    if eager:
        import tensorflow as tf

        previous_eager = tf.config.functions_run_eagerly()
        tf.config.run_functions_eagerly(True)
        result.notes.append("note: tf.function bodies run eagerly (--eager), so breaks inside them are visible")
    rec_module.install(recorder)
    try:
        yield result
    except rec_module.StopProgram:
        pass
    except BaseException:
        if not result.calls:
            result.failed = True
        raise
    finally:
        rec_module.uninstall(recorder)
        if previous_eager is not None:
            import tensorflow as tf

            tf.config.run_functions_eagerly(previous_eager)
        if result.diagnostics:
            (report or sys.stderr).write(result.text())
