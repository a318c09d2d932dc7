"""TF122: ``tf.math.acos`` / ``tf.math.asin`` of a tensor that can reach ±1, whose gradient is infinite there."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.expressions import first_argument, is_pure, names_in, numeric_literal
from tapefix.analysis.tfops import ACOS_ASIN, BOUNDING, WHERE
from tapefix.analysis.uses import feeds_computation
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Forward, Safety


class AcosAtOne(Rule):
    """
    ## What it does
    Finds, while a tape records, `tf.math.acos(c)` and `tf.math.asin(c)` of a tensor on the gradient path
    that nothing keeps inside (-1, 1): no `tf.clip_by_value`, `tf.minimum` / `tf.maximum`, or factor
    below 1. The usual case is the angle between two vectors, `tf.math.acos(cosine_similarity)`.

    ## Why is this bad?
    The derivative of `acos` and `asin` is infinite at ±1: `tf.math.acos([1., 0.5])` has gradient
    `[-inf, -1.15]` in eager mode, `tf.function` and XLA alike (TF 2.21). A cosine similarity reaches
    exactly 1 for parallel vectors (an embedding compared with itself, a converged model), and float
    rounding pushes it just past 1, where the forward value is NaN. One such lane turns the update into
    inf or NaN.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        angle = tf.math.acos(cosine)
    ```

    ## Use instead
    A double-where: the inner `tf.where` feeds `acos` a harmless 0 outside (-1, 1), and the outer one
    returns the original value there through `tf.stop_gradient`, so the gradient at ±1 is 0.
    ```python
    with tf.GradientTape() as tape:
        angle = tf.where(tf.abs(cosine) < 1, tf.math.acos(tf.where(tf.abs(cosine) < 1, cosine, 0.0)), \
tf.stop_gradient(tf.math.acos(cosine)))
    ```
    The common alternative, `tf.math.acos(tf.clip_by_value(c, -1 + eps, 1 - eps))`, changes the forward
    value at 1 from 0 to 4.88e-4 (float32, eps 1e-7) and is not what this rule offers.

    ## Fix safety
    Unsafe. The forward values are bit-identical on every input, NaN and inf included (checked on float32
    and float64), and the gradient is unchanged wherever it was finite. At exactly ±1 the gradient
    becomes 0 instead of ±inf (a valid subgradient of the angle at its minimum and maximum), and past
    ±1, where the forward value is NaN, 0 instead of NaN. Just inside ±1 the gradient is still as large
    as the mathematics says; whether to clamp instead is the user's choice. The argument is repeated,
    so the fix is offered only when it is free of side effects.

    ## References
    - research/idioms.md, idiom 30 (E7); tensorflow#57786, tensorflow#56305, keras#3941
    """

    CODE = "TF122"
    NAME = "acos-at-one"
    MESSAGE = "acos/asin of a tensor that can reach ±1 (a cosine similarity): infinite gradient there"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

c = tf.Variable([1.0, 0.5])
eps = 1e-7
with tf.GradientTape() as tape:
    a = tf.math.acos(tf.clip_by_value(c, -1.0 + eps, 1.0 - eps))
    bounded = tf.minimum(tf.maximum(c, -0.999), 0.999)
    b = tf.math.asin(bounded)
    d = tf.math.acos(0.999 * c)
    e = tf.math.acos(tf.constant(0.5))
f = tf.math.acos(c)
""",
            note="clamped arguments, a constant, code after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

c = tf.Variable([1.0, 0.5])
with tf.GradientTape() as tape:
    angle = tf.where(tf.abs(c) < 1, tf.math.acos(tf.where(tf.abs(c) < 1, c, 0.0)), tf.stop_gradient(tf.math.acos(c)))
""",
            note="the double-where form already",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

a = tf.Variable([1.0, 0.0])
b = tf.Variable([1.0, 0.0])
with tf.GradientTape() as tape:
    cosine = tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b))
    angle = tf.math.acos(cosine)
""",
            """\
import tensorflow as tf

a = tf.Variable([1.0, 0.0])
b = tf.Variable([1.0, 0.0])
with tf.GradientTape() as tape:
    cosine = tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b))
    angle = tf.where(tf.abs(cosine) < 1, tf.math.acos(tf.where(tf.abs(cosine) < 1, cosine, 0.0)), \
tf.stop_gradient(tf.math.acos(cosine)))
""",
            note="the angle between two parallel vectors",
        ),
        Invalid(
            """\
import tensorflow as tf

c = tf.Variable([1.0, 0.5, -1.0])
with tf.GradientTape() as tape:
    y = tf.asin(c) + tf.math.acos(c)
""",
            """\
import tensorflow as tf

c = tf.Variable([1.0, 0.5, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(tf.abs(c) < 1, tf.asin(tf.where(tf.abs(c) < 1, c, 0.0)), tf.stop_gradient(tf.asin(c))) + \
tf.where(tf.abs(c) < 1, tf.math.acos(tf.where(tf.abs(c) < 1, c, 0.0)), tf.stop_gradient(tf.math.acos(c)))
""",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 0.5])
with tf.GradientTape() as tape:
    angle = tf.math.acos(model(x))
""",
            None,
            note="the argument calls a model: the rewrite would call it four times",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        name = context.analysis.is_tf_call(node)
        if name not in ACOS_ASIN:
            return
        arg = first_argument(node, ("x",))
        if arg is None or not context.on_path(arg) or self._bounded(arg, frozenset()) or self._guarded_by_context(arg):
            return
        if not feeds_computation(context, node):
            return
        if len(node.args) != 1:
            self.report(node, no_fix_reason="extra arguments (name=): rewrite by hand with a double-where")
            return
        if not is_pure(arg, context.analysis):
            self.report(node, no_fix_reason="the argument has side effects or cost (a call); bind it to a name first")
            return
        tf, import_edits = context.tf()
        value = context.text(arg)
        inside = f"{tf}.abs({value}) < 1"
        start, end = context.span(node)
        arg_start, arg_end = context.span(arg)
        head, tail = context.source[start:arg_start], context.source[arg_end:end]
        original = context.source[start:end]
        text = f"{tf}.where({inside}, {head}{tf}.where({inside}, {value}, 0.0){tail}, {tf}.stop_gradient({original}))"
        self.report(
            node,
            edits=(context.replace(node, text), *import_edits),
            description="double-where: identical forward values, gradient 0 at ±1 instead of inf",
        )

    def _bounded(self, expr: cst.BaseExpression, seen: frozenset) -> bool:  # type: ignore[type-arg]
        """True when the author kept ``expr`` inside (-1, 1): a clamp, a factor below 1, a number, or a
        name whose every definition is one of those."""
        analysis = self.context.analysis
        if numeric_literal(expr) is not None:
            return True
        if isinstance(expr, cst.Call):
            return analysis.is_tf_call(expr) in BOUNDING
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Multiply):
            for side in (expr.left, expr.right):
                factor = numeric_literal(side)
                if factor is not None and abs(factor) < 1:
                    return True
            return False
        if isinstance(expr, cst.Name) and expr.value not in seen:
            definitions = analysis.definitions(expr.value, self.context.function)
            seen = seen | {expr.value}
            return bool(definitions) and all(self._bounded(d, seen) for d in definitions)
        return False

    def _guarded_by_context(self, arg: cst.BaseExpression) -> bool:
        """True inside ``tf.stop_gradient``, for an argument that is itself a ``tf.where`` (the fixed
        form), and in a branch of a ``tf.where`` whose condition tests the same names (TF113's trap)."""
        analysis = self.context.analysis
        if isinstance(arg, cst.Call) and analysis.is_tf_call(arg) in WHERE:
            return True
        arg_names = set(names_in(arg))
        for ancestor in self.context.ancestors:
            if not isinstance(ancestor, cst.Call):
                continue
            name = analysis.is_tf_call(ancestor)
            if name == "stop_gradient":
                return True
            if name in WHERE and ancestor.args and arg_names & set(names_in(ancestor.args[0].value)):
                return True
        return False
