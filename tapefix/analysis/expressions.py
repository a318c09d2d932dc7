"""Small questions about expressions that several rules ask."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import libcst as cst

from tapefix.analysis.names import dotted
from tapefix.analysis.scope import Function, ModuleAnalysis

# TensorFlow functions whose result differs from call to call: never duplicate their calls.
_IMPURE_TF = ("random", "Variable", "py_function", "numpy_function", "print", "summary", "io", "data")


def is_pure(expr: cst.BaseExpression, analysis: ModuleAnalysis) -> bool:
    """True when evaluating ``expr`` twice is the same as once: names, attributes, literals,
    subscripts, arithmetic and deterministic TensorFlow/NumPy calls of those. Model calls are not."""
    if isinstance(expr, (cst.Name, cst.Integer, cst.Float, cst.SimpleString)):
        return True
    if isinstance(expr, cst.Attribute):
        return is_pure(expr.value, analysis)
    if isinstance(expr, cst.Subscript):
        return is_pure(expr.value, analysis) and all(_pure_slice(e.slice, analysis) for e in expr.slice)
    if isinstance(expr, cst.BinaryOperation):
        return is_pure(expr.left, analysis) and is_pure(expr.right, analysis)
    if isinstance(expr, cst.UnaryOperation):
        return is_pure(expr.expression, analysis)
    if isinstance(expr, (cst.Tuple, cst.List)):
        return all(is_pure(e.value, analysis) for e in expr.elements)
    if isinstance(expr, cst.Call):
        name = analysis.qualify(expr.func)
        if name is None or not name.startswith(("tensorflow.", "numpy.")):
            return False
        short = name.split(".", 1)[1]
        if short.startswith(_IMPURE_TF) or ".random" in name:
            return False
        return all(is_pure(arg.value, analysis) for arg in expr.args)
    return False


def _pure_slice(node: cst.BaseSlice, analysis: ModuleAnalysis) -> bool:
    if isinstance(node, cst.Index):
        return is_pure(node.value, analysis)
    if isinstance(node, cst.Slice):
        parts = (node.lower, node.upper, node.step)
        return all(p is None or is_pure(p, analysis) for p in parts)
    return False


_TIGHTER_THAN_SUM = (cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power, cst.MatrixMultiply)


def binds_tighter_than_sum(expr: cst.BaseExpression) -> bool:
    """Can ``expr`` stand as an operand of ``+`` / ``-`` (on either side) without parentheses?"""
    if expr.lpar:
        return True
    if isinstance(expr, cst.BinaryOperation):
        return isinstance(expr.operator, _TIGHTER_THAN_SUM)
    if isinstance(expr, cst.UnaryOperation):
        return not isinstance(expr.operator, cst.Not)
    return not isinstance(expr, (cst.IfExp, cst.Lambda, cst.BooleanOperation, cst.Comparison, cst.NamedExpr))


def names_in(expr: cst.CSTNode) -> Iterator[str]:
    """Every plain name read in ``expr`` (attribute names excluded)."""
    if isinstance(expr, cst.Name):
        yield expr.value
        return
    for child in expr.children:
        if isinstance(expr, cst.Attribute) and child is expr.attr:
            continue
        if isinstance(expr, cst.Arg) and child is expr.keyword:
            continue
        yield from names_in(child)


def numeric_literal(expr: cst.BaseExpression) -> Optional[float]:
    """The value of a (possibly negated) number literal, else None."""
    sign = 1.0
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        if isinstance(expr.operator, cst.Minus):
            sign = -sign
        expr = expr.expression
    if isinstance(expr, (cst.Integer, cst.Float)):
        try:
            return sign * float(expr.evaluated_value)
        except (ValueError, OverflowError):
            return None
    return None


# TensorFlow calls whose result is never zero, or that the user wrote as a guard.
NONZERO_TF = frozenset(
    {
        "maximum", "math.maximum", "clip_by_value", "exp", "math.exp", "nn.softplus", "math.softplus",
        "ones", "ones_like", "where", "where_v2", "sigmoid", "math.sigmoid", "nn.sigmoid",
        "math.divide_no_nan", "keras.backend.epsilon", "shape", "size",
    }
)  # fmt: skip
EPSILON_WORDS = ("eps", "epsilon", "tiny", "smooth")


def guarded_from_zero(
    expr: cst.BaseExpression,
    analysis: ModuleAnalysis,
    function: Optional[Function],
    seen: frozenset = frozenset(),  # type: ignore[type-arg]
) -> bool:
    """True when ``expr`` cannot be zero, or its author guarded it: a number, an epsilon added anywhere
    inside it (``tf.reduce_sum(w + 1e-6)``: trust the author), a call that is never zero
    (``tf.exp``, ``tf.maximum(x, eps)``, ...), or a name whose every definition is guarded."""
    if numeric_literal(expr) is not None or _has_epsilon(expr):
        return True
    if isinstance(expr, cst.Call):
        return analysis.is_tf_call(expr) in NONZERO_TF
    if isinstance(expr, cst.Name) and expr.value in analysis.zero_checked.get(function.node if function else None, ()):
        return True  # ``if n == 0: return ...`` in the same function: trust the author
    if isinstance(expr, cst.Name) and expr.value not in seen:
        definitions = analysis.definitions(expr.value, function)
        seen = seen | {expr.value}
        return bool(definitions) and all(guarded_from_zero(d, analysis, function, seen) for d in definitions)
    return False


def _has_epsilon(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        if _is_epsilon(node.left) or _is_epsilon(node.right):
            return True
    return any(_has_epsilon(child) for child in node.children)


def _is_epsilon(expr: cst.BaseExpression) -> bool:
    value = numeric_literal(expr)
    if value is not None:
        return value > 0
    name = dotted(expr) or (dotted(expr.func) if isinstance(expr, cst.Call) else None)
    return name is not None and any(word in name.rsplit(".", 1)[-1].lower() for word in EPSILON_WORDS)


def first_argument(call: cst.Call, keywords: Tuple[str, ...] = ("x",)) -> Optional[cst.BaseExpression]:
    """The call's first argument: the first positional one, or else the first of ``keywords`` given."""
    if call.args and call.args[0].keyword is None and not call.args[0].star:
        return call.args[0].value
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in keywords:
            return arg.value
    return None
