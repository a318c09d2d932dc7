"""TF121: ``tf.math.reduce_std`` on the gradient path, whose gradient is NaN where the values are all equal."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.expressions import is_pure
from tapefix.analysis.syntax import argument
from tapefix.analysis.tfops import REDUCE_STD
from tapefix.analysis.uses import feeds_computation
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Forward, Safety

_KNOWN_KEYWORDS = {"input_tensor", "axis", "keepdims", "name"}


class ReduceStd(Rule):
    """
    ## What it does
    Finds, while a tape records, `tf.math.reduce_std(x)` (with or without `axis` and `keepdims`) of a
    tensor on the gradient path. A value only printed or written to a summary is left alone.

    ## Why is this bad?
    `tf.math.reduce_std` is the square root of `tf.math.reduce_variance`, and the derivative of the
    square root at 0 is infinite. Where the reduced values are all equal (a constant feature, a batch
    of one, a single element) the variance is exactly 0 and the gradient is `0 * inf`: `[nan, nan, nan]`
    for `x = [2., 2., 2.]`, `[nan]` for a single element, in eager mode, `tf.function` and XLA alike
    (TF 2.21). One such reduction turns the whole update into NaN.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        spread = tf.math.reduce_std(x, axis=0)
    ```

    ## Use instead
    The double-where square root of the same variance: the inner `tf.where` feeds the square root a
    harmless 1.0 where the variance is 0, and the outer one returns the variance itself there (0, with
    gradient 0).
    The fix binds the variance to a fresh name on a new line above the statement:
    ```python
    with tf.GradientTape() as tape:
        variance = tf.math.reduce_variance(x, axis=0)
        spread = tf.where(variance > 0, tf.sqrt(tf.where(variance > 0, variance, 1.0)), variance)
    ```
    Where no line can go above (in a lambda, a comprehension, a conditional expression), the variance
    is written out in place three times.

    ## Fix safety
    Safe. `tf.math.reduce_std` computes exactly `tf.sqrt(tf.math.reduce_variance(...))`, so the forward
    values are bit-identical on every input, NaN and inf included (checked on float32 and float64, with
    and without `axis` and `keepdims`). The gradient is unchanged wherever it was finite; where the
    variance is 0 it becomes 0 (a valid subgradient: the standard deviation is a norm there) instead of
    NaN. The variance is computed on the line above, just before the statement; the rewrite is offered only
    when the arguments are free of side effects (the in-place form evaluates them three times), otherwise
    the rule reports without a fix.

    ## References
    - research/idioms.md, idiom 29 (E6, X-E6-fix); tensorflow#56830
    """

    CODE = "TF121"
    NAME = "reduce-std-at-constant"
    MESSAGE = "tf.math.reduce_std on the gradient path: NaN gradient where the values are all equal"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    spread = tf.math.reduce_variance(x)
    fixed = tf.math.reduce_std(tf.constant([1.0, 2.0]))
s = tf.math.reduce_std(x)
""",
            note="a variance, a constant, code after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    v = tf.math.reduce_variance(x)
    spread = tf.where(v > 0, tf.sqrt(tf.where(v > 0, v, 1.0)), v)
""",
            note="the double-where form already",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
step = tf.constant(0, tf.int64)
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x * x)
    tf.compat.v2.summary.scalar(name="std", data=tf.math.reduce_std(x), step=step)
    spread = tf.math.reduce_std(x)
    tf.print(spread)
""",
            note="a value only written to a summary or printed: no gradient flows through it",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    spread = tf.math.reduce_std(x)
""",
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    variance = tf.math.reduce_variance(x)
    spread = tf.where(variance > 0, tf.sqrt(tf.where(variance > 0, variance, 1.0)), variance)
""",
            note="a constant vector: NaN gradient",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([[1.0, 2.0], [1.0, 5.0]])
with tf.GradientTape() as tape:
    per_column = tf.math.reduce_std(w, axis=0, keepdims=True)
""",
            """\
import tensorflow as tf

w = tf.Variable([[1.0, 2.0], [1.0, 5.0]])
with tf.GradientTape() as tape:
    variance = tf.math.reduce_variance(w, axis=0, keepdims=True)
    per_column = tf.where(variance > 0, tf.sqrt(tf.where(variance > 0, variance, 1.0)), variance)
""",
            note="a constant column",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    spread = tf.math.reduce_std(model(x))
""",
            None,
            note="the argument calls a model: the rewrite would call it three times",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        if context.analysis.is_tf_call(node) not in REDUCE_STD:
            return
        value = argument(node, 0, "input_tensor")
        if value is None or not context.on_path(value) or not feeds_computation(context, node):
            return
        if any(a.star for a in node.args) or any(
            a.keyword is not None and a.keyword.value not in _KNOWN_KEYWORDS for a in node.args
        ):
            self.report(node, no_fix_reason="unusual arguments: rewrite by hand as a double-where square root")
            return
        if not all(is_pure(a.value, context.analysis) for a in node.args):
            self.report(
                node, no_fix_reason="the arguments have side effects or cost (a call); bind them to a name first"
            )
            return
        tf, import_edits = context.tf()
        start, _ = context.span(node.args[0])
        _, end = context.span(node.args[-1].value)
        variance = f"{tf}.math.reduce_variance({context.source[start:end]})"
        bound = context.bind_above(variance, "variance")
        name, binding = bound if bound is not None else (variance, None)
        text = f"{tf}.where({name} > 0, {tf}.sqrt({tf}.where({name} > 0, {name}, 1.0)), {name})"
        self.report(
            node,
            edits=(context.replace(node, text), *import_edits, *([binding] if binding else [])),
            description="double-where square root of the same variance: identical forward, gradient 0 where it was NaN",
        )
