"""TF101: rounding a tensor on the gradient path."""

from __future__ import annotations

from typing import List, Tuple

import libcst as cst

from tapefix.analysis.expressions import binds_tighter_than_sum
from tapefix.analysis.syntax import argument, is_integer_dtype, walk
from tapefix.analysis.tfops import FLOOR_DIVISION, NUMPY_ROUNDING, ROUNDING
from tapefix.analysis.uses import feeds_gradient
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Edit, Forward, Safety

# Parents under which a sum needs no parentheses of its own.
_STANDALONE = (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return, cst.Arg, cst.Element, cst.Index)
_FLOOR_DIVISION_MESSAGE = "floor division of a tensor on the gradient path: the gradient is cut"
# Operands that need no parentheses of their own on either side of ``/``.
_TIGHT = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)


class RoundingOnTensor(Rule):
    """
    ## What it does
    Finds `np.floor`, `np.ceil`, `np.round`, `np.rint`, TensorFlow's `tf.floor`, `tf.math.ceil`,
    `tf.round`, `tf.math.rint`, and Keras's `keras.ops.floor`, `ceil`, `round` and `trunc` applied to a
    tensor on the gradient path while a tape records; and floor division of a float tensor on the
    gradient path: `tf.math.floordiv(x, y)`, `x // y`, `tf.experimental.numpy.floor_divide` and
    `keras.ops.floor_divide`.

    ## Why is this bad?
    Rounding has no useful gradient. TensorFlow registers none for these ops, so everything upstream
    of the rounding gets a `None` gradient. Floor division is a rounding too: on TF 2.21
    `tape.gradient` through `tf.math.floordiv(x, y)` or `x // y` on float tensors is `None` for both
    `x` and `y` (`tf.math.floormod` and `%` do have a gradient, and are not flagged). The NumPy
    forms are worse: `np.floor(tf.Variable(1.7))` returns a NumPy scalar, and `tape.gradient` on it raises
    `AttributeError: 'numpy.float32' object has no attribute '_id'` (TF 2.21).

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = np.floor(x)
    ```

    ## Use instead
    A straight-through estimator: the forward value is the rounded value, bit for bit; the gradient
    is the identity.
    ```python
    with tf.GradientTape() as tape:
        y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))
    ```

    ## Fix safety
    Unsafe: the forward values are bit-identical on finite inputs (checked by the verifier; ±inf
    become NaN), but the gradient is a surrogate, the identity, that the original code never had.
    The rounded argument appears three times in the rewrite; an argument with a call or a long one is
    computed once, on a new line above the statement, bound to a fresh name. An argument with side
    effects or cost (a model call, a random op) is moved there only when no other call of the statement
    runs before it, and otherwise the finding is reported without a fix.
    `np.round(x, decimals)`, `np.trunc` and `np.fix` are reported without a fix.

    A floor division becomes `tf.stop_gradient(tf.math.floordiv(x, y)) + (x / y - tf.stop_gradient(x / y))`:
    the user's own call (or `x // y`) stays inside `tf.stop_gradient`, and the gradient is that of
    `x / y` for both operands. Checked on TF 2.21 on 200,000 random float32 pairs: the forward values
    equal the original's on every finite result (a `-0.0` quotient becomes `0.0`, as with the rounding
    ops) and a division by zero gives NaN where the original gives ±inf. A long operand or one with a
    call is named once above, as for rounding. Not flagged: an integer operand (a cast to an integer
    dtype), a quotient that only becomes an index, and a remainder written out, `x - (x // y) * y`.

    ## References
    - research/idioms.md, idioms 1 and 2 (STE forms checked on 2M values)
    """

    CODE = "TF101"
    NAME = "rounding-on-tensor"
    MESSAGE = "rounding a tensor on the gradient path: the gradient is cut"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.STRAIGHT_THROUGH

    VALID = (
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = x * 2.0
steps = np.floor(3.7)
""",
            note="rounding of a Python number, and outside the tape",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
data = np.array([0.3, 1.6])
with tf.GradientTape() as tape:
    bins = np.floor(data * 10)
    y = tf.reduce_sum(x * bins)
""",
            note="NumPy data prepared without the gradient path",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x ** 2)
    with tape.stop_recording():
        shown = tf.round(y)
