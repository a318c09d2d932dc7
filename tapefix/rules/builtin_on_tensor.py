"""TF108: Python's ``max``/``min`` of two values, or ``round``, on a tensor on the gradient path."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.syntax import has_star, is_number, keywords, positional
from tapefix.analysis.tfops import BUILTIN_MIN_MAX
from tapefix.analysis.uses import UseFinder, decide
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Forward, Safety


class BuiltinOnTensor(Rule):
    """
    ## What it does
    Finds Python's builtin `max(a, b)` and `min(a, b)` with two arguments, one of them a tensor on the
    gradient path, and `round(t)`, while a tape records and the result flows back into the
    computation.

    ## Why is this bad?
    `max(x, 0.0)` compares with Python's `>`: on a vector it raises `ValueError: The truth value of
    an array with more than one element is ambiguous`; on a scalar it returns either the tensor or the
    Python `0.0`, and when the constant wins a gradient call on it raises
    `TypeError: Cannot convert the argument type_value: 0.0 to a TensorFlow DType`. Inside
    `tf.function` it raises `OperatorNotAllowedInGraphError`. `round(t)` raises on TF 2.21
    (`EagerTensor object has no attribute 'astype'`).

    `max(t)` with one argument iterates over a 1-D tensor and keeps the gradient of the largest
    element; `abs`, `sum` and `pow` dispatch to TensorFlow: all of these are fine and left alone.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        margin = max(1.0 - score, 0.0)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        margin = tf.maximum(1.0 - score, 0.0)
    ```

    ## Fix safety
    `max(a, b)` becomes `tf.maximum(a, b)` and `min(a, b)` becomes `tf.minimum(a, b)`: the forward
    values are exact (Python's `max` returns one of its arguments; `tf.maximum` picks the same value
    elementwise; ties give the gradient to one side in both) and the gradient is TensorFlow's. The fix
    is **safe** when the other argument is a number literal or a tensor, and **unsafe** otherwise (a
    NumPy float64 array would be promoted by NumPy and rejected by TensorFlow). NaN is the one
    difference: `max(0.0, nan)` returns `0.0` because `nan > 0.0` is false, where `tf.maximum` returns
    NaN. `round(t)` is reported without a fix: rounding has no gradient (see TF101 for the
    straight-through form).

    ## References
    - research/idioms.md, idiom 19 (A7, F5)
    """

    CODE = "TF108"
    NAME = "builtin-on-tensor"
    MESSAGE = "Python builtin on a tensor on the gradient path: raises on vectors, or returns a Python constant"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 3.0, 2.0])
with tf.GradientTape() as tape:
    top = max(x)
    loss = top + abs(x[0]) + sum(x) + pow(x[1], 2)
    steps = max(int(tf.size(x)), 1)
    print("best", max(float(top), 0.0))
grads = tape.gradient(loss, x)
""",
            note="one-argument max over a 1-D tensor, abs, sum and pow keep the gradient; Python numbers",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 3.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    with tape.stop_recording():
        clipped = max(loss, 1.0)
grads = tape.gradient(loss, x)
worst = min(loss, 10.0)
""",
            note="under stop_recording and after the tape",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

score = tf.Variable([0.25, 1.5])
with tf.GradientTape() as tape:
    margin = tf.reduce_sum(2.0 * max(1.0 - score, 0.0) + min(score, 0.5))
grads = tape.gradient(margin, score)
""",
            """\
import tensorflow as tf

score = tf.Variable([0.25, 1.5])
with tf.GradientTape() as tape:
    margin = tf.reduce_sum(2.0 * tf.maximum(1.0 - score, 0.0) + tf.minimum(score, 0.5))
grads = tape.gradient(margin, score)
""",
        ),
        Invalid(
            """\
import numpy as np
from tensorflow import GradientTape, Variable

lower = np.float32(0.1)
w = Variable([0.5, -0.5])
with GradientTape() as g:
    loss = max(w[0] * w[1], lower)
grads = g.gradient(loss, w)
""",
            """\
import numpy as np
from tensorflow import GradientTape, Variable
import tensorflow as tf

lower = np.float32(0.1)
w = Variable([0.5, -0.5])
with GradientTape() as g:
    loss = tf.maximum(w[0] * w[1], lower)
grads = g.gradient(loss, w)
""",
            note="the other argument is a NumPy value: unsafe (NumPy and TensorFlow promote dtypes differently)",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(1.7)
with tf.GradientTape() as tape:
    loss = round(x) * x
grads = tape.gradient(loss, x)
""",
            None,
            note="round() raises on a tensor, and rounding has no gradient",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Name) or func.value not in ("max", "min", "round"):
            return
        context = self.context
        if context.analysis.qualify(func) is not None or context.analysis.definitions(func.value, context.function):
            return  # a name the module binds to something else
        args = positional(node)
        if has_star(node) or keywords(node):
            return
        if func.value == "round":
            if len(args) not in (1, 2) or not context.on_path(args[0].value):
                return
        elif len(args) != 2 or not any(context.on_path(a.value) for a in args):
            return
        report, fixable, _ = decide(UseFinder(context).of_node(node))
        if not report:
            return
        if func.value == "round":
            self.report(
                node,
                "round() of a tensor on the gradient path: raises on TF 2.21, and rounding has no gradient",
                no_fix_reason="rounding has no gradient; use tf.round with TF101's straight-through form by hand",
            )
            return
        if not fixable:
            self.report(node, no_fix_reason="the value also feeds non-TensorFlow code")
            return
        tf, import_edits = context.tf()
        safe = all(is_number(a.value) or self._tensor(a.value) for a in args)
        report_fix(
            self,
            node,
            (context.replace(func, f"{tf}.{BUILTIN_MIN_MAX[func.value]}"), *import_edits),
            f"{func.value}(a, b) -> {tf}.{BUILTIN_MIN_MAX[func.value]}(a, b)",
            Safety.SAFE if safe else Safety.UNSAFE,
            Forward.EXACT,
        )

    def _tensor(self, expr: cst.BaseExpression) -> bool:
        value = self.context.value(expr)
        return value.on_path and not value.numpy
