"""What the author means: code that shows, in the code itself, that a broken gradient is expected.

A test that asserts a gradient is ``None`` (``self.assertIsNone(grads[2])``, ``assert g is None``), or a
guide that catches the ``LookupError`` of an op without a gradient around ``tape.gradient``, documents
the failure on purpose. Reporting it would ask the author to "fix" the very behaviour they check.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import libcst as cst

from tapefix.analysis.scope import ModuleAnalysis
from tapefix.analysis.syntax import walk
from tapefix.analysis.tfops import GRADIENT_METHODS
from tapefix.analysis.walk import children

#: unittest assertions that check their first argument is None, and those that compare two arguments
_ASSERT_NONE = ("assertIsNone",)
_ASSERT_EQUAL = ("assertIs", "assertEqual", "assertEquals")
#: context managers that expect an exception raised in their body
_EXPECT_RAISES = ("assertRaises", "assertRaisesRegex", "assertRaisesRegexp", "raises")
#: the exceptions tape.gradient raises for an op without a gradient, and their bases
_LOOKUP_ERRORS = ("LookupError", "Exception", "BaseException")


def asserts_none_gradient(
    scope: cst.CSTNode, gradient_call: cst.Call, position: Optional[int], count: int, statement: cst.CSTNode
) -> bool:
    """Whether the code after ``gradient_call`` (a ``tape.gradient(target, sources)`` in ``statement``)
    asserts that the gradient of the source at ``position`` (of ``count`` sources; None: the sources are
    one value, not a list) is None: ``g = tape.gradient(...)`` then ``self.assertIs(g[-1], None)``,
    ``self.assertIsNone(g)``, ``assert g is None``, or the same on a name unpacked from the call."""
    subjects = _gradient_names(statement, gradient_call, position)
    if not subjects:
        return False
    for node in walk(scope):
        checked = _none_checked(node)
        if checked is not None and _is_subject(checked, subjects, position, count):
            return True
    return False


def expects_gradient_error(analysis: ModuleAnalysis, ancestors: Sequence[cst.CSTNode]) -> bool:
    """Whether every gradient call of the tape recording at ``ancestors`` (the innermost tape ``with``
    around the node) runs where a ``LookupError`` is expected: in a ``try`` whose handler catches it, or
    in a ``with self.assertRaises(LookupError):`` / ``pytest.raises(LookupError)`` block."""
    blocks = dict(analysis.tape_blocks)
    tape: Optional[cst.With] = None
    for node in reversed(ancestors):
        if isinstance(node, cst.With) and blocks.get(node):
            tape = node
            break
    if tape is None:
        return False
    names = set(blocks[tape])
    scope = next(
        (n for n in reversed(ancestors) if isinstance(n, (cst.FunctionDef, cst.Module))),
        ancestors[0] if ancestors else None,
    )
    if scope is None:
        return False
    calls = [guarded for block, guarded in _gradient_calls(scope, names, blocks) if block is tape]
    return bool(calls) and all(calls)


def _gradient_calls(scope: cst.CSTNode, names: set, blocks: dict) -> List[tuple]:  # type: ignore[type-arg]
    """(tape block, inside an expecting try or with) for each gradient call on one of the tapes ``names``,
    in source order: a call belongs to the latest block before it that binds its tape's name."""
    found: List[tuple] = []  # type: ignore[type-arg]
    latest: dict = {}  # type: ignore[type-arg]

    def visit(node: cst.CSTNode, guarded: bool) -> None:
        for child in children(node):
            if isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
                continue
            if isinstance(child, cst.With) and blocks.get(child):
                latest.update({name: child for name in blocks[child]})
            inner = guarded
            if isinstance(node, cst.Try) and child is node.body and _catches_lookup(node):
                inner = True
            if isinstance(node, cst.With) and child is node.body and _expects_raise(node):
                inner = True
            if (
                isinstance(child, cst.Call)
                and isinstance(child.func, cst.Attribute)
                and child.func.attr.value in GRADIENT_METHODS
                and isinstance(child.func.value, cst.Name)
                and child.func.value.value in names
            ):
                found.append((latest.get(child.func.value.value), inner))
            visit(child, inner)

    visit(scope, False)
    return found


def _catches_lookup(node: cst.Try) -> bool:
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elements if isinstance(handler.type, cst.Tuple) else None
        exprs = [e.value for e in types] if types is not None else [handler.type]
        if any(_last_name(e) in _LOOKUP_ERRORS for e in exprs):
            return True
    return False


def _expects_raise(node: cst.With) -> bool:
    for item in node.items:
        call = item.item
        if isinstance(call, cst.Call) and _last_name(call.func) in _EXPECT_RAISES and call.args:
            if _last_name(call.args[0].value) in _LOOKUP_ERRORS:
                return True
    return False


def _last_name(expr: cst.BaseExpression) -> Optional[str]:
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    if isinstance(expr, cst.Name):
        return expr.value
    return None


def _gradient_names(statement: cst.CSTNode, call: cst.Call, position: Optional[int]) -> List[tuple]:  # type: ignore[type-arg]
    """(name, element) pairs the gradient is bound to: (``g``, None) for ``g = tape.gradient(...)``,
    (``db``, None) for ``da, db = tape.gradient(...)`` when ``db`` is the source's own gradient."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return []
    for small in statement.body:
        if isinstance(small, cst.Assign) and small.value is call and len(small.targets) == 1:
            target = small.targets[0].target
            if isinstance(target, cst.Name):
                return [(target.value, True)]
            if isinstance(target, (cst.Tuple, cst.List)) and position is not None:
                elements = target.elements
                element = elements[position].value if position < len(elements) else None
                if isinstance(element, cst.Name):
                    return [(element.value, False)]
    return []


def _none_checked(node: cst.CSTNode) -> Optional[cst.BaseExpression]:
    """The expression an assertion says is None, if ``node`` is such an assertion."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        method = node.func.attr.value
        args = [a.value for a in node.args if a.keyword is None]
        if method in _ASSERT_NONE and args:
            return args[0]
        if method in _ASSERT_EQUAL and len(args) >= 2:
            if _is_none(args[1]):
                return args[0]
            if _is_none(args[0]):
                return args[1]
    if isinstance(node, cst.Assert) and isinstance(node.test, cst.Comparison) and len(node.test.comparisons) == 1:
        target = node.test.comparisons[0]
        if isinstance(target.operator, (cst.Is, cst.Equal)) and _is_none(target.comparator):
            return node.test.left
    return None


def _is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _is_subject(checked: cst.BaseExpression, subjects: List[tuple], position: Optional[int], count: int) -> bool:  # type: ignore[type-arg]
    for name, whole in subjects:
        if isinstance(checked, cst.Name) and checked.value == name:
            return position is None or not whole
        if whole and position is not None and isinstance(checked, cst.Subscript) and len(checked.slice) == 1:
            base, index = checked.value, checked.slice[0].slice
            if isinstance(base, cst.Name) and base.value == name and isinstance(index, cst.Index):
                value = _integer(index.value)
                if value is not None and value in (position, position - count):
                    return True
    return False


def _integer(expr: cst.BaseExpression) -> Optional[int]:
    sign = 1
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        sign, expr = -1, expr.expression
    if isinstance(expr, cst.Integer):
        return sign * int(expr.evaluated_value)
    return None
