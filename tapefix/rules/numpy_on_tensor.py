"""TF104: a NumPy function applied to a tensor on the gradient path."""

from __future__ import annotations

from typing import Dict, List, Tuple

import libcst as cst

from tapefix.analysis.syntax import has_star, is_number, keywords, positional
from tapefix.analysis.uses import UseFinder, decide, forward_after
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Edit, Forward, Safety

EXACT, ULP = Forward.EXACT, Forward.ULP
# np.<name> -> (TensorFlow name, how the arguments map, forward contract). "unary": one positional;
# "binary": two positionals; "reduce": the array, then axis (positional or keyword) and keepdims.
OPS: Dict[str, Tuple[str, str, Forward]] = {
    "sqrt": ("sqrt", "unary", EXACT),
    "abs": ("abs", "unary", EXACT),
    "absolute": ("abs", "unary", EXACT),
    "fabs": ("abs", "unary", EXACT),
    "square": ("square", "unary", EXACT),
    "negative": ("negative", "unary", EXACT),
    "exp": ("exp", "unary", ULP),
    "log": ("math.log", "unary", ULP),
    "log1p": ("math.log1p", "unary", ULP),
    "expm1": ("math.expm1", "unary", ULP),
    "tanh": ("tanh", "unary", ULP),
    "sin": ("sin", "unary", ULP),
    "cos": ("cos", "unary", ULP),
    "tan": ("math.tan", "unary", ULP),
    "maximum": ("maximum", "binary", EXACT),
    "minimum": ("minimum", "binary", EXACT),
    "add": ("add", "binary", EXACT),
    "subtract": ("subtract", "binary", EXACT),
    "multiply": ("multiply", "binary", EXACT),
    "divide": ("math.divide", "binary", EXACT),
    "true_divide": ("math.divide", "binary", EXACT),
    "power": ("pow", "binary", ULP),
    # np.dot and np.matmul treat 1-D and N-D operands their own way; tf.experimental.numpy keeps that.
    "dot": ("experimental.numpy.dot", "binary", ULP),
    "matmul": ("experimental.numpy.matmul", "binary", ULP),
    "sum": ("reduce_sum", "reduce", ULP),
    "mean": ("reduce_mean", "reduce", ULP),
    "prod": ("reduce_prod", "reduce", ULP),
    "max": ("reduce_max", "reduce", EXACT),
    "amax": ("reduce_max", "reduce", EXACT),
    "min": ("reduce_min", "reduce", EXACT),
    "amin": ("reduce_min", "reduce", EXACT),
    "std": ("math.reduce_std", "reduce", ULP),
    "var": ("math.reduce_variance", "reduce", ULP),
    "clip": ("clip_by_value", "clip", EXACT),
    "where": ("where", "where", EXACT),
    "concatenate": ("concat", "concat", EXACT),
    "reshape": ("reshape", "reshape", EXACT),
    "transpose": ("transpose", "transpose", EXACT),
    "linalg.norm": ("norm", "norm", ULP),
}
# NumPy functions that cut the gradient as surely, but have no one-to-one TensorFlow op tapefix trusts.
REPORT_ONLY: Dict[str, str] = {
    "sign": "tf.sign has a zero gradient everywhere; choose a surrogate (a straight-through estimator) by hand",
    "log2": "no tf.log2; write tf.math.log(x) / tf.math.log(2.0) by hand",
    "log10": "no tf.log10; write tf.math.log(x) / tf.math.log(10.0) by hand",
    "cumsum": "np.cumsum flattens without an axis; use tf.math.cumsum with an explicit axis",
    "cumprod": "np.cumprod flattens without an axis; use tf.math.cumprod with an explicit axis",
    "einsum": "use tf.einsum; the subscripts need a check by hand",
    "stack": "use tf.stack; check the axis by hand",
    "vstack": "np.vstack promotes 1-D inputs to rows; use tf.concat or tf.stack by hand",
    "hstack": "np.hstack joins 1-D inputs on axis 0; use tf.concat by hand",
    "tensordot": "use tf.tensordot; the axes argument needs a check by hand",
    "outer": "use tf.tensordot(a, b, axes=0) on flattened inputs",
    "median": "no differentiable median in TensorFlow",
    "percentile": "no differentiable percentile in TensorFlow",
    "sort": "use tf.sort; check the axis by hand",
    "arctan2": "use tf.math.atan2 (argument order y, x)",
    "arctan": "use tf.math.atan",
    "arcsin": "use tf.math.asin",
    "arccos": "use tf.math.acos",
    "sinh": "use tf.math.sinh",
    "cosh": "use tf.math.cosh",
    "linalg.inv": "use tf.linalg.inv",
    "linalg.det": "use tf.linalg.det",
}
_COMPARISON = (cst.Comparison,)


