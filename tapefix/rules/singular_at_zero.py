"""TF113: a square root or norm that can be taken at zero, and the ``tf.where`` NaN trap."""

from __future__ import annotations

from typing import List, Optional, Tuple

import libcst as cst

from tapefix.analysis.expressions import first_argument, guarded_from_zero, is_pure, names_in, numeric_literal
from tapefix.analysis.tfops import NORM, POW, SQRT, TRAP_SAFE_VALUE, WHERE, XLA_ONLY_TRAP
from tapefix.analysis.uses import feeds_gradient
from tapefix.analysis.walk import children
from tapefix.rule import Invalid, Rule, RuleContext, Valid
from tapefix.types import Edit, Forward, Safety

# Operands of ``>`` that need parentheses of their own.
_LOOSE = (cst.Comparison, cst.BooleanOperation, cst.IfExp, cst.Lambda, cst.NamedExpr)


class SingularAtZero(Rule):
    """
    ## What it does
    Finds, while a tape records:

    - `tf.sqrt(v)`, `v ** 0.5` (any exponent strictly between 0 and 1) and `tf.norm(v)` of a tensor on
      the gradient path that nothing keeps away from zero (no epsilon, `tf.maximum`, `tf.clip_by_value`,
      `tf.exp`, ...);
    - the `tf.where` NaN trap: `tf.where(v > 0, tf.math.log(v), 0.0)`, where an op inside a branch
      (`sqrt`, `rsqrt`, `reciprocal`, `log`, `log1p`, `acos`, `asin`, a fractional power) has an
      infinite derivative in the lanes the branch does not select, and the condition tests the same
      value.

    Arguments that cannot be zero are left alone as for TF103 (`tf.sqrt(d ** 2 + tf.square(1e-3))`,
    a helper's `tf.sqrt(var + eps)`), and so are values that only pick an integer index. A single
    continuous random draw can be exactly 0 (TF 2.21: about 1 element in 10^7 of `tf.random.normal`
    or `tf.random.uniform`); two independent draws at once, `tf.sqrt(tf.square(a) + tf.square(b))`,
    or every element of a vector, `tf.norm` of a latent vector drawn at random, are taken as never 0.

    ## Why is this bad?
    The derivative of `sqrt` at 0 is infinite: `tf.sqrt([0., 4.])` has gradient `[inf, 0.25]`, and
    `tf.norm([0., 0.])` (a Euclidean distance between identical points, a weight vector initialised
    to zeros) has gradient `[nan, nan]` in eager mode, `tf.function` and XLA alike (TF 2.21). One such
    lane turns the whole update into NaN.

    Masking with `tf.where` afterwards does not help: the unselected branch is still differentiated,
    and `0 * inf` is NaN. For `log`, `log1p`, `acos` and fractional powers the gradient is NaN in every
    mode; for `sqrt`, `rsqrt` and `reciprocal` TensorFlow's eager kernels happen to mask it, but under
    XLA (`jit_compile=True`) it is NaN as well.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        squared = tf.reduce_sum(tf.square(a - b))
        distance = tf.sqrt(squared)
        y = tf.where(x > 0, tf.math.log(x), 0.0)
    ```

    ## Use instead
    The double-where form: the inner `tf.where` feeds the op a harmless value in the lanes the outer
    one discards, so the gradient there is 0. `tf.norm(v)` becomes the same form over the sum of
    squares `tf.reduce_sum(tf.square(v))`.
    A compound argument (and the sum of squares of a norm, and a long `tf.where` condition) is bound
    once, to a fresh name on a new line above the statement; in a lambda or a comprehension it is
    written out in place.
    ```python
    with tf.GradientTape() as tape:
        sum_of_squares = tf.reduce_sum(tf.square(a - b))
        distance = tf.where(sum_of_squares > 0, tf.sqrt(tf.where(sum_of_squares > 0, sum_of_squares, 1.0)), 0.0)
        y = tf.where(x > 0, tf.math.log(tf.where(x > 0, x, 1.0)), 0.0)
    ```

    ## Fix safety
    Unsafe. For the `tf.where` trap the forward values are bit-identical and only the NaN gradient
    of the discarded lanes becomes 0. For `sqrt`, fractional powers and `tf.norm` the forward values
    are identical where the argument is positive or zero (the norm is rewritten as the square root of
    the same sum of squares `tf.norm` computes); where the argument is negative, NaN becomes 0. The
    gradient at 0 becomes 0 where it was inf or NaN. An argument with side effects or cost (a model
    call) is computed once on the line above when no other call of the statement runs before it, and
    is otherwise reported without a fix; norms with another `ord`
    (1, inf, a matrix 2-norm) have no singularity at 0 worth a rewrite and are left alone.

    ## References
    - research/idioms.md, idioms 6, 8, 31 and 34 (E2, E4, E5 and E8; E4-fix-double-where, E2-fix, E5-fix)
    """

    CODE = "TF113"
    NAME = "singular-at-zero"
    MESSAGE = "square root or norm of a tensor that can be zero: inf/NaN gradient at 0"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.SINGULAR

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
eps = 1e-12
with tf.GradientTape() as tape:
    a = tf.sqrt(x + 1e-8)
    b = tf.sqrt(tf.maximum(x, 1e-12))
    c = tf.norm(tf.exp(x))
    d = tf.sqrt(x * x + eps)
