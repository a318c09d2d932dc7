"""TF116: ``tf.numpy_function``, or ``tf.py_function`` over NumPy code, on the gradient path."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from tapefix.analysis.syntax import argument
from tapefix.analysis.tfops import NUMPY_METHODS
from tapefix.analysis.walk import children
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Safety


class NumpyFunction(Rule):
    """
    ## What it does
    Finds, while a tape records, `tf.numpy_function(func, inp, Tout)` with an input on the gradient
    path, and `tf.py_function(func, inp, Tout)` whose `func` (a lambda or a function of the same
    module) calls NumPy or `.numpy()`. A `tf.py_function` whose body uses TensorFlow ops is
    differentiable and is left alone.

    ## Why is this bad?
    `tf.numpy_function` has no gradient: `tape.gradient` returns `None`, in eager mode and in
    `tf.function` (TF 2.21). `tf.py_function` differentiates its body with the tape; over NumPy code
    there is nothing to differentiate and TensorFlow silently substitutes a scalar `0.0`: a gradient
    of the wrong shape and value, with no warning.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = tf.numpy_function(lambda a: np.square(a), [x], tf.float32)
    ```

    ## Use instead
    The same computation in TensorFlow ops (`tf.square(x)`), or a `tf.custom_gradient` with a
    hand-written backward pass.

    ## Fix safety
    No fix: rewriting the function's body in TensorFlow is a human's job; the rule reports.

    ## References
    - research/idioms.md, idiom 18 and finding 6 (A11-*, X-A11-fix)
    """

    CODE = "TF116"
    NAME = "numpy-function"
    MESSAGE = "tf.numpy_function on the gradient path: it has no gradient (None)"
    SAFETY = Safety.DISPLAY_ONLY

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])

def tf_square(a):
    return tf.square(a)

with tf.GradientTape() as tape:
    y = tf.py_function(tf_square, [x], tf.float32)
    z = tf.py_function(lambda a: a * 2.0, [x], tf.float32)
""",
            note="py_function over TensorFlow ops is differentiable",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
ids = tf.constant([3, 1])
with tf.GradientTape() as tape:
    order = tf.numpy_function(np.argsort, [ids], tf.int64)
    y = tf.gather(x, order)
""",
            note="numpy_function on a constant input: nothing to differentiate through it",
        ),
    )
    INVALID = (
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.numpy_function(lambda a: np.square(a), [x], tf.float32)
""",
            None,
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])

def np_square(a):
    return np.square(a.numpy())

with tf.GradientTape() as tape:
    y = tf.py_function(np_square, [x], tf.float32)
""",
            None,
            note="py_function over NumPy: a silent scalar 0 gradient",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        short = context.analysis.is_tf_call(node)
        if short not in ("numpy_function", "py_function"):
            return
        inputs = argument(node, 1, "inp")
        if inputs is None or not context.on_path(inputs):
            return
        if short == "numpy_function":
            self.report(node, no_fix_reason="rewrite the function in TensorFlow ops, or give it a tf.custom_gradient")
            return
        func = argument(node, 0, "func")
        if func is not None and self._uses_numpy(func):
            self.report(
                node,
                "tf.py_function over NumPy code on the gradient path: its gradient is a silent scalar 0",
                no_fix_reason="rewrite the function in TensorFlow ops, or give it a tf.custom_gradient",
            )

    def _uses_numpy(self, func: cst.BaseExpression) -> bool:
        body: Optional[cst.CSTNode] = None
        if isinstance(func, cst.Lambda):
            body = func.body
        elif isinstance(func, cst.Name):
            callees = self.context.analysis.by_name.get(func.value, [])
            if len(callees) == 1:
                body = callees[0].node.body
        elif self.context.analysis.is_numpy_call(cst.Call(func=func)) is not None:
            return True  # tf.py_function(np.square, ...)
        return body is not None and self._numpy_in(body)

    def _numpy_in(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Call):
            if self.context.analysis.is_numpy_call(node) is not None:
                return True
            if isinstance(node.func, cst.Attribute) and node.func.attr.value in NUMPY_METHODS and not node.args:
                return True
        return any(self._numpy_in(child) for child in children(node))