class NumpyOnTensor(Rule):
    """
    ## What it does
    Finds NumPy functions (`np.exp`, `np.log`, `np.sqrt`, `np.square`, `np.sum`, `np.mean`,
    `np.maximum`, `np.clip`, `np.where`, `np.dot`, `np.concatenate`, `np.linalg.norm`, ...) applied to a
    tensor on the gradient path while a tape records, when the result flows back into the
    computation (a TensorFlow op, a gradient target, a return value).

    ## Why is this bad?
    NumPy converts the tensor to an array: the result is an `ndarray` or a NumPy scalar that the tape
    never sees. When it flows back into TensorFlow, `tape.gradient` returns `None` for everything
    upstream; when it is the target itself, `tape.gradient` raises
    `AttributeError: 'numpy.float32' object has no attribute '_id'` (TF 2.21). Inside `tf.function`
    the same line fails at trace time. NumPy values used as constants (`np.pi * x`, `x * np.float32(2)`,
    `np.log(2.0) * x`) are fine and left alone, as are NumPy calls whose result is only printed,
    logged or compared, and modules that bind `np` to `tf.experimental.numpy`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        pred = model(x)
        loss = np.mean(np.square(pred - y), axis=-1)
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        pred = model(x)
        loss = tf.reduce_mean(tf.square(pred - y), axis=-1)
    grads = tape.gradient(loss, model.trainable_variables)
    ```
    Reductions keep their `axis` and `keepdims` arguments; `np.concatenate` without an axis becomes
    `tf.concat(..., axis=0)`; `np.transpose(a, axes=p)` becomes `tf.transpose(a, perm=p)`; `np.dot` and
    `np.matmul` become `tf.experimental.numpy.dot` / `matmul`, which keep NumPy's rules for 1-D and
    N-D operands (plain `tf.linalg.matmul` does not). Any other argument (`out=`, `dtype=`, `ddof=`,
    `ord=`, `where=`, `initial=`, `np.clip` with a `None` bound, one-argument `np.where`) leaves the
    call reported without a fix, and so does `np.sign`, whose TensorFlow op has a zero gradient.

    ## Fix safety
    Per operation, as research/idioms.md finding 12 measured on TF 2.21:

    - **Exact ops** (`sqrt`, `abs`, `square`, `negative`, `maximum`, `minimum`, `add`, `subtract`,
      `multiply`, `divide`, `clip`, `where`, `max`/`min` reductions, `reshape`, `transpose`,
      `concatenate`): forward values are bit-identical (NaN and ±inf included; only the sign of a zero
      that `np.maximum(-0.0, 0)` picks can differ) and the gradient becomes TensorFlow's exact one.
      These fixes are **safe** when every other operand is a number literal or a tensor, the
      `np.where` condition is a comparison and the `np.clip` bounds are ordered number literals.
      Otherwise they are unsafe: a NumPy-array operand can promote the dtype (float32 with a
      float64 array) where TensorFlow raises, `np.where` treats a non-boolean condition as truthy,
      and `np.clip` with inverted bounds returns the upper bound where `tf.clip_by_value` returns
      the lower.
    - **ULP ops** (`exp`, `log`, `log1p`, `expm1`, `tanh`, `sin`, `cos`, `tan`, `power`) differ from
      NumPy by up to a few units in the last place, and **reductions** (`sum`, `mean`, `prod`, `std`,
      `var`, `linalg.norm`, `dot`, `matmul`) by their summation order (up to thousands of ulp for a
      mean of mixed-sign data): these fixes are **unsafe**. A result that was meant to be reproducible
      bit for bit is not.

    A fix is also unsafe when the NumPy value meets a tensor that keeps its own gradient
    (`loss = mse + np.mean(np.square(w))`): the original gradient was partial rather than missing,
    the program trained, and the detour may have been meant as a `stop_gradient`; the fix changes
    the gradient values it produced.

    A fix whose result then passes through NumPy or Python arithmetic that rounds differently from
    TensorFlow's (`**`, `@`, another NumPy function that is not rewritten exactly) is ULP and unsafe
    even for an exact op.

    In every case the value's type changes from an `ndarray` to a tensor, which is the point: code
    that then mutates it in place, or calls an `ndarray`-only method on it, fails loudly, and tapefix
    offers no fix when it sees such a use.

    ## References
    - research/idioms.md, idiom 1 and findings 2 and 12 (A1, A2, A13)
    - TensorFlow guide, "Introduction to gradients and automatic differentiation": calculations
      outside of TensorFlow
    """

    CODE = "TF104"
    NAME = "numpy-on-tensor"
    MESSAGE = "NumPy function on a tensor on the gradient path: the result is a NumPy value and the gradient is cut"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.ULP

    VALID = (
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(np.pi * x + x * np.float32(2) + np.log(2.0) * x)
grads = tape.gradient(y, x)
""",
            note="NumPy constants mixed with tensors keep the gradient",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    print("mean square", np.mean(np.square(x)))
    with tape.stop_recording():
        shown = np.exp(loss)
grads = tape.gradient(loss, x)
report = np.sqrt(loss)
""",
            note="printed, under stop_recording, and after the tape",
        ),
        Valid(
            """\
import tensorflow.experimental.numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = np.sum(np.exp(x))
grads = tape.gradient(loss, x)
""",
            note="np bound to tf.experimental.numpy is TensorFlow",
        ),
        Valid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
