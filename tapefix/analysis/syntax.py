"""Facts read off the syntax of a call or a block: its arguments, the names it assigns, integer
literals and dtypes."""

from __future__ import annotations

import ast
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import libcst as cst

from tapefix.analysis.tfops import INT_DTYPES
from tapefix.analysis.walk import children


def argument(call: cst.Call, index: int, keyword: str) -> Optional[cst.BaseExpression]:
    """The call's argument at position ``index`` or named ``keyword``."""
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if index < len(positional):
        return positional[index].value
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    return None


def keyword(call: cst.Call, name: str) -> Optional[cst.BaseExpression]:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def source_names(sources: cst.BaseExpression) -> List[cst.Name]:
    """The plain names among the sources of a gradient call (``x``, ``[x, y]``, ``(x, y)``)."""
    if isinstance(sources, cst.Name):
        return [sources]
    if isinstance(sources, (cst.List, cst.Tuple)):
        return [e.value for e in sources.elements if isinstance(e.value, cst.Name)]
    return []


#: nodes whose bodies run apart (libcst's node classes are final: a class test is an isinstance that
#: does not go through ABCMeta)
_OWN_SCOPES = frozenset((cst.FunctionDef, cst.ClassDef, cst.Lambda))


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes under ``node`` in source order, not entering nested functions, classes or lambdas; the
    attribute name of ``a.b`` (not a read of ``b``) left out."""
    attr = node.attr if type(node) is cst.Attribute else None
    for child in children(node):
        if child is attr:
            continue
        yield child
        if type(child) not in _OWN_SCOPES:
            yield from walk(child)


_ASSIGNING = frozenset((cst.Assign, cst.AugAssign, cst.AnnAssign, cst.For))


def assigned_in(body: cst.CSTNode) -> Dict[str, List[cst.BaseExpression]]:
    """Every expression assigned to each plain name in ``body`` (augmented assignments included)."""
    out: Dict[str, List[cst.BaseExpression]] = {}
    for node in walk(body):
        kind = type(node)
        if kind not in _ASSIGNING:
            continue
        if kind is cst.Assign:
            for target in node.targets:
                for name in target_names(target.target):
                    out.setdefault(name, []).append(node.value)
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)) and node.value is not None:
            for name in target_names(node.target):
                out.setdefault(name, []).append(node.value)
        elif isinstance(node, cst.For):
            for name in target_names(node.target):
                out.setdefault(name, []).append(node.iter)
    return out


def target_names(target: cst.BaseExpression) -> List[str]:
    if type(target) is cst.Name:
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
    return []


def is_integer_dtype(expr: Optional[cst.BaseExpression]) -> bool:
    if expr is None:
        return False
    if isinstance(expr, cst.SimpleString):
        return str(expr.evaluated_value) in INT_DTYPES
    return isinstance(expr, (cst.Attribute, cst.Name)) and _last(expr) in INT_DTYPES


def _last(expr: cst.BaseExpression) -> str:
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    if isinstance(expr, cst.Name):
        return expr.value
    return ""


def integer_literal(expr: cst.BaseExpression) -> bool:
    """A number literal, or a (nested) list or tuple of them, with no float among them: TensorFlow
    makes it an integer tensor."""
    if isinstance(expr, (cst.List, cst.Tuple)):
        return bool(expr.elements) and all(integer_literal(e.value) for e in expr.elements)
    inner = expr
    while isinstance(inner, cst.UnaryOperation) and isinstance(inner.operator, (cst.Minus, cst.Plus)):
        inner = inner.expression
    return isinstance(inner, cst.Integer)


def integer_tensor(call: cst.Call, name: str) -> bool:
    """``tf.constant(3)``, ``tf.Variable([1, 2])``, ``tf.zeros(3, dtype=tf.int32)``: an integer tensor."""
    dtype = keyword(call, "dtype")
    if dtype is not None:
        return is_integer_dtype(dtype)
    if name in ("constant", "convert_to_tensor", "Variable"):
        value = argument(call, 0, "value" if name != "convert_to_tensor" else "value")
        return value is not None and integer_literal(value)
    return False


def is_number(expr: cst.BaseExpression) -> bool:
    """A (possibly negated) int or float literal."""
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        expr = expr.expression
    return isinstance(expr, (cst.Integer, cst.Float))


def positional(call: cst.Call) -> List[cst.Arg]:
    return [a for a in call.args if a.keyword is None and not a.star]


def keywords(call: cst.Call) -> Dict[str, cst.Arg]:
    return {a.keyword.value: a for a in call.args if a.keyword is not None}


def has_star(call: cst.Call) -> bool:
    return any(a.star for a in call.args)


def bind_arguments(
    node: cst.FunctionDef, call: cst.Call, method: bool = False
) -> Optional[Dict[str, cst.BaseExpression]]:
    """Each parameter of ``node`` and the argument ``call`` passes it; None with ``*args`` or ``**kwargs``.
    ``method``: the call goes through an instance (``self.f(a)``), so the first parameter is bound already."""
    if any(arg.star for arg in call.args):
        return None
    named = list(node.params.posonly_params) + list(node.params.params)
    if method:
        named = named[1:]
    params = [p.name.value for p in named] + [p.name.value for p in node.params.kwonly_params]
    bound: Dict[str, cst.BaseExpression] = {}
    positional = [a for a in call.args if a.keyword is None]
    if len(positional) > len(named):
        return None
    for param, arg in zip(params, positional):
        bound[param] = arg.value
    for arg in call.args:
        if arg.keyword is not None:
            bound[arg.keyword.value] = arg.value
    return bound


def assigned_name(node: cst.CSTNode, parent: Optional[cst.CSTNode]) -> Optional[str]:
    """``name`` when ``node`` is the whole value of ``name = node`` (one plain-name target), ``parent``
    being the node right above it; else None."""
    if (
        isinstance(parent, cst.Assign)
        and parent.value is node
        and len(parent.targets) == 1
        and isinstance(parent.targets[0].target, cst.Name)
    ):
        return parent.targets[0].target.value
    return None


def tape_block_indices(source: str, offsets: Sequence[int]) -> List[Optional[int]]:
    """For each offset of ``source``, which ``with ...GradientTape(...)`` block holds it (the innermost),
    by the blocks' order in the module; None outside every such block or when the source does not parse.
    Fixes neither add nor remove such blocks, so the number names the same block across passes."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return [None] * len(offsets)
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def position(line: int, column: int) -> int:
        # ast counts columns in UTF-8 bytes; tapefix counts code points.
        text = lines[line - 1] if line <= len(lines) else ""
        return starts[line - 1] + len(text.encode("utf-8")[:column].decode("utf-8", errors="ignore"))

    spans: List[Tuple[int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
            isinstance(item.context_expr, ast.Call) and _called_name(item.context_expr.func) == "GradientTape"
            for item in node.items
        ):
            end = position(node.end_lineno or node.lineno, node.end_col_offset or 0)
            spans.append((position(node.lineno, node.col_offset), end))
    spans.sort()
    out: List[Optional[int]] = []
    for offset in offsets:
        holding = [i for i, (start, end) in enumerate(spans) if start <= offset < end]
        out.append(max(holding, key=lambda i: spans[i][0]) if holding else None)
    return out


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""
