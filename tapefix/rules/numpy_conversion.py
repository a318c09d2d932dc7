"""TF105: a tensor on the gradient path converted to NumPy while the tape records."""

from __future__ import annotations

from typing import Optional, Tuple

import libcst as cst

from tapefix.analysis.names import is_under
from tapefix.analysis.scope import KERAS
from tapefix.analysis.syntax import has_star, keywords, positional
from tapefix.analysis.tfops import KERAS_CONVERTERS, NUMPY_CONVERTERS, NUMPY_SCALARS
from tapefix.analysis.uses import UseFinder, decide, forward_after
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Edit, Forward, Safety

# Parents under which an expression needs no parentheses of its own.
_STANDALONE = (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return, cst.Arg, cst.Element, cst.Index, cst.DictElement)
_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.List, cst.Tuple)


class NumpyConversion(Rule):
    """
    ## What it does
    Finds `.numpy()`, `np.array(t)`, `np.asarray(t)`, `keras.ops.convert_to_numpy(t)` and
    `tf.keras.backend.eval(t)` applied to a tensor on the gradient path while a tape records, when the
    NumPy value flows back into the computation: a TensorFlow op, a gradient target, a return value.

    ## Why is this bad?
    The conversion leaves TensorFlow: the tape records nothing past it, so `tape.gradient` returns
    `None` for everything upstream, and raises `AttributeError: 'numpy.float32' object has no
    attribute '_id'` when the NumPy value is the target itself (TF 2.21). Under `tf.function` and
    `model.fit` the same line fails with `'SymbolicTensor' object has no attribute 'numpy'`.

    A conversion whose value is only printed, logged, formatted, compared or used as an index is
    harmless and left alone, as is every conversion after the tape or under `stop_recording()`. A
    NumPy value that also feeds non-TensorFlow code (scipy, a file, a subprocess, in-place mutation)
    is reported without a fix: keeping the tensor there is a decision for a human.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        fake = generator(noise).numpy()
        loss = tf.reduce_mean(discriminator(fake))
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        fake = generator(noise)
        loss = tf.reduce_mean(discriminator(fake))
    ```

    ## Fix safety
    The fix deletes the conversion and keeps the tensor: the array held the tensor's values, and the
    gradient flows. It is **safe** when the value goes straight into TensorFlow (or through `+`, `-`,
    `*`, `/`, which round alike in NumPy and TensorFlow), with bit-identical forward values. It is
    **unsafe** when the NumPy value meets a tensor that keeps its own gradient (`x.numpy() * x`: the
    original gradient was partial, not missing, and the detour may have been a deliberate
    `stop_gradient`), when the value is also printed or logged (the printed form changes from an array to a
    tensor), and unsafe with forward values within a few ulp when NumPy arithmetic that rounds
    differently ran on the array first (`**`, `@`, a NumPy function): after the fix TensorFlow's
    `pow` or `matmul` computes it (`x.numpy() ** 2` differs from `x ** 2` in the last bit for some
    values). A `tf.Variable` keeps a snapshot of its value
    (`tf.identity(v)`), as `v.numpy()` did. `np.array([a, b])` (a list of tensors), a `dtype=`
    argument, and `np.float32(t)` are reported without a fix.

    ## References
    - research/idioms.md, idiom 3 and finding 17 (A3, A5, G2, F1, G7)
    - tensorflow/tensorflow#31919, #36596, #50111; keras-team/keras#12057
    """

    CODE = "TF105"
    NAME = "numpy-conversion"
    MESSAGE = "tensor on the gradient path converted to NumPy inside the tape: the gradient is cut"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import logging

import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    print(loss.numpy())
    logging.info("loss %s", loss.numpy())
    message = f"loss={loss.numpy():.3f}"
    if loss.numpy() > 10.0:
        print("large")
grads = tape.gradient(loss, x)
""",
            note="printed, logged, formatted and compared inside the tape: harmless",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
history = []
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    history.append(loss.numpy())
    with tape.stop_recording():
        snapshot = np.array(loss)
        scaled = tf.constant(snapshot * 2.0)
grads = tape.gradient(loss, x)
last = loss.numpy()
""",
            note="collected for logging, under stop_recording, and after the tape",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
batch = tf.ones((4, 2))
labels = tf.constant([0, 2, 1, 1])
with tf.GradientTape() as tape:
    targets = tf.one_hot(np.asarray(labels), 3)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, model(batch)))
grads = tape.gradient(loss, model.trainable_variables)
""",
            note="labels are data, not on the gradient path",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(tf.square((x * 1.0).numpy()))
grads = tape.gradient(y, x)
""",
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(tf.square((x * 1.0)))
grads = tape.gradient(y, x)
""",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
with tf.GradientTape() as tape:
    pred = np.asarray(model(tf.ones((3, 4))))
    loss = tf.keras.backend.eval(tf.reduce_mean(pred ** 2))
grads = tape.gradient(loss, model.trainable_variables)
""",
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
with tf.GradientTape() as tape:
    pred = model(tf.ones((3, 4)))
    loss = tf.reduce_mean(pred ** 2)