x = np.ones((4, 2), np.float32)
y_true = np.array([0, 2, 1, 1])
with tf.GradientTape() as tape:
    targets = np.eye(3)[y_true].astype(np.float32)
    logits = model(x)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
    accuracy = np.mean(np.argmax(logits, axis=1) == y_true)
grads = tape.gradient(loss, model.trainable_variables)
""",
            note="one-hot targets from labels, and an accuracy metric from a comparison",
        ),
    )
    INVALID = (
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    y = np.sum(np.exp(x), axis=1, keepdims=True)
    loss = tf.reduce_mean(y)
grads = tape.gradient(loss, x)
""",
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(tf.exp(x), axis=1, keepdims=True)
    loss = tf.reduce_mean(y)
grads = tape.gradient(loss, x)
""",
            note="a transcendental op inside a reduction; axis and keepdims carry over (unsafe: ULP)",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    pred = model(tf.ones((4, 3)))
    hinge = np.square(np.maximum(1.0 - pred, 0.0))
    loss = tf.reduce_mean(hinge)
grads = tape.gradient(loss, model.trainable_variables)
""",
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
with tf.GradientTape() as tape:
    pred = model(tf.ones((4, 3)))
    hinge = tf.square(tf.maximum(1.0 - pred, 0.0))
    loss = tf.reduce_mean(hinge)
grads = tape.gradient(loss, model.trainable_variables)
""",
            note="exact ops on a model's output: a safe fix",
        ),
        Invalid(
            """\
import numpy as onp
from tensorflow import GradientTape, Variable

v = Variable([0.2, 0.9])
with GradientTape() as g:
    loss = onp.mean(-onp.log(onp.clip(v, 1e-7, 1.0)))
grads = g.gradient(loss, v)
""",
            """\
import numpy as onp
from tensorflow import GradientTape, Variable
import tensorflow as tf

v = Variable([0.2, 0.9])
with GradientTape() as g:
    loss = tf.reduce_mean(-tf.math.log(tf.clip_by_value(v, 1e-7, 1.0)))
grads = g.gradient(loss, v)
""",
            note="aliases are resolved; the loss itself is the NumPy value (the gradient call raises)",
            verdict="unverified",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    h = np.where(x > 2.0, x, 0.1 * x)
    loss = tf.reduce_sum(np.transpose(h, axes=(1, 0))[0])
grads = tape.gradient(loss, x)
""",
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
with tf.GradientTape() as tape:
    h = tf.where(x > 2.0, x, 0.1 * x)
    loss = tf.reduce_sum(tf.transpose(h, perm=(1, 0))[0])
