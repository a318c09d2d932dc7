"""Branches a tape never runs: ``if train: model(x) else: model.predict(x)`` in a function that every
recorded call enters with ``train`` left at its default ``True``.

Tape scope (``ModuleAnalysis.regions``) marks a whole function recorded once a tape calls it. A
function that serves training and inference alike holds code only inference runs, chosen by a flag
parameter; when every call made while a tape records passes (or defaults) that flag to a literal
that skips the branch, nothing in the branch runs under the tape.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import libcst as cst

from tapefix.analysis.expressions import all_calls
from tapefix.analysis.scope import ModuleAnalysis, Scope

_LITERALS = {"True": True, "False": False, "None": False}


def untaken_under_tape(analysis: ModuleAnalysis, ancestors: Sequence[cst.CSTNode]) -> bool:
    """Whether the node below ``ancestors`` sits in a branch of ``if flag:`` (``flag`` a parameter of the
    function around it, never reassigned there) that no call made while a tape records selects."""
    function_index = next(
        (i for i in range(len(ancestors) - 1, -1, -1) if isinstance(ancestors[i], cst.FunctionDef)), None
    )
    if function_index is None:
        return False
    node = ancestors[function_index]
    assert isinstance(node, cst.FunctionDef)
    function = analysis.function_of(node)
    if (
        function is None
        or analysis.regions.get(node.body) is not Scope.THROUGH_CALL
        or function in analysis.entry_functions
    ):
        return False
    for index in range(len(ancestors) - 2, function_index, -1):
        branch = ancestors[index]
        if not isinstance(branch, cst.If):
            continue
        child = ancestors[index + 1]
        taken_when = True if child is branch.body else False if child is branch.orelse else None
        flag = _flag(branch.test)
        if taken_when is None or flag is None:
            continue
        name, negated = flag
        if name not in function.params or name in function.defs:
            continue
        if negated:
            taken_when = not taken_when
        passed = _recorded_flags(analysis, node, name)
        if passed and all(value is not None and value != taken_when for value in passed):
            return True
    return False


def _flag(test: cst.BaseExpression) -> Optional[Tuple[str, bool]]:
    """(``flag``, negated) for the tests ``flag`` and ``not flag``."""
    if isinstance(test, cst.Name):
        return test.value, False
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _flag(test.expression)
        return (inner[0], not inner[1]) if inner is not None else None
    return None


def _recorded_flags(analysis: ModuleAnalysis, node: cst.FunctionDef, name: str) -> List[Optional[bool]]:
    """The truth value each call of ``node`` made while a tape records gives ``name`` (None: not a
    literal, or unknown)."""
    function = analysis.function_of(node)
    assert function is not None
    positional = function.params[1:] if function.class_name else function.params
    default = next((p.default for p in node.params.params if p.name.value == name), None)
    values: List[Optional[bool]] = []
    for call, line in all_calls(analysis):
        if not _recorded(analysis, line):
            continue
        caller = next((analysis.function_of(n) for n in reversed(line) if isinstance(n, cst.FunctionDef)), None)
        if function not in analysis.resolve_callee(call, caller):
            continue
        if any(a.star for a in call.args):
            values.append(None)
            continue
        given = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == name), None)
        plain = [a.value for a in call.args if a.keyword is None]
        if given is None and name in positional and positional.index(name) < len(plain):
            given = plain[positional.index(name)]
        values.append(_truth(given if given is not None else default))
    return values


def _recorded(analysis: ModuleAnalysis, line: Sequence[cst.CSTNode]) -> bool:
    recorded = False
    for node in line:
        if node in analysis.regions:
            recorded = True
        elif node in analysis.excluded:
            recorded = False
    return recorded


def _truth(expr: Optional[cst.BaseExpression]) -> Optional[bool]:
    if isinstance(expr, cst.Name) and expr.value in _LITERALS:
        return _LITERALS[expr.value]
    if isinstance(expr, cst.Integer):
        return int(expr.value) != 0
    return None