""",
            note="arguments kept away from zero",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    l1 = tf.norm(x, ord=1)
    cube = x ** 1.5
    root = tf.sqrt(tf.constant(2.0))
r = tf.sqrt(x)
""",
            note="an L1 norm and a power whose derivative is finite at 0; a constant; code after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
mask = tf.constant([True, False])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, tf.math.log(tf.where(x > 0, x, 1.0)), 0.0)
    z = tf.where(x > 0, tf.sqrt(tf.where(x > 0, x, 1.0)), 0.0)
""",
            note="the double-where form already",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

a = tf.Variable([1.0, 2.0])
b = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    distance = tf.norm(a - b)
""",
            """\
import tensorflow as tf

a = tf.Variable([1.0, 2.0])
b = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    sum_of_squares = tf.reduce_sum(tf.square(a - b))
    distance = tf.where(sum_of_squares > 0, tf.sqrt(tf.where(sum_of_squares > 0, sum_of_squares, 1.0)), 0.0)
""",
            note="a Euclidean distance between identical points",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([[0.0, 0.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    row_norms = tf.norm(w, axis=1)
""",
            """\
import tensorflow as tf

w = tf.Variable([[0.0, 0.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    sum_of_squares = tf.reduce_sum(tf.square(w), axis=1)
    row_norms = tf.where(sum_of_squares > 0, tf.sqrt(tf.where(sum_of_squares > 0, sum_of_squares, 1.0)), 0.0)
""",
            note="per-row norms with a zero row",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    y = tf.sqrt(x) + x ** 0.5
""",
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, tf.sqrt(tf.where(x > 0, x, 1.0)), 0.0) + tf.where(x > 0, tf.where(x > 0, x, 1.0) ** 0.5, 0.0)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, tf.math.log(x), 0.0)
""",
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, tf.math.log(tf.where(x > 0, x, 1.0)), 0.0)
""",
            note="the tf.where trap: NaN gradient in every mode",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(x <= 0, 0.0, tf.sqrt(x))
""",
            """\
import tensorflow as tf

x = tf.Variable([0.0, 2.0, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(x <= 0, 0.0, tf.sqrt(tf.where(x <= 0, 1.0, x)))
""",
            note="the guarded op in the branch selected when the condition is false; NaN under XLA",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
x = tf.Variable([[0.0, 4.0]])
with tf.GradientTape() as tape:
    y = tf.sqrt(model(x))
""",
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
x = tf.Variable([[0.0, 4.0]])
with tf.GradientTape() as tape:
    radicand = model(x)
    y = tf.where(radicand > 0, tf.sqrt(tf.where(radicand > 0, radicand, 1.0)), 0.0)
""",
            note="the argument calls a model: it is computed once, on the line above",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([0.0, 4.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(model(x)) + tf.sqrt(model(x))
""",
            None,
            note="another call runs before the argument: computing it first would change their order",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        name = self.context.analysis.is_tf_call(node)
        if name in WHERE:
            self._where_trap(node)
        elif name in SQRT:
            self._root(node, first_argument(node, ("x", "tensor", "input_tensor")))
        elif name in POW and len(node.args) == 2 and _fractional(node.args[1].value):
            self._root(node, node.args[0].value)
        elif name in NORM:
            self._norm(node)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.Power) and _fractional(node.right):
            self._root(node, node.left)

    # ------------------------------------------------------------------ sqrt, x ** p, tf.norm
    def _root(self, node: cst.CSTNode, arg: Optional[cst.BaseExpression]) -> None:
        context = self.context
        if (
            arg is None
            or not context.on_path(arg)
            or guarded_from_zero(arg, context.analysis, context.function, context.ancestors)
            or self._in_trap_branch(arg)
            or not feeds_gradient(context, node)
        ):
            return
        tf, import_edits = context.tf()
        # The argument appears three times in the rewrite: named once, on the line above.
        named = context.name_once(arg, context.text(arg), "radicand", worth=not isinstance(arg, cst.Name))
        if named is None:
            self.report(node, no_fix_reason="the argument has side effects or cost (a call); bind it to a name first")
            return
        value, binding = named
        import_edits = (*import_edits, *binding)
        positive = f"{value} > 0" if binding else f"{_operand(arg, value)} > 0"
        safe = f"{tf}.where({positive}, {value}, 1.0)"
        start, end = context.span(node)
        arg_start, arg_end = context.span(arg)
        inner = context.source[start:arg_start] + safe + context.source[arg_end:end]
        self.report(
            node,
            edits=(Edit(start, end, f"{tf}.where({positive}, {inner}, 0.0)"), *import_edits),
            description="double-where: the same value where the argument is positive, gradient 0 at 0",
        )

    def _norm(self, node: cst.Call) -> None:
        context = self.context
        arg = first_argument(node, ("x", "tensor", "input_tensor"))
        # The norm is 0 only where every element is: ask about the norm itself.
        if (
            arg is None
            or not context.on_path(arg)
            or guarded_from_zero(node, context.analysis, context.function, context.ancestors)
            or not feeds_gradient(context, node)
        ):
            return
        positional = [a for a in node.args if a.keyword is None]
        keywords = {a.keyword.value: a for a in node.args if a.keyword is not None}
        ord_arg = keywords.get("ord")
        if ord_arg is not None and _string(ord_arg.value) not in ("euclidean", "fro"):
            return
        if len(positional) > 1 or any(a.star for a in node.args) or set(keywords) - {"ord", "axis", "keepdims"}:
            self.report(node, no_fix_reason="positional or unusual arguments: rewrite by hand with a double-where")
            return
        tf, import_edits = context.tf()
        extra = "".join(f", {context.text(keywords[k])}" for k in ("axis", "keepdims") if k in keywords)
        squares = f"{tf}.reduce_sum({tf}.square({context.text(arg)}){extra})"
        # The sum of squares appears three times in the rewrite: named once, on the line above.
        named = context.name_once(arg, squares, "sum_of_squares")
        if named is None:
            self.report(node, no_fix_reason="the argument has side effects or cost (a call); bind it to a name first")
            return
        squares, binding = named
        import_edits = (*import_edits, *binding)
        text = f"{tf}.where({squares} > 0, {tf}.sqrt({tf}.where({squares} > 0, {squares}, 1.0)), 0.0)"
        self.report(
            node,
            edits=(context.replace(node, text), *import_edits),
            description="the norm as a double-where square root of the same sum of squares: gradient 0 at 0",
        )

    def _in_trap_branch(self, arg: cst.BaseExpression) -> bool:
        """True when ``arg`` sits in a branch of an enclosing ``tf.where`` whose condition tests the same
        names: the trap check owns that case."""
        ancestors = self.context.ancestors
        for index in range(len(ancestors) - 1, -1, -1):
            node = ancestors[index]
            if isinstance(node, cst.Call) and self.context.analysis.is_tf_call(node) in WHERE:
                branch = _where_branch(node, ancestors[index + 1] if index + 1 < len(ancestors) else None)
                if branch is not None and set(names_in(node.args[0].value)) & set(names_in(arg)):
                    return True
        return False

    # ------------------------------------------------------------------ the tf.where trap
    def _where_trap(self, node: cst.Call) -> None:
        context = self.context
        if len(node.args) != 3 or any(a.keyword is not None or a.star for a in node.args):
            return
        condition = node.args[0].value
        condition_names = set(names_in(condition))
        trapped: List[Tuple[cst.BaseExpression, str, bool, str]] = []
        for selected_when, branch in ((True, node.args[1].value), (False, node.args[2].value)):
            for arg, safe, op in _singular_args(branch, context):
                if set(names_in(arg)) & condition_names and context.on_path(arg) and not _is_where(arg, context):
                    trapped.append((arg, safe, selected_when, op))
        if not trapped or not feeds_gradient(context, node):
            return
        xla_only = all(op in XLA_ONLY_TRAP for _, _, _, op in trapped)
        message = "tf.where over an op with an infinite derivative in the discarded lanes: " + (
            "NaN gradient under XLA (jit_compile=True)" if xla_only else "NaN gradient in every mode"
        )
        if not _pure_condition(condition, context):
            self.report(node, message, no_fix_reason="the condition has side effects or cost; bind it to a name first")
            return
        tf, import_edits = context.tf()
        cond = context.text(condition)
        edits = []
        if len(cond) > 24 or "(" in cond:
            # The condition would appear twice more: named once, on the line above.
            bound = context.bind_above(cond, "mask")
            if bound is not None:
                cond, binding = bound
                edits += [binding, context.replace(condition, cond)]
        for arg, safe, selected_when, _ in trapped:
            value = context.text(arg)
            guarded = (
                f"{tf}.where({cond}, {value}, {safe})" if selected_when else f"{tf}.where({cond}, {safe}, {value})"
            )
            edits.append(context.replace(arg, guarded))
        self.report(
            node,
            message,
            edits=(*edits, *import_edits),
            description="double-where: a harmless value in the discarded lanes, same forward values",
        )


def _pure_condition(expr: cst.BaseExpression, context: RuleContext) -> bool:
    """True when evaluating the condition twice is the same as once."""
    if isinstance(expr, cst.Comparison):
        return _pure_condition(expr.left, context) and all(
            _pure_condition(c.comparator, context) for c in expr.comparisons
        )
    if isinstance(expr, cst.BooleanOperation):
        return _pure_condition(expr.left, context) and _pure_condition(expr.right, context)
    return is_pure(expr, context.analysis)


def _fractional(exponent: cst.BaseExpression) -> bool:
    """An exponent strictly between 0 and 1: the power's derivative is infinite at 0."""
    value = numeric_literal(exponent)
    if value is None and isinstance(exponent, cst.BinaryOperation) and isinstance(exponent.operator, cst.Divide):
        top, bottom = numeric_literal(exponent.left), numeric_literal(exponent.right)
        value = top / bottom if top is not None and bottom else None
    return value is not None and 0 < value < 1


def _string(expr: cst.BaseExpression) -> Optional[str]:
    if isinstance(expr, cst.SimpleString):
        return str(expr.evaluated_value)
    return None


def _operand(expr: cst.BaseExpression, text: str) -> str:
    """``text`` ready to stand as the left operand of ``>``."""
    if isinstance(expr, _LOOSE) and not expr.lpar:
        return f"({text})"
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not) and not expr.lpar:
        return f"({text})"
    return text


def _is_where(expr: cst.BaseExpression, context: RuleContext) -> bool:
    return isinstance(expr, cst.Call) and context.analysis.is_tf_call(expr) in WHERE


def _where_branch(where: cst.Call, child: Optional[cst.CSTNode]) -> Optional[int]:
    """Which argument of ``where`` (1 or 2) ``child`` is, if it is a branch."""
    for index in (1, 2):
        if index < len(where.args) and where.args[index] is child:
            return index
    return None


def _singular_args(expr: cst.CSTNode, context: RuleContext) -> List[Tuple[cst.BaseExpression, str, str]]:
    """(argument, in-domain value, op) for each op inside ``expr`` with an infinite derivative somewhere."""
    analysis = context.analysis
    found: List[Tuple[cst.BaseExpression, str, str]] = []

    def walk(node: cst.CSTNode) -> None:
        if isinstance(node, cst.Call):
            name = analysis.is_tf_call(node)
            if name in TRAP_SAFE_VALUE and node.args and node.args[0].keyword is None:
                if name not in POW or (len(node.args) == 2 and _singular_exponent(node.args[1].value)):
                    found.append((node.args[0].value, TRAP_SAFE_VALUE[name], name))
        elif isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Power):
            if _singular_exponent(node.right):
                found.append((node.left, "1.0", "pow"))
        for child in children(node):
            walk(child)

    walk(expr)
    return found


def _singular_exponent(exponent: cst.BaseExpression) -> bool:
    """A literal exponent whose power has an infinite derivative at 0 (fractional below 1, or negative)."""
    value = numeric_literal(exponent)
    if value is None:
        return _fractional(exponent)
    return value < 1 and value != 0 and (value < 0 or value != int(value))