grads = tape.gradient(loss, x)
""",
            note="np.where with a comparison, and `axes=` mapped to `perm=`: exact and safe",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

a = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
b = tf.Variable([[0.5], [1.5]])
with tf.GradientTape() as tape:
    h = np.concatenate([np.dot(a, b), b])
    loss = tf.reduce_sum(h * h)
grads = tape.gradient(loss, [a, b])
""",
            """\
import numpy as np
import tensorflow as tf

a = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
b = tf.Variable([[0.5], [1.5]])
with tf.GradientTape() as tape:
    h = tf.concat([tf.experimental.numpy.dot(a, b), b], axis=0)
    loss = tf.reduce_sum(h * h)
grads = tape.gradient(loss, [a, b])
""",
            note="np.concatenate gets NumPy's default axis; np.dot keeps NumPy's rules for 1-D and N-D operands",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

v = tf.Variable([[3.0, 4.0], [1.0, 0.5]])
with tf.GradientTape() as tape:
    lengths = np.linalg.norm(v, axis=1)
    loss = tf.reduce_sum(lengths)
grads = tape.gradient(loss, v)
""",
            """\
import numpy as np
import tensorflow as tf

v = tf.Variable([[3.0, 4.0], [1.0, 0.5]])
with tf.GradientTape() as tape:
    lengths = tf.norm(v, axis=1)
    loss = tf.reduce_sum(lengths)
grads = tape.gradient(loss, v)
""",
            note="the verifier rejects this fix: tf.norm's gradient is NaN at a zero row; TF113 then guards it",
            verdict="failed",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

w = tf.Variable([0.5, -1.5])


def penalty(p):
    return np.sum(np.abs(p))


with tf.GradientTape() as tape:
    loss = tf.reduce_sum(w ** 2) + penalty(w)
grads = tape.gradient(loss, w)
""",
            """\
import numpy as np
import tensorflow as tf

w = tf.Variable([0.5, -1.5])


def penalty(p):
    return tf.reduce_sum(tf.abs(p))


with tf.GradientTape() as tape:
    loss = tf.reduce_sum(w ** 2) + penalty(w)
grads = tape.gradient(loss, w)
""",
            note="in a function the tape calls (so never a safe fix)",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.5, -2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(np.sign(x) * x)
