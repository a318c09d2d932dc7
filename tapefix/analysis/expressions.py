"""Small questions about expressions that several rules ask."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import libcst as cst

from tapefix.analysis.names import dotted
from tapefix.analysis.reaching import reaching
from tapefix.analysis.scope import Function, ModuleAnalysis, Shape
from tapefix.analysis.syntax import argument, is_integer_dtype, keyword, walk
from tapefix.analysis.tfops import (
    IMPURE_CALLS,
    MAGNITUDE,
    NONZERO_TF,
    NORM,
    NUMPY_RANDOM_DRAWS,
    OPTIMIZER_UPDATE_METHODS,
    POSITIVE_TF,
    RANDOM_DRAWS,
    REDUCE_MAX_OR_MIN,
    REDUCE_SUM_OR_MEAN,
    SAME_VALUES,
    SOFTMAX,
    VARIABLE_UPDATE_METHODS,
)
from tapefix.analysis.walk import children


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
        if short.startswith(IMPURE_CALLS) or ".random" in name:
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
    for child in children(expr):
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


EPSILON_WORDS = ("eps", "epsilon", "tiny", "smooth")
_MAX_DEPTH = 6


@dataclass(frozen=True)
class Sign:
    """What tapefix knows of every element of a value, for the question "can it be zero?"."""

    #: every element is >= 0
    nonneg: bool = False
    #: no element is 0: structurally (a positive literal, exp, 1 + x**2) or because the author guarded it
    nonzero: bool = False
    #: the continuous random draws (by call) that must all be exactly 0 at the same element for this value
    #: to be 0 there: ``tf.square(a) + tf.square(b)`` of two draws
    draws: FrozenSet[int] = frozenset()
    #: a probability vector (a softmax): its sum over ``simplex`` (the axis text) is 1
    simplex: Optional[str] = None

    @property
    def safe(self) -> bool:
        """Zero nowhere, or only where two independent continuous draws are both exactly 0 (about 1e-14
        per element: far below any chance of a training run meeting it). One draw alone is not safe."""
        return self.nonzero or len(self.draws) >= 2

    @property
    def positive(self) -> bool:
        return self.nonneg and self.nonzero

    def join(self, other: Sign) -> Sign:
        """What is known of a value that is either one."""
        both_safe = self.safe and other.safe
        draws = self.draws if self.draws == other.draws else frozenset()
        nonzero = (self.nonzero and other.nonzero) or (both_safe and len(draws) < 2)
        simplex = self.simplex if self.simplex == other.simplex else None
        return Sign(self.nonneg and other.nonneg, nonzero, draws, simplex)


UNKNOWN = Sign()
POSITIVE = Sign(True, True)
NONZERO = Sign(False, True)


def guarded_from_zero(
    expr: cst.BaseExpression,
    analysis: ModuleAnalysis,
    function: Optional[Function],
    ancestors: Sequence[cst.CSTNode] = (),
) -> bool:
    """True when ``expr`` cannot be zero, or its author guarded it: a positive number, an epsilon added
    anywhere inside it (``tf.reduce_sum(w + 1e-6)``: trust the author), a call that is never zero
    (``tf.exp``, ``tf.maximum(x, eps)``, ...), a sum of squares with a positive term, the mean of a
    softmax, a name whose definition is such a value, or a module function that returns one.

    ``ancestors`` (the module down to the statement that reads ``expr``) lets a name be resolved to the
    assignment the read sees (``x = tf.Variable(2.0)`` two lines above, in a notebook that rebinds ``x``
    in every cell); without it every assignment of the name in its scope counts."""
    return sign(expr, analysis, function, ancestors).safe


def sign(
    expr: cst.BaseExpression,
    analysis: ModuleAnalysis,
    function: Optional[Function],
    ancestors: Sequence[cst.CSTNode] = (),
) -> Sign:
    """What is known of the elements of ``expr`` read at ``ancestors`` (see ``guarded_from_zero``)."""
    return _Facts(analysis).of(expr, function, tuple(ancestors), {}, 0, frozenset())


_Params = Dict[str, Sign]


class _Facts:
    """The "can it be zero?" evaluator: one per question, walking definitions and helper functions."""

    def __init__(self, analysis: ModuleAnalysis) -> None:
        self.a = analysis

    def of(
        self,
        expr: cst.BaseExpression,
        function: Optional[Function],
        ancestors: Tuple[cst.CSTNode, ...],
        params: _Params,
        depth: int,
        seen: FrozenSet[str],
    ) -> Sign:
        """``params``: what the current helper was called with (a call summary), by parameter name."""
        if depth > _MAX_DEPTH:
            return UNKNOWN
        number = numeric_literal(expr)
        if number is not None:
            return Sign(number >= 0, number != 0)
        if _has_epsilon(expr):
            return NONZERO  # the author added an epsilon somewhere inside: trust it

        def recur(inner: cst.BaseExpression) -> Sign:
            return self.of(inner, function, ancestors, params, depth + 1, seen)

        if isinstance(expr, cst.Name):
            return self._name(expr.value, function, ancestors, params, depth, seen)
        if isinstance(expr, (cst.List, cst.Tuple)):
            parts = [recur(e.value) for e in expr.elements if not isinstance(e, cst.StarredElement)]
            if not parts or len(parts) != len(expr.elements):
                return UNKNOWN
            return Sign(all(p.nonneg for p in parts), all(p.nonzero for p in parts))
        if isinstance(expr, cst.UnaryOperation):
            inner = recur(expr.expression)
            if isinstance(expr.operator, cst.Minus):
                return Sign(False, inner.nonzero, inner.draws)
            return inner if isinstance(expr.operator, cst.Plus) else UNKNOWN
        if isinstance(expr, cst.BinaryOperation):
            return self._binary(expr, recur)
        if isinstance(expr, cst.IfExp):
            return recur(expr.body).join(recur(expr.orelse))
        if isinstance(expr, cst.Subscript):
            inner = recur(expr.value)
            if self._sampled_entry(expr, function, ancestors):
                return POSITIVE
            return Sign(inner.nonneg, inner.nonzero, inner.draws)
        if isinstance(expr, cst.Call):
            return self._call(expr, function, ancestors, params, depth, seen, recur)
        return UNKNOWN

    # ------------------------------------------------------------------ arithmetic
    def _binary(self, expr: cst.BinaryOperation, recur: Callable[[cst.BaseExpression], Sign]) -> Sign:
        op = expr.operator
        if isinstance(op, cst.Power):
            exponent = numeric_literal(expr.right)
            base = recur(expr.left)
            if exponent is None:
                return Sign(False, base.positive)
            if exponent == 0:
                return POSITIVE
            even = exponent == int(exponent) and int(exponent) % 2 == 0
            keeps = exponent > 0 or base.nonzero
            return Sign(even or base.nonneg, keeps and base.nonzero, base.draws if keeps else frozenset())
        left, right = recur(expr.left), recur(expr.right)
        if isinstance(op, cst.Add):
            if left.nonneg and right.nonneg:
                return Sign(True, left.nonzero or right.nonzero, left.draws | right.draws)
            return UNKNOWN
        if isinstance(op, cst.Multiply):
            if expr.left.deep_equals(expr.right):
                return Sign(True, left.nonzero, left.draws)  # x * x
            draws = right.draws if left.nonzero else left.draws if right.nonzero else frozenset()
            return Sign(left.nonneg and right.nonneg, left.nonzero and right.nonzero, draws)
        if isinstance(op, cst.Divide):
            # A finite numerator over a finite denominator: zero only where the numerator is.
            return Sign(left.nonneg and right.nonneg, left.nonzero, left.draws)
        return UNKNOWN

    # ------------------------------------------------------------------ names
    def _name(
        self,
        name: str,
        function: Optional[Function],
        ancestors: Tuple[cst.CSTNode, ...],
        params: _Params,
        depth: int,
        seen: FrozenSet[str],
    ) -> Sign:
        if name in self.a.zero_checked.get(function.node if function else None, ()):
            return NONZERO  # ``if n == 0: return ...`` in the same function: trust the author
        found = reaching(name, ancestors) if ancestors else None
        if found is not None and found.definition is not None:
            definition = found.definition
            value = self._defined(definition.value, definition.index, function, definition.ancestors, params, depth)
            return self._variable(name, value, definition.value)
        if found is not None and found.function is not None:
            if name in params:
                return params[name]
            return self._parameter(found.function, name, depth)
        if name in seen:
            return UNKNOWN
        definitions = self.a.definitions(name, function)
        if not definitions:
            return UNKNOWN
        result: Optional[Sign] = None
        for expr in definitions:
            value = self._variable(name, self.of(expr, function, (), params, depth + 1, seen | {name}), expr)
            result = value if result is None else result.join(value)
        return result or UNKNOWN

    def _defined(
        self,
        value: cst.BaseExpression,
        index: Tuple[int, ...],
        function: Optional[Function],
        ancestors: Tuple[cst.CSTNode, ...],
        params: _Params,
        depth: int,
    ) -> Sign:
        """The element at ``index`` of ``value``, read at ``ancestors`` (the assignment's own line)."""
        while index and isinstance(value, (cst.Tuple, cst.List)):
            element = value.elements[index[0]] if index[0] < len(value.elements) else None
            if element is None or isinstance(element, cst.StarredElement):
                return UNKNOWN
            value, index = element.value, index[1:]
        if not index:
            return self.of(value, function, ancestors, params, depth + 1, frozenset())
        if isinstance(value, cst.Call):
            return self._summary(value, function, ancestors, params, depth, index)
        return UNKNOWN

    def _variable(self, name: str, value: Sign, expr: cst.BaseExpression) -> Sign:
        """A ``tf.Variable`` keeps its initial value's facts only while nothing updates it; training
        moves a value drawn at random on continuously, so what stays is that it came from draws."""
        if isinstance(expr, cst.Call) and self.a.is_tf_call(expr) == "Variable" and _updated(self.a, name):
            return Sign(draws=value.draws)
        return value

    def _parameter(self, node: cst.FunctionDef, name: str, depth: int) -> Sign:
        """A parameter: what every call of the function in this module passes (unknown when the function
        is also called from elsewhere, or passed around as a value)."""
        function = self.a.function_of(node)
        if function is None or function in self.a.entry_functions:
            return UNKNOWN
        calls = call_sites(self.a, function)
        if calls is None:
            return UNKNOWN
        index = function.params.index(name)
        if function.class_name is not None:
            index -= 1
        default = next((p.default for p in _all_params(node) if p.name.value == name), None)
        result: Optional[Sign] = None
        for call, caller, ancestors in calls:
            arg = _argument(call, index, name)
            if arg is None and default is None:
                return UNKNOWN
            expr = arg if arg is not None else default
            assert expr is not None
            value = self.of(
                expr,
                caller if arg is not None else function,
                ancestors if arg is not None else (),
                {},
                depth + 1,
                frozenset(),
            )
            result = value if result is None else result.join(value)
        return result or UNKNOWN

    # ------------------------------------------------------------------ calls
    def _call(
        self,
        call: cst.Call,
        function: Optional[Function],
        ancestors: Tuple[cst.CSTNode, ...],
        params: _Params,
        depth: int,
        seen: FrozenSet[str],
        recur: Callable[[cst.BaseExpression], Sign],
    ) -> Sign:
        name = self.a.is_tf_call(call)
        if name is not None:
            return self._tf_call(call, name, recur)
        np_name = self.a.is_numpy_call(call)
        if np_name is not None:
            if np_name in NUMPY_RANDOM_DRAWS:
                return Sign(np_name in ("random.rand", "random.random"), False, frozenset({id(call)}))
            return UNKNOWN
        callees = self.a.resolve_callee(call, function)
        if callees and all(isinstance(c.node, cst.FunctionDef) for c in callees):
            return self._summary(call, function, ancestors, params, depth, ())
        return UNKNOWN

    def _tf_call(self, call: cst.Call, name: str, recur: Callable[[cst.BaseExpression], Sign]) -> Sign:
        first = first_argument(call, ("x", "input_tensor", "tensor", "value", "initial_value", "logits", "a"))
        if name in POSITIVE_TF:
            return POSITIVE
        if name in NONZERO_TF:
            if name in ("maximum", "math.maximum"):
                return Sign(any(recur(a.value).nonneg for a in call.args[:2]), True)
            if name == "clip_by_value" and len(call.args) > 1:
                return Sign(recur(call.args[1].value).nonneg, True)
            return NONZERO
        if name in RANDOM_DRAWS:
            dtype = keyword(call, "dtype")
            if dtype is not None and is_integer_dtype(dtype):
                return UNKNOWN
            uniform = "uniform" in name
            return Sign(uniform or name == "random.gamma", False, frozenset({id(call)}))
        if first is None:
            return UNKNOWN
        inner = recur(first)
        if name == "Variable":
            return inner
        if name in SAME_VALUES:
            dtype = keyword(call, "dtype") or (call.args[1].value if name == "cast" and len(call.args) > 1 else None)
            if dtype is not None and is_integer_dtype(dtype):
                return Sign(inner.nonneg)  # 0.5 cast to an integer is 0
            return inner
        if name in MAGNITUDE:
            return Sign(True, inner.nonzero, inner.draws)
        if name in SOFTMAX:
            axis = keyword(call, "axis") or (call.args[1].value if len(call.args) > 1 else None)
            return Sign(True, False, frozenset(), _axis_text(axis))
        if name in REDUCE_SUM_OR_MEAN:
            axis = keyword(call, "axis") or (call.args[1].value if len(call.args) > 1 else None)
            if inner.simplex is not None and (axis is None or _axis_text(axis) == inner.simplex):
                return POSITIVE  # a probability vector sums to 1 over its axis
            if inner.nonneg:
                return Sign(True, inner.nonzero, inner.draws)
            return UNKNOWN
        if name in REDUCE_MAX_OR_MIN:
            return Sign(inner.nonneg, inner.positive or (inner.nonzero and "min" in name), inner.draws)
        if name in NORM:  # >= 0, and 0 only where every element is 0
            # A norm is 0 only where every element is: for draws, every element of a vector at once.
            return Sign(True, inner.nonzero or bool(inner.draws), inner.draws)
        return UNKNOWN

    def _summary(
        self,
        call: cst.Call,
        function: Optional[Function],
        ancestors: Tuple[cst.CSTNode, ...],
        params: _Params,
        depth: int,
        index: Tuple[int, ...],
    ) -> Sign:
        """What a call of the module's own function returns, given what it is called with: each
        ``return`` of the callee evaluated with its parameters bound to the call's arguments."""
        callees = self.a.resolve_callee(call, function)
        result: Optional[Sign] = None
        for callee in callees:
            positional = callee.params[1:] if callee.class_name else callee.params
            bound: _Params = {}
            for position, param in enumerate(positional):
                arg = _argument(call, position, param)
                if arg is not None:
                    bound[param] = self.of(arg, function, ancestors, params, depth + 1, frozenset())
            for declared in _all_params(callee.node):
                if declared.name.value not in bound and declared.default is not None:
                    default = self.of(declared.default, callee.parent, (), {}, depth + 1, frozenset())
                    bound[declared.name.value] = default
            returns = _returns(callee.node)
            if not returns:
                return UNKNOWN
            for value, returned_at in returns:
                part = self._defined(value, index, callee, returned_at, bound, depth + 1)
                result = part if result is None else result.join(part)
        return result or UNKNOWN

    # ------------------------------------------------------------------ sampled entries
    def _sampled_entry(
        self, expr: cst.Subscript, function: Optional[Function], ancestors: Tuple[cst.CSTNode, ...]
    ) -> bool:
        """``probs[0, action]`` where ``action`` was sampled from ``probs`` itself
        (``np.random.choice(n, p=probs)``, ``tf.random.categorical(tf.math.log(probs), 1)``): the draw
        never picks an entry of probability 0, so the entry is positive."""
        base = set(names_in(expr.value))
        if not base:
            return False
        for element in expr.slice:
            index = element.slice.value if isinstance(element.slice, cst.Index) else None
            if not isinstance(index, cst.Name):
                continue
            found = reaching(index.value, ancestors) if ancestors else None
            if found is not None and found.definition is not None:
                candidates = [found.definition.value] if not found.definition.index else []
            else:
                candidates = self.a.definitions(index.value, function)
            for candidate in candidates:
                weights = self._sampled_from(candidate)
                if weights is not None and base & set(names_in(weights)):
                    return True
        return False

    def _sampled_from(self, expr: cst.BaseExpression) -> Optional[cst.BaseExpression]:
        while isinstance(expr, cst.Subscript) or (
            isinstance(expr, cst.Call) and self.a.is_numpy_call(expr) in ("squeeze", "asarray", "int64")
        ):
            expr = expr.value if isinstance(expr, cst.Subscript) else expr.args[0].value
        if not isinstance(expr, cst.Call):
            return None
        if self.a.is_numpy_call(expr) == "random.choice":
            return keyword(expr, "p")
        if self.a.is_tf_call(expr) in ("random.categorical", "random.stateless_categorical") and expr.args:
            logits = expr.args[0].value
            if isinstance(logits, cst.Call) and self.a.is_tf_call(logits) in ("math.log", "log") and logits.args:
                return logits.args[0].value
        return None


def _axis_text(axis: Optional[cst.BaseExpression]) -> str:
    if axis is None:
        return "-1"
    value = numeric_literal(axis)
    return str(int(value)) if value is not None and value == int(value) else "?"


def _argument(call: cst.Call, index: int, name: str) -> Optional[cst.BaseExpression]:
    if any(a.star for a in call.args):
        return None
    positional = [a for a in call.args if a.keyword is None]
    if index < len(positional):
        return positional[index].value
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def _all_params(node: cst.FunctionDef) -> List[cst.Param]:
    params = node.params
    return [*params.posonly_params, *params.params, *params.kwonly_params]


def _returns(node: cst.FunctionDef) -> List[Tuple[cst.BaseExpression, Tuple[cst.CSTNode, ...]]]:
    """Each ``return value`` of the function (not of nested defs), with the nodes from the def down to
    its statement line."""
    found: List[Tuple[cst.BaseExpression, Tuple[cst.CSTNode, ...]]] = []

    def visit(current: cst.CSTNode, path: Tuple[cst.CSTNode, ...]) -> None:
        for child in children(current):
            if isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
                continue
            if isinstance(child, cst.SimpleStatementLine):
                for small in child.body:
                    if isinstance(small, cst.Return):
                        if small.value is None:
                            found.append((cst.Name("None"), (*path, child)))
                        else:
                            found.append((small.value, (*path, child)))
                continue
            if isinstance(child, (cst.BaseCompoundStatement, cst.BaseSuite)):
                visit(child, (*path, child))

    visit(node.body, (node, node.body))
    return found


_SITES: weakref.WeakKeyDictionary[ModuleAnalysis, List[Tuple[cst.Call, Tuple[cst.CSTNode, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def call_sites(
    analysis: ModuleAnalysis, function: Function
) -> Optional[List[Tuple[cst.Call, Optional[Function], Tuple[cst.CSTNode, ...]]]]:
    """Every call of ``function`` in the module, with its caller and the nodes down to its statement;
    None when the function's name is also used otherwise (passed around, so called from unseen code)."""
    found = []
    for call, ancestors in all_calls(analysis):
        caller = next((analysis.function_of(n) for n in reversed(ancestors) if isinstance(n, cst.FunctionDef)), None)
        if function in analysis.resolve_callee(call, caller):
            found.append((call, caller, ancestors))
    name = function.node.name.value
    by_name = sum(1 for call, _, _ in found if isinstance(call.func, cst.Name) and call.func.value == name)
    if function.class_name is None and analysis.name_reads.get(name, 0) - 1 != by_name:
        return None
    return found or None


def passed_shape(analysis: ModuleAnalysis, function: Function, name: str, depth: int = 4) -> Shape:
    """What the callers of ``function`` pass as its parameter ``name``, where the model leaves its shape
    open (the callers disagree): NONSCALAR when some call in the module passes a non-scalar tensor on the
    gradient path (a batched model output, also passed on through other helpers, up to ``depth`` callers
    up), SCALAR when every call passes a scalar, else UNKNOWN. Not for a name the function rebinds, a
    function passed around as a value, or one a tape in another module runs (its callers are out of sight)."""
    return _passed_shape(analysis, function, name, depth, frozenset())


def _passed_shape(analysis: ModuleAnalysis, function: Function, name: str, depth: int, busy: FrozenSet[int]) -> Shape:
    if depth == 0 or id(function.node) in busy or name not in function.params or name in function.defs:
        return Shape.UNKNOWN
    if any(f is function for f in analysis.entry_functions):
        return Shape.UNKNOWN
    sites = call_sites(analysis, function)  # none when the function is also passed around as a value
    if not sites:
        return Shape.UNKNOWN
    index = function.params.index(name)
    shapes: List[Shape] = []
    for call, caller, _ in sites:
        passed = argument(call, index, name)
        if passed is None:
            return Shape.UNKNOWN  # a default value, or a star argument
        value = analysis.value(passed, caller)
        shape = value.shape
        if shape is Shape.UNKNOWN and isinstance(passed, cst.Name) and caller is not None:
            shape = _passed_shape(analysis, caller, passed.value, depth - 1, busy | {id(function.node)})
        if shape is Shape.NONSCALAR and value.on_path:
            return Shape.NONSCALAR
        shapes.append(shape)
    return Shape.SCALAR if shapes and all(s is Shape.SCALAR for s in shapes) else Shape.UNKNOWN


def all_calls(analysis: ModuleAnalysis) -> List[Tuple[cst.Call, Tuple[cst.CSTNode, ...]]]:
    """Every call in the module, with the nodes from the module down to its statement (computed once)."""
    sites = _SITES.get(analysis)
    if sites is None:
        sites = _SITES[analysis] = _collect_calls(analysis.module)
    return sites


def _collect_calls(module: cst.Module) -> List[Tuple[cst.Call, Tuple[cst.CSTNode, ...]]]:
    """Every call in the module, with the nodes from the module down to its statement line."""
    found: List[Tuple[cst.Call, Tuple[cst.CSTNode, ...]]] = []

    def visit(node: cst.CSTNode, path: Tuple[cst.CSTNode, ...]) -> None:
        for child in children(node):
            if isinstance(child, cst.SimpleStatementLine):
                line = (*path, child)
                found.extend((c, line) for c in _calls_in(child))
            elif isinstance(child, (cst.BaseCompoundStatement, cst.BaseSuite, cst.Module)):
                # The statement's own parts (an if's test, a for's iterable); its statements are visited below.
                header = [n for n in children(child) if not isinstance(n, (cst.BaseSuite, cst.BaseStatement))]
                for part in header:
                    found.extend((c, (*path, child)) for c in _calls_in(part))
                visit(child, (*path, child))

    visit(module, (module,))
    return found


def _calls_in(node: cst.CSTNode) -> Iterator[cst.Call]:
    if isinstance(node, cst.Call):
        yield node
    for child in children(node):
        if not isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda, cst.BaseSuite)):
            yield from _calls_in(child)


def _updated(analysis: ModuleAnalysis, name: str) -> bool:
    """Whether the module ever changes the variable ``name`` in place: ``name.assign(...)`` and friends,
    or an optimizer step given it (``opt.apply_gradients(zip(grads, [name]))``, ``opt.minimize(loss, [name])``)."""
    for node in walk(analysis.module):
        if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
            continue
        method = node.func.attr.value
        if (
            method in VARIABLE_UPDATE_METHODS
            and isinstance(node.func.value, cst.Name)
            and node.func.value.value == name
        ):
            return True
        if method in OPTIMIZER_UPDATE_METHODS and any(name in names_in(a.value) for a in node.args):
            return True
    return False


def _has_epsilon(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        if _is_epsilon(node.left) or _is_epsilon(node.right):
            return True
    return any(_has_epsilon(child) for child in children(node))


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
