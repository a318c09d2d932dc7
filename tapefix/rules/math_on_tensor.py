"""TF107: a ``math`` module function applied to a tensor on the gradient path."""

from __future__ import annotations

from typing import Dict, Tuple

import libcst as cst

from tapefix.analysis.scope import Shape
from tapefix.analysis.syntax import has_star, keywords, positional
from tapefix.analysis.uses import UseFinder, decide, forward_after
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Forward, Safety

# math.<name> -> (TensorFlow name, number of arguments, forward contract). sqrt and fabs are
# correctly rounded in float64 and in float32, so rounding the float64 result to float32 gives the
# float32 result bit for bit; the transcendental functions differ by a few ulp.
OPS: Dict[str, Tuple[str, int, Forward]] = {
    "sqrt": ("sqrt", 1, Forward.EXACT),
    "fabs": ("abs", 1, Forward.EXACT),
    "exp": ("exp", 1, Forward.ULP),
    "log": ("math.log", 1, Forward.ULP),
    "log1p": ("math.log1p", 1, Forward.ULP),
    "expm1": ("math.expm1", 1, Forward.ULP),
    "sin": ("sin", 1, Forward.ULP),
    "cos": ("cos", 1, Forward.ULP),
    "tan": ("math.tan", 1, Forward.ULP),
    "tanh": ("tanh", 1, Forward.ULP),
    "atan": ("math.atan", 1, Forward.ULP),
    "asin": ("math.asin", 1, Forward.ULP),
    "acos": ("math.acos", 1, Forward.ULP),
    "erf": ("math.erf", 1, Forward.ULP),
    "pow": ("pow", 2, Forward.ULP),
}
REPORT_ONLY: Dict[str, str] = {
    "floor": "math.floor returns an int: no gradient; for a straight-through gradient use TF101's form by hand",
    "ceil": "math.ceil returns an int: no gradient; for a straight-through gradient use TF101's form by hand",
    "trunc": "math.trunc returns an int: no gradient; for a straight-through gradient use TF101's form by hand",
    "log2": "no tf.log2; write tf.math.log(x) / tf.math.log(2.0) by hand",
    "log10": "no tf.log10; write tf.math.log(x) / tf.math.log(10.0) by hand",
    "atan2": "use tf.math.atan2 (argument order y, x)",
    "hypot": "use tf.sqrt(x * x + y * y), guarded at zero",
}


