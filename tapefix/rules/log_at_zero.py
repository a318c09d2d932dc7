"""TF118: a logarithm that can be taken at zero: ``log(softmax)``, ``x * log(x)``, ``log(1 + exp(x))``."""

from __future__ import annotations

from typing import Optional, Tuple

import libcst as cst

from tapefix.analysis.expressions import first_argument, guarded_from_zero, is_pure, names_in, numeric_literal
from tapefix.analysis.tfops import EXP, LOG, LOG1P, SIGMOID, SOFTMAX, SOFTMAX_KEYWORDS, WHERE
from tapefix.analysis.uses import feeds_gradient
from tapefix.rule import Invalid, Rule, RuleContext, Valid
from tapefix.types import Forward, Safety


class LogAtZero(Rule):
    """
    ## What it does
    Finds, while a tape records, a logarithm of a tensor on the gradient path that can be zero:

    - `tf.math.log(tf.nn.softmax(z))`, which has a fused, stable form `tf.nn.log_softmax(z)`;
    - the entropy term `x * tf.math.log(x)` (the same operand on both sides, either order);
    - `tf.math.log(tf.sigmoid(z))` and the hand-written softplus `tf.math.log(1.0 + tf.exp(x))` /
      `tf.math.log1p(tf.exp(x))`, reported with the stable op to use instead;
    - any other `tf.math.log(x)` whose argument nothing keeps away from zero (no epsilon,
      `tf.maximum`, `tf.clip_by_value`, `tf.exp`, ...).

    An argument that cannot be zero is left alone as for TF103 (`tf.constant([1., 2.])`), and so is
    the probability of the action just sampled from it (`a = np.random.choice(n, p=probs)` then
    `tf.math.log(probs[a])`: the draw never picks a zero-probability action).

    ## Why is this bad?
    `log(0)` is `-inf` with gradient `inf` (TF 2.21), and `x * log(x)` at 0 is `0 * -inf`: NaN
    forward and NaN gradient. A softmax or sigmoid underflows to exactly 0 long before the logits
    are extreme: `log(softmax([0., 200.]))` is `[-inf, 0]` with gradient `[nan, nan]`, and
    `log(1 + exp(100.))` overflows to inf with a NaN gradient. One such lane turns the update into NaN.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        log_probs = tf.math.log(tf.nn.softmax(logits))
        entropy = -tf.reduce_sum(p * tf.math.log(p))
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        log_probs = tf.nn.log_softmax(logits)
        entropy = -tf.reduce_sum(tf.math.xlogy(p, p))
    ```
    For `log(sigmoid(z))` use `tf.math.log_sigmoid(z)`, for `log(1 + exp(x))` use
    `tf.nn.softplus(x)`. For a plain `log(x)`, clipping keeps values in range:
    `tf.math.log(tf.clip_by_value(x, eps, 1.0))` (an `x + eps` changes every value slightly).

    ## Fix safety
    Unsafe. `tf.nn.log_softmax` agrees with `log(softmax)` within a few units in the last place where
    the original is finite and gives the finite value where a probability underflowed (`-200` instead
    of `-inf`, gradient `[1, -1]` instead of NaN). `tf.math.xlogy(x, x)` is bit-identical to
    `x * log(x)` for `x > 0` and gives 0 with gradient 0 at `x == 0`; the operand is repeated, so
    the fix is offered only when it is free of side effects.

    No fix is offered for `log(sigmoid)` and the hand-written softplus: `tf.math.log_sigmoid` and
    `tf.nn.softplus` are the more accurate forms, and the naive ones lose precision (measured under
    TF 2.21: up to ~10^6 ulp for `log(sigmoid(z))` at z in [-15, 15], up to 16361 ulp for
    softplus at negative x), so the forward values would change by more than rounding. Nor for a
    plain `log(x)`: clipping or an epsilon is a choice that changes values. Nor for a binary
    cross-entropy written out on a sigmoid, `y * log(p) + (1 - y) * log(1 - p)` with `p =
    tf.sigmoid(z)` (one finding on the whole sum, naming `-tf.nn.sigmoid_cross_entropy_with_logits(
    labels=y, logits=z)`): measured on TF 2.21, the written-out form is up to 29 ulp off for |z| <= 4
    and a few percent off where the sigmoid rounds next to 1, so the logits form changes values by
    more than rounding; the written-out form gives `-inf` and a NaN gradient where the sigmoid rounds
    to 0 or 1.

    ## References
    - research/idioms.md, idiom 7 (E3-log-at-0, E3-xlogx, E3-fix-xlogy, E3-log-softmax, E3-log-eps, E9, E10)
    """

    CODE = "TF118"
    NAME = "log-at-zero"
    MESSAGE = "logarithm of a tensor that can be zero: -inf forward, inf/NaN gradient at 0"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.SINGULAR

    VALID = (
        Valid(
            """\
import tensorflow as tf

def log_barrier(margin):
    if margin > 0.0:
        return -tf.math.log(margin)
    return margin * 0.0

w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    loss = log_barrier(w - 1.0)
""",
            note="guarded by an if on the same name (on a non-scalar tensor, TF102 rewrites that if)",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
eps = 1e-7
with tf.GradientTape() as tape:
    a = tf.math.log(x + 1e-8)
    b = tf.math.log(tf.maximum(x, eps))
    c = tf.math.log(tf.clip_by_value(x, 1e-7, 1.0))
    d = tf.math.log(tf.exp(x))
    e = tf.math.log(2.0)
""",
            note="arguments kept away from zero, and a constant",
        ),
        Valid(
            """\
import tensorflow as tf

z = tf.Variable([0.0, 200.0])
with tf.GradientTape() as tape:
    log_probs = tf.nn.log_softmax(z)
    entropy = tf.math.xlogy(z, z)
    softplus = tf.nn.softplus(z)
probs = tf.math.log(tf.nn.softmax(z))
""",
            note="the stable forms already, and a log(softmax) after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, tf.math.log(x), 0.0)
""",
            note="the tf.where trap: TF113 reports it",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

z = tf.Variable([[0.0, 200.0], [1.0, 2.0]])
with tf.GradientTape() as tape:
    log_probs = tf.math.log(tf.nn.softmax(z))
    also = tf.math.log(tf.keras.activations.softmax(z))
""",
            """\
import tensorflow as tf

z = tf.Variable([[0.0, 200.0], [1.0, 2.0]])
with tf.GradientTape() as tape:
    log_probs = tf.nn.log_softmax(z)
    also = tf.nn.log_softmax(z)
""",
            note="a probability that underflows to 0. Verdict failed: where softmax underflowed the original "
            "is -inf and the fix is finite (the point of the fix), which the ulp contract does not admit",
            verdict="failed",
        ),
        Invalid(
            """\
import tensorflow as tf

z = tf.Variable([[0.0, 200.0], [1.0, 2.0]])
with tf.GradientTape() as tape:
    by_column = tf.math.log(tf.nn.softmax(z, axis=0))
""",
            """\
import tensorflow as tf

z = tf.Variable([[0.0, 200.0], [1.0, 2.0]])
with tf.GradientTape() as tape:
    by_column = tf.nn.log_softmax(z, axis=0)
""",
            note="another axis. Verdict failed: the probe's tf.function inputs have unknown rank, on which "
            "softmax and log_softmax with axis=0 both raise (TF 2.21)",
            verdict="failed",
        ),
        Invalid(
            """\
import tensorflow as tf

p = tf.Variable([0.0, 0.25, 0.75])
with tf.GradientTape() as tape:
    entropy = -tf.reduce_sum(p * tf.math.log(p))
    other = tf.math.log(p) * p
    negated = -p * tf.math.log(p)
""",
            """\
import tensorflow as tf

p = tf.Variable([0.0, 0.25, 0.75])
with tf.GradientTape() as tape:
    entropy = -tf.reduce_sum(tf.math.xlogy(p, p))
    other = tf.math.xlogy(p, p)
    negated = -tf.math.xlogy(p, p)
""",
            note="the entropy term at p == 0",
        ),
        Invalid(
            """\
import tensorflow as tf

z = tf.Variable([-100.0, 0.0])
with tf.GradientTape() as tape:
    a = tf.math.log(tf.sigmoid(z))
    b = tf.math.log(1.0 + tf.exp(z))
    c = tf.math.log1p(tf.exp(z))
""",
            None,
            note="log_sigmoid and softplus are more accurate than the naive forms: values would change",
        ),
        Invalid(
            """\
import tensorflow as tf

p = tf.Variable([0.0, 0.5])
with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(tf.math.log(p))
""",
            None,
            note="a plain log: clipping or an epsilon is the user's choice",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([[0.5], [-0.5]])
x = tf.constant([[1.0, 2.0], [3.0, -1.0]])
y = tf.constant([[1.0], [0.0]])
with tf.GradientTape() as tape:
    z = tf.matmul(x, w)
    p = tf.sigmoid(z)
    loss = -tf.reduce_mean(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
g = tape.gradient(loss, w)
""",
            None,
            note="a written-out binary cross-entropy: one finding, pointing at the logits form",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        name = self.context.analysis.is_tf_call(node)
        if name in LOG:
            self._log(node)
        elif name in LOG1P:
            arg = first_argument(node, ("x", "logits"))
            if arg is not None and self._is_exp(arg) and self.context.on_path(arg):
                self._softplus(node)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.Add):
            entropy = self._cross_entropy(node)
            if entropy is not None and feeds_gradient(self.context, node):
                labels, logits = entropy
                self.report(
                    node,
                    "binary cross-entropy written out on a sigmoid: -inf forward and NaN gradient where the "
                    "sigmoid rounds to 0 or 1",
                    no_fix_reason=f"use -tf.nn.sigmoid_cross_entropy_with_logits(labels={labels}, logits={logits}); "
                    "its values differ from this form by more than rounding near 0 and 1, so it is not applied",
                )
            return
        if not isinstance(node.operator, cst.Multiply):
            return
        found = self._xlogx_operand(node)
        if found is None or not feeds_gradient(self.context, node):
            return
        operand, sign = found
        context = self.context
        if not is_pure(operand, context.analysis):
            self.report(
                node,
                "x * log(x) of a tensor that can be zero: NaN forward and gradient at 0",
                no_fix_reason="the operand has side effects or cost (a call); bind it to a name first",
            )
            return
        tf, import_edits = context.tf()
        value = context.text(operand)
        self.report(
            node,
            "x * log(x) of a tensor that can be zero: NaN forward and gradient at 0",
            edits=(context.replace(node, f"{sign}{tf}.math.xlogy({value}, {value})"), *import_edits),
            description="tf.math.xlogy: the same values for x > 0, 0 with gradient 0 at x == 0",
        )

    # ------------------------------------------------------------------ tf.math.log(...)
    def _log(self, node: cst.Call) -> None:
        context = self.context
        arg = first_argument(node, ("x", "logits"))
        if arg is None:
            return
        inner = context.analysis.is_tf_call(arg) if isinstance(arg, cst.Call) else None
        # A Keras activation is not a tensor to the analysis: ask about its input instead.
        activation = inner in SOFTMAX | SIGMOID
        probed = first_argument(arg, ("x", "logits")) if isinstance(arg, cst.Call) and activation else arg
        if probed is None or not context.on_path(probed) or not feeds_gradient(context, node):
            return
        if inner in SOFTMAX and isinstance(arg, cst.Call):
            self._log_softmax(node, arg, inner)
            return
        if inner in SIGMOID:
            self.report(
                node,
                "log of a sigmoid: -inf forward and NaN gradient where the sigmoid underflows",
                no_fix_reason="use tf.math.log_sigmoid: more accurate than log(sigmoid), so values change",
            )
            return
        if self._one_plus_exp(arg):
            self._softplus(node)
            return
        if guarded_from_zero(arg, context.analysis, context.function, context.ancestors) or self._in_where(arg):
            return
        if self._in_xlogx(node) or self._in_cross_entropy(node):
            return
        self.report(
            node,
            no_fix_reason="clip or add eps: a choice that changes values; "
            "tf.math.log(tf.clip_by_value(x, eps, 1.0)) keeps values in range",
        )

    def _log_softmax(self, node: cst.Call, softmax: cst.Call, name: str) -> None:
        context = self.context
        message = "log of a softmax: -inf forward and NaN gradient where a probability underflows"
        allowed = SOFTMAX_KEYWORDS.get(name, {"axis"})
        positional = [a for a in softmax.args if a.keyword is None]
        keywords = [a.keyword.value for a in softmax.args if a.keyword is not None]
        logits = min(len(positional), 1) + keywords.count("logits")
        if (
            any(a.star for a in softmax.args)
            or logits != 1
            or len(positional) > 2
            or set(keywords) - allowed
            or (len(positional) == 2 and "axis" in keywords)
        ):
            self.report(node, message, no_fix_reason="unusual softmax arguments: write tf.nn.log_softmax by hand")
            return
        tf, import_edits = context.tf()
        args = ", ".join(context.text(a.value) if a.keyword is None else _arg_text(a, context) for a in softmax.args)
        self.report(
            node,
            message,
            edits=(context.replace(node, f"{tf}.nn.log_softmax({args})"), *import_edits),
            description="tf.nn.log_softmax: within a few ulp, finite where a probability underflows",
            forward=Forward.ULP,
        )

    def _softplus(self, node: cst.Call) -> None:
        self.report(
            node,
            "hand-written softplus: exp overflows to inf, NaN gradient for large x",
            no_fix_reason="use tf.nn.softplus: more accurate than the naive form for negative x, so values change",
        )

    # ------------------------------------------------------------------ shapes
    def _is_exp(self, expr: cst.BaseExpression) -> bool:
        return isinstance(expr, cst.Call) and self.context.analysis.is_tf_call(expr) in EXP

    def _one_plus_exp(self, expr: cst.BaseExpression) -> bool:
        if not (isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add)):
            return False
        for one, other in ((expr.left, expr.right), (expr.right, expr.left)):
            if numeric_literal(one) == 1.0 and self._is_exp(other):
                return True
        return False

    def _log_operand(self, expr: cst.BaseExpression) -> Optional[cst.BaseExpression]:
        if isinstance(expr, cst.Call) and self.context.analysis.is_tf_call(expr) in LOG:
            return first_argument(expr, ("x", "logits"))
        return None

    def _xlogx_operand(self, node: cst.BinaryOperation) -> Optional[Tuple[cst.BaseExpression, str]]:
        """(``x``, sign) when ``node`` is ``x * log(x)``, ``log(x) * x`` or ``-x * log(x)`` of a tensor on
        the path that can be zero; negating is exact, so ``-xlogy(x, x)`` has the same values."""
        context = self.context
        for side, other in ((node.right, node.left), (node.left, node.right)):
            operand = self._log_operand(side)
            if operand is None:
                continue
            sign = ""
            if isinstance(other, cst.UnaryOperation) and isinstance(other.operator, cst.Minus) and not other.lpar:
                other, sign = other.expression, "-"
            if not _same(operand, other):
                continue
            if (
                not context.on_path(operand)
                or guarded_from_zero(operand, context.analysis, context.function, context.ancestors)
                or self._in_where(operand)
            ):
                return None
            return operand, sign
        return None

    def _in_xlogx(self, log: cst.Call) -> bool:
        parent = self.context.parent
        return (
            isinstance(parent, cst.BinaryOperation)
            and (parent.left is log or parent.right is log)
            and (self._xlogx_operand(parent) is not None)
        )

    def _cross_entropy(self, node: cst.BinaryOperation) -> Optional[Tuple[str, str]]:
        """(labels, logits) texts when ``node`` is ``y * log(p) + (1 - y) * log(1 - p)`` (factors and terms
        in either order) with ``p`` a sigmoid of logits on the gradient path: inline, or a name bound once
        to ``tf.sigmoid(z)``."""
        for first, second in ((node.left, node.right), (node.right, node.left)):
            one = self._times_log(first)
            other = self._times_log(second)
            if one is None or other is None:
                continue
            (label, p), (complement, q) = one, other
            if not (_one_minus(complement, label) and _one_minus(q, p)):
                continue
            logits = self._sigmoid_logits(p)
            if logits is None or not self.context.on_path(logits):
                continue
            return self.context.text(label), self.context.text(logits)
        return None

    def _times_log(self, expr: cst.BaseExpression) -> Optional[Tuple[cst.BaseExpression, cst.BaseExpression]]:
        """(factor, log's argument) for ``factor * log(arg)`` or ``log(arg) * factor``."""
        if not (isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Multiply)):
            return None
        for log, factor in ((expr.right, expr.left), (expr.left, expr.right)):
            operand = self._log_operand(log)
            if operand is not None:
                return factor, operand
        return None

    def _sigmoid_logits(self, p: cst.BaseExpression) -> Optional[cst.BaseExpression]:
        analysis = self.context.analysis
        if isinstance(p, cst.Name):
            definitions = analysis.definitions(p.value, self.context.function)
            if len(definitions) != 1:
                return None
            p = definitions[0]
        if isinstance(p, cst.Call) and analysis.is_tf_call(p) in SIGMOID:
            return first_argument(p, ("x", "logits"))
        return None

    def _in_cross_entropy(self, log: cst.Call) -> bool:
        """Whether the ``log`` call is one of the two terms of a written-out binary cross-entropy (reported
        once, on the whole sum)."""
        ancestors = self.context.ancestors
        if len(ancestors) < 3:
            return False
        product, total = ancestors[-2], ancestors[-3]
        return (
            isinstance(product, cst.BinaryOperation)
            and isinstance(total, cst.BinaryOperation)
            and isinstance(total.operator, cst.Add)
            and (total.left is product or total.right is product)
            and self._cross_entropy(total) is not None
        )

    def _in_where(self, arg: cst.BaseExpression) -> bool:
        """Inside a ``tf.where`` whose condition tests the same names (TF113's trap check owns it), or in
        the body of an ``if`` that does (the author guarded it; on a tensor, TF102 owns that ``if``)."""
        names = set(names_in(arg))
        ancestors = self.context.ancestors
        for index, node in enumerate(ancestors):
            if isinstance(node, cst.Call) and self.context.analysis.is_tf_call(node) in WHERE and node.args:
                if names & set(names_in(node.args[0].value)):
                    return True
            inside = ancestors[index + 1] if index + 1 < len(ancestors) else None
            if isinstance(node, cst.If) and inside is not node.test and names & set(names_in(node.test)):
                return True
        return False


def _same(a: cst.BaseExpression, b: cst.BaseExpression) -> bool:
    return a.deep_equals(b)


def _one_minus(expr: cst.BaseExpression, value: cst.BaseExpression) -> bool:
    """Whether ``expr`` is ``1 - value`` (``1.0 - value``)."""
    return (
        isinstance(expr, cst.BinaryOperation)
        and isinstance(expr.operator, cst.Subtract)
        and numeric_literal(expr.left) == 1.0
        and _same(expr.right, value)
    )


def _arg_text(arg: cst.Arg, context: RuleContext) -> str:
    assert arg.keyword is not None
    return f"{arg.keyword.value}={context.text(arg.value)}"
