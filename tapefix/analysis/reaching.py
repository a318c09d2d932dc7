"""Which assignment a read of a name sees: reaching definitions in straight-line code.

``ModuleAnalysis.definitions`` is flow-insensitive: every expression ever assigned to a name in its
scope. That is right for a loop variable and wrong for a notebook, where ``x`` is rebound in every
cell: ``x = tf.constant(10)`` two lines above a tape is the value the tape sees, whatever ``x`` was
three cells earlier. ``reaching`` walks back from a read through the statements before it, block by
enclosing block, and answers only when the answer is certain:

* the nearest earlier statement that binds the name is a plain assignment (``x = ...``, ``a, x = ...``)
  in a block the read is in, or a block around it;
* no loop around the read rebinds the name (a back edge would bring another value);
* else, at a function's boundary, the name is that function's parameter.

Anything else (a binding inside an ``if`` or a loop before the read, ``x += 1``, ``for x in``,
``with ... as x``, ``global``) gives ``None``: the caller falls back to the flow-insensitive answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import libcst as cst

from tapefix.analysis.syntax import walk

_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


@dataclass(frozen=True, eq=False)
class Definition:
    """``name = value`` (``index == ()``) or ``a, name = value`` (``index == (1,)``)."""

    value: cst.BaseExpression = field(repr=False)
    #: where the name sits in a tuple target, outermost first
    index: Tuple[int, ...]
    #: the nodes from the module down to the statement line that holds the assignment
    ancestors: Tuple[cst.CSTNode, ...] = field(repr=False)


@dataclass(frozen=True, eq=False)
class Reaching:
    """What a read of a name sees: one assignment, or a parameter of ``function``."""

    definition: Optional[Definition] = None
    function: Optional[cst.FunctionDef] = field(default=None, repr=False)


def reaching(name: str, ancestors: Sequence[cst.CSTNode]) -> Optional[Reaching]:
    """The assignment (or parameter) that a read of ``name`` below ``ancestors[-1]`` sees, when
    straight-line code makes it certain; ``ancestors`` runs from the module down."""
    for level in range(len(ancestors) - 2, -1, -1):
        node, child = ancestors[level], ancestors[level + 1]
        if isinstance(node, (cst.For, cst.While)) and child is node.body and _binds_anywhere(node, name):
            return None  # a later iteration sees the value the loop body binds
        if isinstance(node, cst.FunctionDef) and child is node.body:
            params = node.params
            every = [*params.posonly_params, *params.params, *params.kwonly_params]
            for extra in (params.star_arg, params.star_kwarg):
                if isinstance(extra, cst.Param):
                    every.append(extra)
            if any(p.name.value == name for p in every):
                return Reaching(function=node)
            return None
        if isinstance(node, _SCOPES):
            return None
        body = _statements(node)
        if body is None or child not in body:
            continue
        index = body.index(child)
        for statement in reversed(body[:index]):
            found = _bindings(statement, name)
            if found is None:
                continue
            if not found:
                return None  # bound, but not by a plain assignment
            value, path = found[-1]
            return Reaching(Definition(value, path, (*ancestors[: level + 1], statement)))
    return None


def _statements(node: cst.CSTNode) -> Optional[List[cst.CSTNode]]:
    if isinstance(node, (cst.Module, cst.IndentedBlock)):
        return list(node.body)
    return None


def _bindings(statement: cst.CSTNode, name: str) -> Optional[List[Tuple[cst.BaseExpression, Tuple[int, ...]]]]:
    """None when ``statement`` does not bind ``name``; else its plain assignments of it, in order
    (an empty list: it binds the name some other way)."""
    if not _binds_anywhere(statement, name):
        return None
    if not isinstance(statement, cst.SimpleStatementLine):
        return []
    found: List[Tuple[cst.BaseExpression, Tuple[int, ...]]] = []
    for small in statement.body:
        if not _binds_anywhere(small, name):
            continue
        targets: List[cst.BaseExpression] = []
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
            value: Optional[cst.BaseExpression] = small.value
        elif isinstance(small, cst.AnnAssign) and small.value is not None:
            targets, value = [small.target], small.value
        else:
            return []
        paths = [p for target in targets for p in _paths(target, name)]
        if not paths or any(p is None for p in paths) or value is None:
            return []
        found.append((value, paths[-1]))  # type: ignore[arg-type]
    return found


def _paths(target: cst.BaseExpression, name: str, prefix: Tuple[int, ...] = ()) -> Iterator[Optional[Tuple[int, ...]]]:
    """Where ``name`` sits in an assignment target (None: behind a star, or in an attribute chain)."""
    if isinstance(target, cst.Name):
        if target.value == name:
            yield prefix
    elif isinstance(target, (cst.Tuple, cst.List)):
        for index, element in enumerate(target.elements):
            if isinstance(element, cst.StarredElement):
                if name in _names(element):
                    yield None
            else:
                yield from _paths(element.value, name, (*prefix, index))


def _names(node: cst.CSTNode) -> List[str]:
    return [n.value for n in walk(node) if isinstance(n, cst.Name)] + (
        [node.value] if isinstance(node, cst.Name) else []
    )


def _binds_anywhere(node: cst.CSTNode, name: str) -> bool:
    """Whether running ``node`` may bind ``name`` in the current scope."""
    if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
        return node.name.value == name  # its body binds names of its own scope
    for inner in (node, *walk(node)):
        if isinstance(inner, (cst.FunctionDef, cst.ClassDef)) and inner.name.value == name:
            return True
        if isinstance(inner, cst.AssignTarget) and name in _target_names(inner.target):
            return True
        if isinstance(inner, (cst.AugAssign, cst.AnnAssign)) and name in _target_names(inner.target):
            return True
        if isinstance(inner, cst.For) and name in _target_names(inner.target):
            return True
        if isinstance(inner, cst.AsName) and name in _target_names(inner.name):
            return True
        if isinstance(inner, cst.NamedExpr) and name in _target_names(inner.target):
            return True
        if isinstance(inner, cst.ImportAlias):
            bound = inner.asname.name if inner.asname is not None else inner.name
            if isinstance(bound, cst.Name) and bound.value == name:
                return True
            if isinstance(bound, cst.Attribute) and _root(bound) == name:
                return True
        if isinstance(inner, (cst.Global, cst.Nonlocal)) and any(n.name.value == name for n in inner.names):
            return True
        if isinstance(inner, cst.Del) and name in _target_names(inner.target):
            return True
    return False


def _target_names(target: cst.BaseExpression) -> List[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _root(expr: cst.BaseExpression) -> Optional[str]:
    while isinstance(expr, cst.Attribute):
        expr = expr.value
    return expr.value if isinstance(expr, cst.Name) else None
