"""TF106: ``float(t)`` or ``int(t)`` of a tensor on the gradient path."""

from __future__ import annotations

import libcst as cst

from tapefix.analysis.scope import Shape
from tapefix.analysis.syntax import has_star, keywords, positional
from tapefix.analysis.uses import UseFinder, decide, forward_after
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Forward, Safety


class PythonScalarConversion(Rule):
    """
    ## What it does
    Finds `float(t)` and `int(t)` of a tensor on the gradient path while a tape records, when the
    Python number flows back into the computation (a TensorFlow op, a gradient target, a list of
    losses that is reduced later).

    ## Why is this bad?
    A Python number is a constant to the tape. `float(loss)` as the target makes `tape.gradient`
    raise (`AttributeError: 'float' object has no attribute 'dtype'`); a list of losses built with
    `losses.append(float(l))` and reduced later gives `None` (tensorflow#30190). `int(t)` used as a
    factor is worse: `x * int(tf.reduce_sum(x))` silently drops one path of the product and returns a
    wrong gradient, not `None` (TF 2.21). Under `tf.function`, autograph turns `float(t)` into a
    cast, so the same code works there and breaks in eager mode; `float(t)` inside a function decorated
    with `@tf.function` is left alone.

    Conversions for printing, logging, formatting, comparisons, loop bounds and indices are harmless
    and left alone, as are conversions after the tape or under `stop_recording()`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        scale = float(tf.reduce_mean(w))
        loss = scale * tf.reduce_sum(x * w)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        scale = tf.cast(tf.reduce_mean(w), tf.float32)
        loss = scale * tf.reduce_sum(x * w)
    ```

    ## Fix safety
    `float(t)` becomes `tf.cast(t, tf.float32)`, offered only when `t` is provably a scalar (`float`
    accepts any one-element tensor, and `tf.cast` would keep a `(1,)` shape). The fix is **unsafe**.
    For a float32 tensor the values are identical wherever the Python float meets float32 tensors
    again (it is converted back to float32 there, research idiom 11): the fix's forward contract is
    `exact` then. Plain Python arithmetic on the float (`float(t) * 0.1`) ran in float64 and now runs
    in float32: such a fix is marked `ulp`. A float64 tensor is rounded to float32. The
    gradient is TensorFlow's exact one.

    `int(t)` is reported without a fix: the truncation has no gradient, so there is no exact
    differentiable form; a straight-through surrogate (TF101's form with `tf.cast`) is a modelling
    choice.

    ## References
    - research/idioms.md, idiom 11 and findings 8 and 9 (A4, A6, C17, F3, X-A4-fix-cast, X-A4-fix-30190)
    - tensorflow/tensorflow#30190
    """

    CODE = "TF106"
    NAME = "python-scalar-conversion"
    MESSAGE = "tensor on the gradient path converted to a Python number inside the tape: the gradient is cut"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    print("loss", float(loss))
    if float(loss) > 100.0:
        print("diverging")
    steps = int(tf.size(x))
    for i in range(int(tf.reduce_sum(x))):
        loss = loss + x[i % 2]
grads = tape.gradient(loss, x)
value = float(loss)
""",
            note="printing, comparisons, sizes and loop bounds, and after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
history = []
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    history.append(float(loss))
    with tape.stop_recording():
        scale = float(loss)
grads = tape.gradient(loss, x)
print(sum(history) / len(history))
""",
            note="a loss history for logging, and under stop_recording",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.7, 2.2])


@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = float(tf.reduce_sum(x)) * x
    return tape.gradient(loss, x)
""",
            note="inside tf.function autograph turns float(t) into a cast, and the gradient flows",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([0.5, 1.5])
x = tf.constant([2.0, 3.0])
with tf.GradientTape() as tape:
    scale = float(tf.reduce_mean(w))
    loss = scale * tf.reduce_sum(x * w)
grads = tape.gradient(loss, w)
""",
            """\
import tensorflow as tf

w = tf.Variable([0.5, 1.5])
x = tf.constant([2.0, 3.0])
with tf.GradientTape() as tape:
    scale = tf.cast(tf.reduce_mean(w), tf.float32)
    loss = scale * tf.reduce_sum(x * w)
grads = tape.gradient(loss, w)
""",
            note="a factor that silently dropped one path of the product",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])
losses = []
with tf.GradientTape() as tape:
    for i in range(3):
        l = tf.reduce_sum(w * float(i + 1)) ** 2
        losses.append(float(l))
    loss = tf.math.reduce_std(tf.stack(losses))
grads = tape.gradient(loss, w)
""",
            """\
import numpy as np
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])
losses = []
with tf.GradientTape() as tape:
    for i in range(3):
        l = tf.reduce_sum(w * float(i + 1)) ** 2
        losses.append(tf.cast(l, tf.float32))
    loss = tf.math.reduce_std(tf.stack(losses))
grads = tape.gradient(loss, w)
""",
            note="a list of losses (tensorflow#30190); float(i + 1) of a loop counter is left alone",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = x * int(tf.reduce_sum(x))
grads = tape.gradient(y, x)
""",
            None,
            note="int() truncates: no exact differentiable form (the gradient was silently [3, 3])",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    out = model(tf.ones((1, 2)))
    loss = float(out) ** 2
grads = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="float() of a (1, 1) tensor: tf.cast would keep the shape",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Name) or func.value not in ("float", "int"):
            return
        context = self.context
        if context.analysis.qualify(func) is not None or context.analysis.definitions(func.value, context.function):
            return  # a name the module rebinds
        args = positional(node)
        if len(args) != 1 or keywords(node) or has_star(node):
            return
        arg = args[0].value
        if not context.on_path(arg):
            return
        finder = UseFinder(context, python_number=True)
        report, fixable, _ = decide(finder.of_node(node))
        if not report:
            return
        if func.value == "int":
            self.report(
                node,
                "int() of a tensor on the gradient path: a Python int carries no gradient, and as a factor it "
                "silently drops that path",
                no_fix_reason="truncation has no gradient; a surrogate (straight-through) is a modelling choice",
            )
            return
        if self._in_tf_function():
            return  # autograph converts float(t) to a cast there: the gradient flows (research finding 8)
        if not fixable:
            self.report(node, no_fix_reason="the Python number also feeds non-TensorFlow code")
            return
        if context.value(arg).shape is not Shape.SCALAR:
            self.report(node, no_fix_reason="not provably a scalar: tf.cast would keep a one-element shape")
            return
        tf, import_edits = context.tf()
        report_fix(
            self,
            node,
            (context.replace(node, f"{tf}.cast({context.text(arg)}, {tf}.float32)"), *import_edits),
            "float(t) -> tf.cast(t, tf.float32)",
            Safety.UNSAFE,
            forward_after(finder, Forward.EXACT),
        )

    def _in_tf_function(self) -> bool:
        """Inside a def decorated with ``@tf.function`` (with or without arguments)."""
        analysis = self.context.analysis
        for node in self.context.ancestors:
            if isinstance(node, cst.FunctionDef):
                for decorator in node.decorators:
                    expr = decorator.decorator
                    if isinstance(expr, cst.Call):
                        expr = expr.func
                    if analysis.qualify(expr) == "tensorflow.function":
                        return True
        return False