grads = tape.gradient(loss, x)
""",
            None,
            note="np.sign: TensorFlow's sign has a zero gradient, so no op swap restores one",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.5, -2.0])
with tf.GradientTape() as tape:
    loss = np.sum(x * x, dtype=np.float64) + np.std(x, ddof=1)
grads = tape.gradient(loss, x)
""",
            None,
            note="dtype= and ddof= have no TensorFlow argument",
        ),
        Invalid(
            """\
import numpy as np
import scipy.special
import tensorflow as tf

x = tf.Variable([1.5, 2.0])
with tf.GradientTape() as tape:
    s = np.exp(x)
    loss = tf.reduce_sum(x * scipy.special.gamma(s)) + tf.reduce_sum(s)
grads = tape.gradient(loss, x)
""",
            None,
            note="the NumPy value also feeds scipy: keeping a tensor there needs a human",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        name = context.analysis.is_numpy_call(node)
        if name is None or (name not in OPS and name not in REPORT_ONLY):
            return
        args = positional(node)
        operands = [a.value for a in args]
        if name == "concatenate" and operands and isinstance(operands[0], (cst.List, cst.Tuple)):
            operands = [e.value for e in operands[0].elements] + operands[1:]
        if not any(context.on_path(op) for op in operands):
            return
        finder = UseFinder(context)
        report, fixable, _ = decide(finder.of_node(node))
        if not report:
            return
        message = f"np.{name} on a tensor on the gradient path: the result is a NumPy value and the gradient is cut"
        if name in REPORT_ONLY:
            self.report(node, message, no_fix_reason=REPORT_ONLY[name])
            return
        if not fixable:
            self.report(node, message, no_fix_reason="the NumPy value also feeds non-TensorFlow code")
            return
        tf_name, kind, forward = OPS[name]
        forward = forward_after(finder, forward)
        plan = self._plan(node, kind)
        if isinstance(plan, str):
            self.report(node, message, no_fix_reason=plan)
            return
        extra_edits, exact_safe = plan
        tf, import_edits = context.tf()
        edits = (context.replace(node.func, f"{tf}.{tf_name}"), *extra_edits, *import_edits)
        safe = (
            forward is Forward.EXACT and exact_safe and not finder.meets_gradient and self._plain_operands(node, kind)
        )
        report_fix(
            self,
            node,
            edits,
            f"np.{name} -> {tf}.{tf_name}",
            Safety.SAFE if safe else Safety.UNSAFE,
            forward,
            message,
        )

    # ------------------------------------------------------------------ argument mapping
    def _plan(self, node: cst.Call, kind: str) -> str | Tuple[List[Edit], bool]:
        """The extra edits the arguments need and whether the exact form is safe, or why there is no fix."""
        context = self.context
        if has_star(node):
            return "*args or **kwargs: the arguments cannot be mapped"
        args = positional(node)
        kw = keywords(node)
        count = len(args)
        if kind in ("unary", "binary"):
            want = 1 if kind == "unary" else 2
            if count != want or kw:
                return "arguments NumPy accepts here (out=, dtype=, where=, ...) have no TensorFlow equivalent"
            return [], True
        if kind == "reduce":
            if count not in (1, 2) or set(kw) - {"axis", "keepdims"} or (count == 2 and "axis" in kw):
                return (
                    "arguments other than axis= and keepdims= (dtype=, out=, ddof=, ...) have no TensorFlow equivalent"
                )
            return [], True
        if kind == "clip":
            if count != 3 or kw:
                return "np.clip with keyword bounds or out=: map it by hand"
            low, high = args[1].value, args[2].value
            if any(isinstance(b, cst.Name) and b.value == "None" for b in (low, high)):
                return "a None bound has no tf.clip_by_value equivalent"
            ordered = is_number(low) and is_number(high) and _number(low) <= _number(high)
            return [], ordered
        if kind == "where":
            if count != 3 or kw:
                return "one-argument np.where returns indices, not values"
            return [], isinstance(args[0].value, _COMPARISON)
        if kind == "concat":
            if count not in (1, 2) or set(kw) - {"axis"} or (count == 2 and "axis" in kw):
                return "arguments other than axis= (out=, dtype=, casting=) have no TensorFlow equivalent"
            axis = args[1].value if count == 2 else kw["axis"].value if "axis" in kw else None
            if isinstance(axis, cst.Name) and axis.value == "None":
                return "axis=None flattens first; tf.concat has no such mode"
            if axis is None:
                _, end = context.span(args[0].value)
                return [Edit(end, end, ", axis=0")], True
            return [], True
        if kind == "reshape":
            if count != 2 or kw:
                return "order= or a keyword shape: map it by hand"
            return [], True
        if kind == "transpose":
            if count not in (1, 2) or set(kw) - {"axes"} or (count == 2 and kw):
                return "arguments other than axes=: map them by hand"
            if "axes" in kw:
                keyword = kw["axes"].keyword
                assert keyword is not None
                return [context.replace(keyword, "perm")], True
            return [], True
        if kind == "norm":
            if count != 1 or set(kw) - {"axis", "keepdims"}:
                return "ord= selects a different norm for matrices; map it by hand"
            if "axis" in kw and not _is_int(kw["axis"].value):
                return "a tuple axis selects a matrix norm in NumPy; map it by hand"
            return [], True
        return "no mapping"

    def _plain_operands(self, node: cst.Call, kind: str) -> bool:
        """Every operand is a tensor on the path or a number literal, so no NumPy dtype promotion.
        (A NumPy result that another fix of this rule rewrites counts once it is rewritten: the
        engine repeats to a fixed point.)"""
        args = positional(node)
        if kind == "where":
            args = args[1:]
        elif kind == "clip":
            args = args[:1]
        elif kind in ("reduce", "concat", "reshape", "transpose", "norm"):
            args = args[:1]
        for arg in args:
            value = arg.value
            if kind == "concat" and isinstance(value, (cst.List, cst.Tuple)):
                if not all(self._tensor(e.value) for e in value.elements):
                    return False
                continue
            if not (is_number(value) or self._tensor(value)):
                return False
        return True

    def _tensor(self, expr: cst.BaseExpression) -> bool:
        # A NumPy result on the path (an inner call not rewritten yet) may carry a promoted dtype.
        value = self.context.value(expr)
        return value.on_path and not value.numpy


def _number(expr: cst.BaseExpression) -> float:
    sign = 1.0
    while isinstance(expr, cst.UnaryOperation):
        if isinstance(expr.operator, cst.Minus):
            sign = -sign
        expr = expr.expression
    assert isinstance(expr, (cst.Integer, cst.Float))
    return sign * float(expr.evaluated_value)


def _is_int(expr: cst.BaseExpression) -> bool:
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        expr = expr.expression
    return isinstance(expr, cst.Integer)
