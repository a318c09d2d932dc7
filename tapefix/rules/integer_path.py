"""TF114: the gradient target reaches the sources only through an argmax or an integer / boolean cast."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.syntax import argument, is_integer_dtype
from tapefix.analysis.tfops import ARGMAX, CAST, COMPARISONS, GRADIENT_CUTS
from tapefix.rule import Invalid, RuleContext, TapeBlockRule, Valid
from tapefix.types import Safety


class IntegerPath(TapeBlockRule):
    """
    ## What it does
    Finds a `tape.gradient` target whose only connection to the gradient sources inside the tape block
    runs through `tf.argmax` / `tf.argmin`, a cast to an integer dtype (`tf.cast(x, tf.int32)`) or a
    cast of a comparison (`tf.cast(x > 0.5, tf.float32)`), and reports those ops. An `argmax` used for
    a metric, or as an index next to a differentiable path (`tf.gather(q, tf.argmax(q))`), is not
    flagged.

    ## Why is this bad?
    Integers and booleans carry no gradient: TensorFlow returns `None` for every source behind such an
    op (TF 2.21), and `optimizer.apply_gradients` then raises `No gradients provided for any variable`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        hits = tf.cast(scores > 0.5, tf.float32)
        loss = tf.reduce_mean(tf.square(hits - labels))
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Use instead
    A smooth surrogate, or a straight-through estimator that keeps the forward value:
    ```python
    with tf.GradientTape() as tape:
        soft = tf.sigmoid(10.0 * (scores - 0.5))
        hits = tf.stop_gradient(tf.cast(scores > 0.5, tf.float32)) + (soft - tf.stop_gradient(soft))
        loss = tf.reduce_mean(tf.square(hits - labels))
    ```

    ## Fix safety
    No fix: the surrogate gradient is a modelling decision (how steep a sigmoid, which one-hot
    relaxation), so the rule reports and a human chooses. For a cast to an integer and back,
    `tf.stop_gradient(q) + (x - tf.stop_gradient(x))` reproduces the truncating cast exactly.

    ## References
    - research/idioms.md, idiom 2 (B1-*, B3-*, X-B1-cast-ste, X-B1-threshold-ste, B3-fix)
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF114"
    NAME = "integer-path"
    MESSAGE = "the gradient target depends on the sources only through an integer op: its gradient is None"
    SAFETY = Safety.DISPLAY_ONLY

    VALID = (
        Valid(
            """\
import tensorflow as tf

logits = tf.Variable([[0.2, 0.8], [0.6, 0.4]])
labels = tf.constant([1, 0])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    predicted = tf.argmax(logits, axis=1)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int64)), tf.float32))
grads = tape.gradient(loss, logits)
""",
            note="argmax and casts for a metric that does not feed the target",
        ),
        Valid(
            """\
import tensorflow as tf

q = tf.Variable([1.0, 3.0, 2.0])
with tf.GradientTape() as tape:
    best = tf.gather(q, tf.argmax(q))
    masked = tf.reduce_sum(tf.one_hot(tf.argmax(q), 3) * q)
    loss = best + masked
g = tape.gradient(loss, q)
""",
            note="argmax as an index or a mask next to a differentiable path",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

scores = tf.Variable([0.2, 0.7, 0.9])
labels = tf.constant([0.0, 1.0, 1.0])
with tf.GradientTape() as tape:
    hits = tf.cast(scores > 0.5, tf.float32)
    loss = tf.reduce_mean(tf.square(hits - labels))
g = tape.gradient(loss, scores)
""",
            None,
            note="a thresholded prediction in the loss",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    q = tf.cast(tf.cast(x, tf.int32), tf.float32)
    loss = tf.reduce_sum(q * q)
g = tape.gradient(loss, x)
""",
            None,
            note="quantisation by an integer cast",
        ),
        Invalid(
            """\
import tensorflow as tf

logits = tf.Variable([[0.2, 0.8], [0.6, 0.4]])
with tf.GradientTape() as tape:
    choice = tf.argmax(logits, axis=1)
    loss = tf.reduce_sum(tf.cast(choice, tf.float32))
g = tape.gradient(loss, logits)
""",
            None,
            note="an argmax in the loss",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        self._reported: Set[cst.CSTNode] = set()

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, _ = found
        target = argument(node, 0, "target")
        if target is None:
            return
        walk = _Connection(self.context, self.recorded(block))
        if walk.connected(target) or not walk.cuts:
            return
        for cut, message in walk.cuts:
            if cut not in self._reported:
                self._reported.add(cut)
                self.report(cut, message, no_fix_reason="choose a surrogate gradient (straight-through estimator)")


class _Connection:
    """Does an expression carry a gradient from the sources, with integer ops as cuts? Records the
    integer ops that cut a connected argument."""

    def __init__(self, context: RuleContext, recorded: Dict[str, List[cst.BaseExpression]]) -> None:
        self.context = context
        self.recorded = recorded
        self.cuts: List[Tuple[cst.Call, str]] = []
        self._names: Dict[str, bool] = {}

    def connected(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Name):
            return self._name(expr)
        if isinstance(expr, cst.Call):
            return self._call(expr)
        if isinstance(expr, cst.BinaryOperation):
            return self.connected(expr.left) | self.connected(expr.right)
        if isinstance(expr, cst.UnaryOperation):
            return not isinstance(expr.operator, cst.Not) and self.connected(expr.expression)
        if isinstance(expr, cst.Comparison):
            return False
        if isinstance(expr, cst.Subscript):
            return self.connected(expr.value)
        if isinstance(expr, (cst.List, cst.Tuple)):
            return any([self.connected(e.value) for e in expr.elements])
        return self.context.on_path(expr)

    def _name(self, expr: cst.Name) -> bool:
        name = expr.value
        if name not in self.recorded:
            return self.context.on_path(expr)
        if name in self._names:
            return self._names[name]
        self._names[name] = False  # a cycle (x = x + ...) adds nothing new
        result = any([self.connected(value) for value in self.recorded[name]])
        self._names[name] = result
        return result

    def _call(self, call: cst.Call) -> bool:
        short = self.context.analysis.is_tf_call(call)
        first = call.args[0].value if call.args else None
        if short in ARGMAX:
            self._cut(
                call, first, f"tf.{short} on the only path to the gradient target: integer indices carry no gradient"
            )
            return False
        if short in CAST and len(call.args) >= 2:
            dtype = argument(call, 1, "dtype")
            if is_integer_dtype(dtype):
                self._cut(call, first, "cast to an integer dtype on the only path to the gradient target: no gradient")
                return False
            if first is not None and self._boolean(first):
                self._cut(
                    call,
                    self._compared(first),
                    "cast of a comparison on the only path to the gradient target: booleans carry no gradient",
                )
                return False
        if short in GRADIENT_CUTS or short in COMPARISONS:
            return False
        arguments = [self.connected(a.value) for a in call.args]
        if short is not None:
            return any(arguments)
        return any(arguments) or self.context.on_path(call)

    def _boolean(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Comparison):
            return True
        return isinstance(expr, cst.Call) and self.context.analysis.is_tf_call(expr) in COMPARISONS

    def _compared(self, expr: cst.BaseExpression) -> Optional[cst.BaseExpression]:
        """An operand of the comparison that may carry a gradient, for the cut's check."""
        if isinstance(expr, cst.Comparison):
            operands = [expr.left, *[c.comparator for c in expr.comparisons]]
        elif isinstance(expr, cst.Call):
            operands = [a.value for a in expr.args]
        else:
            return None
        for operand in operands:
            if self.connected(operand):
                return operand
        return None

    def _cut(self, call: cst.Call, argument_: Optional[cst.BaseExpression], message: str) -> None:
        if argument_ is not None and self.connected(argument_):
            self.cuts.append((call, message))