grads = tape.gradient(loss, model.trainable_variables)
""",
            note="the loss itself converted: the gradient call raises; `pred ** 2` was NumPy's power and becomes "
            "TensorFlow's, which rounds differently (ulp)",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([0.5, 1.5])
with tf.GradientTape() as tape:
    start = w.numpy()
    print("weights", start)
    loss = tf.reduce_sum(start * w)
grads = tape.gradient(loss, w)
""",
            """\
import tensorflow as tf

w = tf.Variable([0.5, 1.5])
with tf.GradientTape() as tape:
    start = tf.identity(w)
    print("weights", start)
    loss = tf.reduce_sum(start * w)
grads = tape.gradient(loss, w)
""",
            note="a variable keeps a snapshot; also printed, so the fix is unsafe",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

a = tf.Variable(1.0)
b = tf.Variable(2.0)
with tf.GradientTape() as tape:
    both = np.array([a * 2.0, b * 3.0])
    loss = tf.reduce_sum(both)
grads = tape.gradient(loss, [a, b])
""",
            None,
            note="a list of tensors needs tf.stack, whose shape and dtype rules a human should check",
        ),
        Invalid(
            """\
import subprocess

import tensorflow as tf

x = tf.Variable([0.1, 0.2])
with tf.GradientTape() as tape:
    wave = (x * 3.0).numpy()
    subprocess.run(["play", str(wave.tobytes())])
    loss = tf.reduce_sum(wave)
grads = tape.gradient(loss, x)
""",
            None,
            note="the NumPy value also feeds non-TensorFlow code",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        converted = self._converted(node)
        if converted is None:
            return
        context = self.context
        if not context.on_path(converted):
            return
        finder = UseFinder(context)
        report, fixable, printed = decide(finder.of_node(node))
        if not report:
            return
        reason = self._no_fix_reason(node, converted)
        if not fixable:
            reason = "the NumPy value also feeds non-TensorFlow code; keeping the tensor there needs a human"
        if reason:
            self.report(node, no_fix_reason=reason)
            return
        text, edits = self._replacement(node, converted)
        forward = forward_after(finder, Forward.EXACT)
        report_fix(
            self,
            node,
            (context.replace(node, text), *edits),
            "drop the NumPy conversion and keep the tensor",
            Safety.UNSAFE if printed or forward is not Forward.EXACT or finder.meets_gradient else Safety.SAFE,
            forward,
        )

    def _converted(self, node: cst.Call) -> Optional[cst.BaseExpression]:
        """The expression a conversion call converts, or None when ``node`` is no conversion."""
        func = node.func
        analysis = self.context.analysis
        if isinstance(func, cst.Attribute) and func.attr.value == "numpy" and not node.args:
            if analysis.qualify(func) is None:
                return func.value
            return None
        args = positional(node)
        if not args:
            return None
        name = analysis.is_numpy_call(node)
        if name in NUMPY_CONVERTERS or name in NUMPY_SCALARS:
            return args[0].value
        qualified = analysis.qualify(func)
        if is_under(qualified, KERAS) and qualified is not None and qualified.endswith(KERAS_CONVERTERS):
            return args[0].value
        return None

    def _no_fix_reason(self, node: cst.Call, converted: cst.BaseExpression) -> str:
        if has_star(node) or len(positional(node)) > 1 or keywords(node):
            return "extra arguments (dtype=, copy=) change the value; drop the conversion by hand"
        if self.context.analysis.is_numpy_call(node) in NUMPY_SCALARS:
            return "a NumPy scalar type: use tf.cast with the dtype you mean"
        if isinstance(converted, (cst.List, cst.Tuple)):
            return "a list of tensors: tf.stack keeps the gradient, but check its shape and dtype by hand"
        return ""

    def _replacement(self, node: cst.Call, converted: cst.BaseExpression) -> Tuple[str, Tuple[Edit, ...]]:
        context = self.context
        text = context.text(converted)
        if self._is_variable(converted):
            tf, import_edits = context.tf()
            return f"{tf}.identity({text})", import_edits
        standalone = isinstance(context.parent, _STANDALONE) and not node.lpar
        if not standalone and not isinstance(converted, _ATOMS) and not converted.lpar:
            text = f"({text})"
        return text, ()

    def _is_variable(self, expr: cst.BaseExpression) -> bool:
        """A name bound to ``tf.Variable(...)``: its conversion was a snapshot of a value that may change."""
        if not isinstance(expr, cst.Name):
            return False
        context = self.context
        for definition in context.analysis.definitions(expr.value, context.function):
            if isinstance(definition, cst.Call) and context.analysis.is_tf_call(definition) == "Variable":
                return True
        return False
