"""TF124: a tensor on the gradient path routed through ``tf.data``, or a gradient target wrapped whole in
``tf.stop_gradient``."""

from __future__ import annotations

from typing import List

import libcst as cst

from tapefix.analysis.syntax import argument
from tapefix.analysis.tfops import DATASET_FROM_TENSORS
from tapefix.rule import Invalid, TapeBlockRule, Valid
from tapefix.types import Safety


class StatefulInTape(TapeBlockRule):
    """
    ## What it does
    Finds:

    - while a tape records, a tensor on the gradient path passed to `tf.data.Dataset.from_tensors` or
      `tf.data.Dataset.from_tensor_slices`: whatever comes out of the dataset (`next(iter(ds))`, a
      `for` loop over it) is cut from the tape;
    - a gradient target wrapped whole in `tf.stop_gradient`: `tape.gradient(tf.stop_gradient(loss), w)`,
      or `loss = tf.stop_gradient(...)` in the tape block when every assignment of `loss` there is one.

    ## Why is this bad?
    `tf.data` datasets and their iterators are stateful and stop every gradient: a value routed through
    `Dataset.from_tensors(x * 2)` has gradient `None` (TF 2.21; the TF guide says so too). A target
    under `tf.stop_gradient` has no gradient at all: `tape.gradient` returns `None` for every source,
    which usually means the `stop_gradient` was meant for one term (a target, a straight-through
    rounding), not the whole loss.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        batch = next(iter(tf.data.Dataset.from_tensors(features * 2.0)))
        loss = tf.stop_gradient(tf.reduce_sum((model(batch) - y) ** 2))
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Use instead
    Keep the tensor out of `tf.data` inside the tape (build the dataset from inputs, before the tape),
    and stop the gradient only of the term that must not be differentiated.
    ```python
    with tf.GradientTape() as tape:
        batch = features * 2.0
        loss = tf.reduce_sum((model(batch) - tf.stop_gradient(y)) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Fix safety
    No fix: which term the user meant to stop, and how the data should flow, is a human's decision;
    the rule reports.

    ## References
    - research/idioms.md, idioms 22 and 28 (C12, C14)
    - the TF guide on automatic differentiation ("tf.data.Dataset iterators ... will stop all gradients")
    """

    CODE = "TF124"
    NAME = "stateful-in-tape"
    MESSAGE = "tensor on the gradient path routed through tf.data inside the tape: the gradient stops (None)"
    SAFETY = Safety.DISPLAY_ONLY

    VALID = (
        Valid(
            """\
import tensorflow as tf

features = tf.constant([[1.0, 2.0]])
w = tf.Variable([[1.0], [2.0]])
dataset = tf.data.Dataset.from_tensor_slices(features)
with tf.GradientTape() as tape:
    batch = next(iter(tf.data.Dataset.from_tensors(features)))
    target = tf.stop_gradient(tf.matmul(features, w))
    loss = tf.reduce_sum((tf.matmul(batch, w) - target) ** 2)
grads = tape.gradient(loss, [w])
""",
            note="a dataset of inputs; stop_gradient on one term, not the target",
        ),
        Valid(
            """\
import tensorflow as tf

w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    loss = w * w
    shown = tf.stop_gradient(loss)
grads = tape.gradient(loss, [w])
""",
            note="a stopped copy that is not the gradient target",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = next(iter(tf.data.Dataset.from_tensors(x * 2.0)))
    loss = tf.reduce_sum(y)
grads = tape.gradient(loss, x)
""",
            None,
            note="the value comes back out of a dataset: gradient None",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.stop_gradient(tf.reduce_sum(x ** 2))
grads = tape.gradient(loss, x)
""",
            None,
            note="the whole loss stopped: gradient None",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
grads = tape.gradient(tf.stop_gradient(loss), x)
""",
            None,
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        if context.recording and context.analysis.is_tf_call(node) in DATASET_FROM_TENSORS:
            value = argument(node, 0, "tensors")
            if value is not None and context.on_path(value):
                self.report(node, no_fix_reason="build the dataset from inputs before the tape, or keep the tensor")
            return
        found = self.tape_call(node)
        if found is None or found[1] != "gradient":
            return
        block, _ = found
        target = argument(node, 0, "target")
        if target is None:
            return
        stopped: List[cst.BaseExpression] = []
        if self._is_stop(target):
            stopped = [target]
        elif isinstance(target, cst.Name) and not self.assigned_after(block, target.value):
            definitions = self.recorded(block).get(target.value, [])
            if definitions and all(self._is_stop(d) for d in definitions):
                stopped = definitions
        for expr in stopped:
            self.report(
                expr,
                "gradient target wrapped whole in tf.stop_gradient: every gradient is None",
                no_fix_reason="stop the gradient of the term that must not be differentiated, not of the target",
            )

    def _is_stop(self, expr: cst.BaseExpression) -> bool:
        return isinstance(expr, cst.Call) and self.context.analysis.is_tf_call(expr) == "stop_gradient"