""",
            note="under stop_recording nothing is recorded",
        ),
        Valid(
            """\
import tensorflow.experimental.numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = np.sum(x)
""",
            note="np bound to tf.experimental.numpy, and not a rounding call",
        ),
        Valid(
            """\
import tensorflow as tf

def soft_step(v, sharpness=8.0):
    base = tf.floor(v)
    return base + tf.sigmoid(sharpness * (v - base - 0.5))

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = soft_step(x)
    frac = x - tf.round(x)
""",
            note="the rounding meets its own argument in a difference (the fractional part): the gradient "
            "flows through the argument, and the step is the point",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
table = tf.constant([[1.0, 2.0, 3.0, 4.0]])
with tf.GradientTape() as tape:
    level = tf.cast(tf.round(x), tf.int32)
    picked = tf.gather(table, level, axis=1)
    hard = tf.round(x)
    ste = tf.stop_gradient(hard - x) + x
""",
            note="a rounded value that only becomes an integer index, or only enters tf.stop_gradient: "
            "no gradient was to flow through it",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0])
period = tf.Variable([2.0, 1.5, 0.3])
with tf.GradientTape() as tape:
    phase = x - (x // period) * period
    wrapped = tf.math.floormod(x, period)
    steps = tf.cast(x, tf.int32) // 2
""",
            note="a remainder written out, tf.math.floormod (it has a gradient), and integer floor division",
        ),
    )
    INVALID = (
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = np.floor(x)
""",
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))
""",
        ),
        Invalid(
            """\
import numpy as onp
import tensorflow as tf2

w = tf2.Variable([0.5, 1.5, 2.5])
with tf2.GradientTape() as tape:
    loss = tf2.reduce_sum(2.0 * onp.round(w * 3.0))
""",
            """\
import numpy as onp
import tensorflow as tf2

w = tf2.Variable([0.5, 1.5, 2.5])
with tf2.GradientTape() as tape:
    loss = tf2.reduce_sum(2.0 * (tf2.stop_gradient(tf2.round(w * 3.0)) + (w * 3.0 - tf2.stop_gradient(w * 3.0))))
""",
            note="aliases are resolved, and the sum is parenthesised inside a product",
        ),
        Invalid(
            """\
from tensorflow import GradientTape, Variable, math

v = Variable([0.2, -1.4])
with GradientTape() as g:
    q = math.ceil(v)
""",
            """\
from tensorflow import GradientTape, Variable, math
import tensorflow as tf

v = Variable([0.2, -1.4])
with GradientTape() as g:
    q = tf.stop_gradient(math.ceil(v)) + (v - tf.stop_gradient(v))
""",
            note="a module with no TensorFlow module binding gets `import tensorflow as tf`",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    y = np.round(model(tf.ones((2, 3))))
""",
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    rounded_input = model(tf.ones((2, 3)))
    y = tf.stop_gradient(tf.round(rounded_input)) + (rounded_input - tf.stop_gradient(rounded_input))
""",
            note="the argument calls a model: it is computed once, on the line above",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(model(tf.ones((2, 3)))) + tf.round(model(tf.ones((2, 3))))
""",
            None,
            note="another call runs before the argument: computing it first would change their order",
        ),
        Invalid(
            """\
import keras
import tensorflow as tf

x = tf.Variable([1.7, -2.2])
with tf.GradientTape() as tape:
    y = keras.ops.floor(x) * 2.0
""",
            """\
import keras
import tensorflow as tf

x = tf.Variable([1.7, -2.2])
with tf.GradientTape() as tape:
    y = (tf.stop_gradient(keras.ops.floor(x)) + (x - tf.stop_gradient(x))) * 2.0
""",
            note="Keras 3's rounding ops cut the gradient the same way",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.25, 2.75])
with tf.GradientTape() as tape:
    y = np.round(x, 1)
