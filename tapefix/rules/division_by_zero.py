"""TF103: a division whose denominator is a tensor on the gradient path that can be zero."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.expressions import guarded_from_zero, numeric_literal
from tapefix.analysis.uses import feeds_gradient
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Forward, Safety


class DivisionByZero(Rule):
    """
    ## What it does
    Finds `a / x` while a tape records, where `x` is a tensor on the gradient path that is not
    guarded by an epsilon, `tf.maximum`, `tf.clip_by_value` or an op that is never zero (`tf.exp`,
    `tf.nn.softplus`).

    A denominator tapefix can show is never zero is left alone: a positive literal or
    `tf.constant`, a `tf.Variable(2.0)` that nothing updates (the assignment the read sees, not an
    older one of the same name), a sum of squares with a positive term, the mean of a softmax, what a
    function of the module returns given its arguments (`return tf.sqrt(var + eps)`). So is a
    quotient whose every use is an integer index, a comparison or `tf.stop_gradient`: no gradient
    flows through it.

    ## Why is this bad?
    At `x == 0` the forward value is inf (or NaN for `0/0`) and the gradient is `-inf` (TF 2.21:
    `1/x` at 0 gives `-inf`, not `None`); one such lane turns the whole update into NaN. Masking the
    result afterwards with a single `tf.where` does not help: the masked lane's gradient is still NaN.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = 1.0 / x
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        y = tf.math.divide_no_nan(1.0, x)
    ```

    ## Fix safety
    Unsafe: `tf.math.divide_no_nan` returns 0 with gradient 0 where `x == 0`, where the original gave
    inf or NaN; everywhere else the forward values are bit-identical. The fix is offered when the
    numerator is a number literal or a tensor on the gradient path, so both operands share the float
    dtype `divide_no_nan` requires; an integer literal numerator is written as a float.

    ## References
    - research/idioms.md, idiom 14 (E1-fix-divide_no_nan)
    """

    CODE = "TF103"
    NAME = "division-by-zero"
    MESSAGE = "division by a tensor that can be zero: inf forward, inf/NaN gradient at 0"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.SINGULAR

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
with tf.GradientTape() as tape:
    y = 1.0 / (x + 1e-8)
    z = x / 2.0
    w = x / tf.maximum(x, 1e-6)
""",
            note="guarded denominators and constant ones",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
with tf.GradientTape() as tape:
    norm = tf.norm(x) + 1e-8
    y = x / norm
    z = x / tf.reduce_sum(x * x + 1e-6)
""",
            note="a name whose every definition is guarded, and an epsilon inside a reduction",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
batch = 32
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2) / batch
y = 1.0 / x
""",
            note="a Python number as denominator, and a division after the tape",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
with tf.GradientTape() as tape:
    y = 1 / x
""",
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.math.divide_no_nan(1.0, x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([3.0, 0.0, -1.0])
with tf.GradientTape() as tape:
    total = tf.reduce_sum(w)
    share = w / (w * 2.0)
""",
            """\
import tensorflow as tf

w = tf.Variable([3.0, 0.0, -1.0])
with tf.GradientTape() as tape:
    total = tf.reduce_sum(w)
    share = tf.math.divide_no_nan(w, (w * 2.0))
""",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
scale = 3
with tf.GradientTape() as tape:
    y = scale / x
""",
            None,
            note="a numerator of unknown dtype: divide_no_nan would raise on int32 vs float32",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    y = tf.math.log(x) / x
""",
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    y = tf.math.divide_no_nan(tf.math.log(x), x)
""",
            note="divide_no_nan guards the quotient, not its numerator: log's infinite gradient at 0 times "
            "divide_no_nan's zero is NaN, and the verifier rejects the fix",
            verdict="failed",
        ),
    )

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if not isinstance(node.operator, cst.Divide):
            return
        context = self.context
        denominator = node.right
        if not context.on_path(denominator) or guarded_from_zero(
            denominator, context.analysis, context.function, context.ancestors
        ):
            return
        if not feeds_gradient(context, node):
            return  # the quotient only picks an index or a mask: no gradient flows through it
        numerator = node.left
        number = numeric_literal(numerator)
        if number is not None:
            numerator_text = context.text(numerator)
            if "." not in numerator_text and "e" not in numerator_text.lower():
                numerator_text = numerator_text + ".0"
        elif context.on_path(numerator):
            numerator_text = context.text(numerator)
        else:
            self.report(
                node, no_fix_reason="the numerator's dtype is unknown: tf.math.divide_no_nan needs both operands float"
            )
            return
        tf, import_edits = context.tf()
        text = f"{tf}.math.divide_no_nan({numerator_text}, {context.text(denominator)})"
        self.report(
            node,
            edits=(context.replace(node, text), *import_edits),
            description="tf.math.divide_no_nan: 0 with gradient 0 where the denominator is 0",
        )