class MathOnTensor(Rule):
    """
    ## What it does
    Finds functions of Python's `math` module (`math.exp`, `math.log`, `math.sqrt`, `math.pow`,
    `math.floor`, ...) applied to a tensor on the gradient path while a tape records, when the result
    flows back into the computation.

    ## Why is this bad?
    `math` converts the tensor to a Python float (or int, for `floor`/`ceil`/`trunc`): a constant to
    the tape, so `tape.gradient` returns `None`, or a silently wrong gradient when the constant
    multiplies another path (tensorflow#20116). On a tensor with more than one element `math` raises
    `TypeError: only 0-dimensional arrays can be converted to Python scalars`. Results that are only
    printed, logged or compared are left alone.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss = math.exp(tf.reduce_mean(w)) * tf.reduce_sum(w)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        loss = tf.exp(tf.reduce_mean(w)) * tf.reduce_sum(w)
    ```

    ## Fix safety
    Unsafe. The fix is offered only when the argument is provably a scalar (`math` accepts any
    one-element tensor, and the TensorFlow op would keep a `(1,)` shape). `math` computes in float64
    and the result is rounded to float32 where it meets float32 tensors again; TensorFlow computes in
    float32. For `sqrt` and `fabs` that gives identical values; for `exp`, `log`, `tanh`, `pow` and the
    other transcendental functions a few ulp of difference. Python arithmetic on the result ran in
    float64 and now runs in the tensor's dtype. `math.floor`, `ceil` and `trunc` (which return ints),
    `log2`, `log10`, `atan2`, `hypot` and `math.log(x, base)` are reported without a fix.

    ## References
    - research/idioms.md, idiom 11 (A6)
    - tensorflow/tensorflow#20116
    """

    CODE = "TF107"
    NAME = "math-on-tensor"
    MESSAGE = "`math` function on a tensor on the gradient path: the result is a Python number and the gradient is cut"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.ULP

    VALID = (
        Valid(
            """\
import math

import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2) * math.log(2.0) + math.pi * tf.reduce_sum(x)
    print("perplexity", math.exp(loss))
    if math.isnan(loss):
        print("nan")
grads = tape.gradient(loss, x)
shown = math.sqrt(loss)
""",
            note="math constants and functions of Python numbers; printing, checks, after the tape",
        ),
        Valid(
            """\
import tensorflow as tf
import tensorflow.math as math

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(math.exp(x))
grads = tape.gradient(loss, x)
""",
            note="`math` bound to tf.math is TensorFlow",
        ),
    )
    INVALID = (
        Invalid(
            """\
import math

import tensorflow as tf

w = tf.Variable([0.5, 1.5])
with tf.GradientTape() as tape:
    scale = math.atan(tf.reduce_mean(w)) + math.tanh(tf.reduce_sum(w * w))
    loss = scale * tf.reduce_sum(w)
grads = tape.gradient(loss, w)
""",
            """\
import math

import tensorflow as tf

w = tf.Variable([0.5, 1.5])
with tf.GradientTape() as tape:
    scale = tf.math.atan(tf.reduce_mean(w)) + tf.tanh(tf.reduce_sum(w * w))
    loss = scale * tf.reduce_sum(w)
grads = tape.gradient(loss, w)
""",
        ),
        Invalid(
            """\
from math import erf, sin

from tensorflow import GradientTape, Variable, reduce_sum

v = Variable(3.0)
with GradientTape() as g:
    loss = erf(v) + sin(v)
grads = g.gradient(loss, v)
""",
            """\
from math import erf, sin

from tensorflow import GradientTape, Variable, reduce_sum
import tensorflow as tf

v = Variable(3.0)
with GradientTape() as g:
    loss = tf.math.erf(v) + tf.sin(v)
grads = g.gradient(loss, v)
""",
            note="names imported from math; the loss itself was a Python float (the gradient call raises)",
            verdict="unverified",
        ),
        Invalid(
            """\
import math

import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x) * math.floor(tf.reduce_mean(x))
grads = tape.gradient(loss, x)
""",
            None,
            note="math.floor returns an int: no gradient to restore exactly",
        ),
        Invalid(
            """\
import math

import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    loss = math.exp(model(tf.ones((1, 2))))
grads = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="not provably a scalar: tf.exp would keep the (1, 1) shape",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        qualified = context.analysis.qualify(node.func)
        if qualified is None or not qualified.startswith("math."):
            return
        name = qualified[len("math.") :]
        if name not in OPS and name not in REPORT_ONLY:
            return
        args = positional(node)
        if not args or not any(context.on_path(a.value) for a in args):
            return
        finder = UseFinder(context, python_number=True)
        report, fixable, _ = decide(finder.of_node(node))
        if not report:
            return
        message = f"math.{name} on a tensor on the gradient path: the result is a Python number and the gradient is cut"
        if name in REPORT_ONLY:
            self.report(node, message, no_fix_reason=REPORT_ONLY[name])
            return
        tf_name, arity, forward = OPS[name]
        if len(args) != arity or keywords(node) or has_star(node):
            self.report(node, message, no_fix_reason="math.log with a base, or extra arguments: rewrite by hand")
            return
        if not fixable:
            self.report(node, message, no_fix_reason="the Python number also feeds non-TensorFlow code")
            return
        if any(context.value(a.value).shape is not Shape.SCALAR for a in args if context.on_path(a.value)):
            self.report(node, message, no_fix_reason="not provably a scalar: the TensorFlow op would keep its shape")
            return
        tf, import_edits = context.tf()
        report_fix(
            self,
            node,
            (context.replace(node.func, f"{tf}.{tf_name}"), *import_edits),
            f"math.{name} -> {tf}.{tf_name}",
            Safety.UNSAFE,
            forward_after(finder, forward),
            message,
        )