""",
            None,
            note="rounding to decimals has no bit-exact TensorFlow op",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf
from settings import STEP

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = np.floor(x / STEP)
""",
            """\
import numpy as np
import tensorflow as tf
from settings import STEP

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = tf.stop_gradient(tf.floor(x / STEP)) + (x / STEP - tf.stop_gradient(x / STEP))
""",
            note="a name imported from another module: the verifier never imports it, so the fix is unverified",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0])
y = tf.Variable([2.0, 1.5, 0.3])
with tf.GradientTape() as tape:
    q = tf.math.floordiv(x, y)
""",
            """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0])
y = tf.Variable([2.0, 1.5, 0.3])
with tf.GradientTape() as tape:
    q = tf.stop_gradient(tf.math.floordiv(x, y)) + (x / y - tf.stop_gradient(x / y))
""",
            note="floor division cuts the gradient for both operands; the straight-through form takes that "
            "of x / y. The divisor can be zero: there the original is ±inf and the fix NaN, and the "
            "verifier, which tries y = 0, rejects the fix",
            verdict="failed",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0])
with tf.GradientTape() as tape:
    q = tf.math.floordiv(x, 0.75)
""",
            """\
import tensorflow as tf

x = tf.Variable([7.5, -3.2, 1.0])
with tf.GradientTape() as tape:
    q = tf.stop_gradient(tf.math.floordiv(x, 0.75)) + (x / 0.75 - tf.stop_gradient(x / 0.75))
""",
            note="a divisor that is never zero: the forward values are the original's",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([0.3, 1.6, -2.2])
with tf.GradientTape() as tape:
    level = 2.0 * (w + 1.0) // 0.25
""",
            """\
import tensorflow as tf

