"""TF128: a ``tf.cond`` branch that returns a Python number while a tape records."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.syntax import argument, is_number
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Forward, Safety


class CondPythonBranch(Rule):
    """
    ## What it does
    Finds `tf.cond(pred, true_fn, false_fn)` in code a tape records where one branch is a lambda
    returning a Python number (`lambda: 0.0`) and the other a tensor.

    ## Why is this bad?
    In eager mode `tf.cond` simply calls the branch that is taken and returns what it returns: when
    that is the Python number, the result is a `float`, not a tensor, and `tape.gradient` of it raises
    `TypeError: Cannot convert the argument type_value: 0.0 to a TensorFlow DType` (TF 2.21), with
    or without `unconnected_gradients="zero"`. Traced in a `tf.function` the number is converted and
    the same code works, so the failure depends on the data and the mode.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        z = tf.cond(x > 0, lambda: x * y, lambda: 0.0)
    grads = tape.gradient(z, [x, y], unconnected_gradients="zero")
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        z = tf.cond(x > 0, lambda: x * y, lambda: tf.constant(0.0))
    grads = tape.gradient(z, [x, y], unconnected_gradients="zero")
    ```

    ## Fix safety
    Unsafe: a float literal becomes `tf.constant(literal)`, a float32 tensor with the same value,
    which is what a traced `tf.cond` makes of it. An integer literal is reported without a fix (a
    float32 zero would change its dtype, an int32 one has no gradient).
    """

    CODE = "TF128"
    NAME = "cond-python-branch"
    MESSAGE = (
        "a tf.cond branch returns a Python number: in eager mode the result is not a tensor and tape.gradient raises"
    )
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape() as tape:
    z = tf.cond(x > 0, lambda: x * 3.0, lambda: tf.constant(0.0))
g = tape.gradient(z, x)
""",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(-1.0)
with tf.GradientTape() as tape:
    z = tf.cond(x > 0, lambda: x * 3.0, lambda: 0.0)
g = tape.gradient(z, x, unconnected_gradients="zero")
""",
            """\
import tensorflow as tf

x = tf.Variable(-1.0)
with tf.GradientTape() as tape:
    z = tf.cond(x > 0, lambda: x * 3.0, lambda: tf.constant(0.0))
g = tape.gradient(z, x, unconnected_gradients="zero")
""",
            note="the verifier asks for the plain gradient: on the branch taken it is None, as it should be, "
            "so its probe reports a failure",
            verdict="failed",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(-1.0)
with tf.GradientTape() as tape:
    z = tf.cond(x > 0, lambda: x * 3.0, lambda: 0)
g = tape.gradient(z, x)
""",
            None,
            note="an integer literal: no fix",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        if context.analysis.is_tf_call(node) not in ("cond", "compat.v2.cond"):
            return
        branches = [argument(node, 1, "true_fn"), argument(node, 2, "false_fn")]
        if any(b is None for b in branches):
            return
        literal = [b for b in branches if isinstance(b, cst.Lambda) and is_number(b.body)]
        if len(literal) != 1:
            return
        other = branches[1] if literal[0] is branches[0] else branches[0]
        if not (isinstance(other, cst.Lambda) and context.on_path(other.body)):
            return
        body = literal[0].body
        inner = body
        while isinstance(inner, cst.UnaryOperation):
            inner = inner.expression
        if not isinstance(inner, cst.Float):
            self.report(body, no_fix_reason="return a tensor of the other branch's dtype")
            return
        tf, imports = context.tf()
        self.report(
            body,
            edits=(context.replace(body, f"{tf}.constant({context.text(body)})"), *imports),
            description="return a tensor from the branch",
        )