w = tf.Variable([0.3, 1.6, -2.2])
with tf.GradientTape() as tape:
    num = 2.0 * (w + 1.0)
    level = tf.stop_gradient(num // 0.25) + (num / 0.25 - tf.stop_gradient(num / 0.25))
""",
            note="the `//` operator on a float tensor is the same op; an operand with parentheses is named once",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
with tf.GradientTape() as tape:
    b = tf.math.floordiv(model(tf.ones((4, 3))), 0.5 + tf.abs(model.trainable_variables[1]))
""",
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
with tf.GradientTape() as tape:
    num = model(tf.ones((4, 3)))
    den = 0.5 + tf.abs(model.trainable_variables[1])
    b = tf.stop_gradient(tf.math.floordiv(num, den)) + (num / den - tf.stop_gradient(num / den))
""",
            note="operands with calls are named once, in their order, on the lines above; the verifier has "
            "no input to vary (the model's weights), so the fix is unverified",
            verdict="unverified",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        if context.analysis.qualify(node.func) in FLOOR_DIVISION:
            dividend, divisor = argument(node, 0, "x"), argument(node, 1, "y")
            extra = [a for a in node.args if a.keyword is not None and a.keyword.value not in ("x", "y", "name")]
            if dividend is not None and divisor is not None and not extra and not any(a.star for a in node.args):
                self._floor_division(node, dividend, divisor, lambda a, b: f"{context.text(node.func)}({a}, {b})")
            return
        np_name = context.analysis.is_numpy_call(node)
        if np_name in NUMPY_ROUNDING or np_name in ("trunc", "fix"):
            op_text = None if np_name in ("trunc", "fix") else f"{{tf}}.{NUMPY_ROUNDING[np_name]}"
        elif context.analysis.qualify(node.func) in ROUNDING:
            op_text = context.text(node.func)
        else:
            return
        positional = [a for a in node.args if a.keyword is None and not a.star]
        if not positional or not context.on_path(positional[0].value):
            return
        if not feeds_gradient(context, node):
            return  # the rounded value only picks an index or goes into tf.stop_gradient: nothing is cut
        arg = positional[0].value
        if self._meets_own_argument(node, arg):
            return
        extra = [a for a in node.args if a is not positional[0] and not (a.keyword and a.keyword.value == "name")]
        if op_text is None:
            self.report(node, no_fix_reason=f"np.{np_name} has no bit-exact TensorFlow op; rewrite by hand")
            return
        if extra:
            self.report(node, no_fix_reason="extra arguments (decimals, out) have no TensorFlow equivalent")
            return
        tf, import_edits = context.tf()
        x = context.text(arg)
        # A short operation (`w * 3.0`) reads well three times; a call or a long expression does not.
        compound = not isinstance(arg, (cst.Name, cst.Attribute)) and (len(x) > 24 or "(" in x)
        named = context.name_once(arg, x, "rounded_input", worth=compound)
        if named is None:
            reason = "the argument has side effects or cost (a call); bind it to a name first"
            self.report(node, no_fix_reason=reason)
            return
        x, binding = named
        import_edits = (*import_edits, *binding)
        x_operand = x if x != context.text(arg) or binds_tighter_than_sum(arg) else f"({x})"
        op = op_text.format(tf=tf)
        text = f"{tf}.stop_gradient({op}({x})) + ({x_operand} - {tf}.stop_gradient({x}))"
        # The replaced span includes the call's own parentheses, if any.
        if node.lpar or not isinstance(context.parent, _STANDALONE):
            text = f"({text})"
        self.report(
            node,
            edits=(context.replace(node, text), *import_edits),
            description="straight-through rounding: same forward value, identity gradient",
        )

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        if isinstance(node.operator, cst.FloorDivide):
            self._floor_division(node, node.left, node.right, lambda a, b: f"{a} // {b}")

    def _floor_division(self, node: cst.BaseExpression, x: cst.BaseExpression, y: cst.BaseExpression, op) -> None:  # type: ignore[no-untyped-def]
        """``tf.math.floordiv(x, y)`` or ``x // y`` on the gradient path: the straight-through form keeps the
        user's own floor division inside ``tf.stop_gradient`` and takes the gradient of ``x / y``."""
        context = self.context
        if not (context.on_path(x) or context.on_path(y)):
            return
        if self._integer(x) or self._integer(y):
            return  # integer floor division: no gradient was to flow, and ``x / y`` would be a float
        if not feeds_gradient(context, node):
            return
        if self._meets_own_argument(node, x):
            return  # ``x - (x // y) * y``: a remainder, whose gradient flows through x
        tf, import_edits = context.tf()
        named: List[str] = []
        bindings: List[Edit] = []
        for operand, hint in ((x, "num"), (y, "den")):
            text = context.text(operand)
            compound = not isinstance(operand, (cst.Name, cst.Attribute)) and (len(text) > 24 or "(" in text)
            once = context.name_once(operand, text, hint, worth=compound)
            if once is None:
                reason = "an operand has side effects or cost (a call); bind it to a name first"
                self.report(node, message=_FLOOR_DIVISION_MESSAGE, no_fix_reason=reason)
                return
            named.append(once[0])
            bindings.extend(once[1])
        a, b = named
        if a == context.text(x) and b == context.text(y):
            floor = _strip(context.text(node)) if getattr(node, "lpar", None) else context.text(node)
        else:
            floor = op(a, b)
        quotient = f"{_tight(a, x, left=True)} / {_tight(b, y, left=False)}"
        text = f"{tf}.stop_gradient({floor}) + ({quotient} - {tf}.stop_gradient({quotient}))"
        if getattr(node, "lpar", None) or not isinstance(context.parent, _STANDALONE):
            text = f"({text})"
        self.report(
            node,
            message=_FLOOR_DIVISION_MESSAGE,
            edits=(context.replace(node, text), *_one_binding(bindings), *import_edits),
            description="straight-through floor division: same forward value, the gradient of x / y",
        )

    def _integer(self, expr: cst.BaseExpression) -> bool:
        """An integer tensor, as the code says: a cast to an integer dtype, directly or bound to the name."""
        candidates: List[cst.BaseExpression] = [expr]
        if isinstance(expr, cst.Name):
            candidates.extend(self.context.analysis.definitions(expr.value, self.context.function))
        for candidate in candidates:
            if isinstance(candidate, cst.Call) and self.context.analysis.is_tf_call(candidate) in (
                "cast",
                "dtypes.cast",
            ):
                if is_integer_dtype(argument(candidate, 1, "dtype")):
                    return True
        return False

    def _meets_own_argument(self, node: cst.BaseExpression, arg: cst.BaseExpression) -> bool:
        """The rounded value and its own argument meet in a sum or difference (``x - tf.floor(x)``,
        ``lower = tf.floor(x)`` then ``x - lower``): a fractional part, a soft rounding or a hand-written
        straight-through estimator. The gradient flows through the argument; the step is deliberate."""
        context = self.context
        rounded = {_bare(node)}
        names = set()
        parent = context.parent
        if isinstance(parent, cst.Assign) and parent.value is node:
            names = {t.target.value for t in parent.targets if isinstance(t.target, cst.Name)}
        scope: cst.CSTNode = context.function.node if context.function is not None else context.module

        def is_rounded(term: cst.BaseExpression) -> bool:
            if isinstance(term, cst.Name):
                return term.value in names
            if not isinstance(node, cst.Call) or context.analysis.qualify(node.func) in FLOOR_DIVISION:
                # A floor division meets its dividend scaled back: ``x - (x // y) * y``.
                if isinstance(term, cst.BinaryOperation) and isinstance(term.operator, cst.Multiply):
                    if is_rounded(_bare(term.left)) or is_rounded(_bare(term.right)):
                        return True
            return any(term.deep_equals(r) for r in rounded)

        # Only where the rounded value exists: around the rounding itself, or after it (a module rebinds
        # its names from cell to cell, and ``z = x + y`` above is about other values).
        # The statement that rounds is one moment: ``tf.round(x)`` beside ``x - tf.round(x)`` in it counts.
        line = next((n for n in reversed(context.ancestors) if isinstance(n, cst.SimpleStatementLine)), node)
        around = set(map(id, context.ancestors)) | set(map(id, walk(line)))
        passed = False
        for candidate in walk(scope):
            passed = passed or candidate is node
            if not passed and id(candidate) not in around:
                continue
            if not (isinstance(candidate, cst.BinaryOperation) and isinstance(candidate.operator, _SUM_OPERATORS)):
                continue
            terms = _terms(candidate)
            # ``y = tf.round(y)`` rebinds its own argument: a later ``y`` is the rounded value only.
            if any(is_rounded(t) for t in terms) and any(t.deep_equals(arg) and not is_rounded(t) for t in terms):
                return True
        return False


_SUM_OPERATORS = (cst.Add, cst.Subtract)


def _terms(expr: cst.BaseExpression) -> List[cst.BaseExpression]:
    """The operands of a chain of ``+`` and ``-`` (unary minus dropped)."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, _SUM_OPERATORS):
        return _terms(expr.left) + _terms(expr.right)
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        return _terms(expr.expression)
    return [expr.with_changes(lpar=[], rpar=[]) if getattr(expr, "lpar", None) else expr]


def _bare(expr: cst.BaseExpression) -> cst.BaseExpression:
    return expr.with_changes(lpar=[], rpar=[]) if getattr(expr, "lpar", None) else expr


def _strip(text: str) -> str:
    """A parenthesised expression's text without its outer parentheses."""
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


def _tight(text: str, expr: cst.BaseExpression, left: bool) -> str:
    """``text`` (the operand's own text, or the name bound to it) as an operand of ``/``."""
    if isinstance(expr, _TIGHT) or getattr(expr, "lpar", None) or text.isidentifier():
        return text
    if isinstance(expr, cst.UnaryOperation) or (
        isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Power)
    ):
        return text
    if (
        left
        and isinstance(expr, cst.BinaryOperation)
        and isinstance(expr.operator, (cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.MatrixMultiply))
    ):
        return text  # ``a * b / y`` is ``(a * b) / y``
    return f"({text})"


def _one_binding(bindings: List[Edit]) -> Tuple[Edit, ...]:
    """The lines that name both operands, inserted at one place: one edit, in the operands' order."""
    if len(bindings) < 2:
        return tuple(bindings)
    first = bindings[0]
    return (Edit(first.start, first.end, "".join(b.text for b in bindings)),)
