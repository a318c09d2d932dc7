"""The part of a module that the analysis needs, found before the expensive parse.

libcst parses about five times slower than Python's own parser, and a module that holds a tape is
mostly other code: layers, data pipelines, utilities. ``needed_source`` reads the module with ``ast``,
finds the top-level ``def`` and ``class`` statements that cannot change what the analysis says about
code that may run under a tape, and leaves them out: each of their lines becomes an empty line. libcst
then parses, and the analysis walks, only what matters, while every line and column stays that of the
original source, so findings and fixes (their offsets are counted in the original) are those of the
whole module. (Empty lines, not lines of spaces: libcst would hang those on the block before them.)

Kept are every top-level statement that is not a ``def`` or ``class`` (imports, module-level code,
definitions under ``if`` or ``try``); every definition that names ``GradientTape`` (or an alias of
it), ``compute_loss`` or an entry point, or that holds an import, a ``global`` statement or a
``.compile(...)`` call; and, to a fixed point,
every definition that shares with kept code a name through which the analysis connects statements:

* the definition's own name, and the names of classes defined in it (calls resolve by name;
  attributes of ``self`` are kept per class name);
* names of top-level definitions it uses (a call from it binds a callee's parameters, and a private
  function counts its uses);
* names it assigns a call result to, as ``x`` or ``self.x`` (a Keras object is known by that name);
* module-level names it reads (it may mark them watched, or append a tensor to them).

Anything else a definition holds only concerns itself, and nothing in it runs under a tape.
"""

from __future__ import annotations

import ast
import re
from typing import Dict, Iterable, List, Sequence, Set, Tuple

from tapefix.types import EntryPoint

#: text that makes a definition needed by itself
_MARKERS = ("GradientTape", "compute_loss")
_DEFINITION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: below this many lines a module is parsed whole: the ``ast`` pass would cost more than it saves
MIN_LINES = 200


class _Definition:
    """One top-level def or class: its lines and the names through which it connects to other code."""

    def __init__(self, node: ast.stmt, first: int, last: int, text: str) -> None:
        self.first = first
        self.last = last
        self.text = text
        #: every identifier it mentions (names, attributes, definition and parameter names)
        self.mentions: Set[str] = set()
        #: the names through which it may change what the analysis says of other code
        self.links: Set[str] = set()
        #: it holds an import (module-wide to the analysis), a global statement or a compile() call
        self.needed = False
        self.name: str = getattr(node, "name", "")
        #: ``x = <call>`` and ``self.x = <call>`` in it: x, and the call (a Keras object is known by name)
        self.constructed: List[Tuple[str, ast.Call]] = []


#: lines as Python counts them (str.splitlines also breaks at form feeds and other separators)
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def needed_source(source: str, entry_points: Sequence[EntryPoint] = ()) -> str:
    """``source`` with the top-level definitions the analysis does not need left out, each of their lines
    left empty; ``source`` itself when nothing can be left out or it does not parse."""
    if source.count("\n") < MIN_LINES:
        return source
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source  # libcst's parse says why
    lines = _LINES.findall(source)
    top_names = {s.name for s in tree.body if isinstance(s, _DEFINITION)}
    module_names = _module_level_names(tree.body)
    imports: Dict[str, str] = {}

    kept_mentions: Set[str] = set()
    definitions: List[_Definition] = []
    for statement in tree.body:
        if not isinstance(statement, _DEFINITION):
            kept_mentions.update(_identifiers(statement, imports))
            continue
        first = min([statement.lineno, *(d.lineno for d in statement.decorator_list)])
        last = statement.end_lineno or statement.lineno
        definition = _Definition(statement, first, last, "".join(lines[first - 1 : last]))
        _describe(definition, statement, top_names, module_names, imports)
        definitions.append(definition)

    # Imports anywhere count, as they do for the analysis's names: only now are they all known.
    tape_aliases = tuple(local for local, bound in imports.items() if bound.endswith(".GradientTape"))
    markers = _MARKERS + tape_aliases + tuple(e.function for e in entry_points)
    dropped = []
    for definition in definitions:
        definition.links.update(name for name, call in definition.constructed if _makes_keras_object(call, imports))
        if definition.needed or any(marker in definition.text for marker in markers):
            kept_mentions.update(definition.mentions)
        else:
            dropped.append(definition)
    changed = bool(dropped)
    while changed:
        changed = False
        remaining = []
        for definition in dropped:
            if definition.links & kept_mentions:
                kept_mentions.update(definition.mentions)
                changed = True
            else:
                remaining.append(definition)
        dropped = remaining
    if not dropped:
        return source
    return _blank(lines, [(d.first, d.last) for d in dropped])


def _blank(lines: List[str], spans: Iterable[Tuple[int, int]]) -> str:
    """The lines with those of the given spans (1-based, inclusive) emptied, their line breaks kept."""
    out = list(lines)
    for first, last in spans:
        for index in range(first - 1, last):
            line = out[index]
            out[index] = line[len(line.rstrip("\r\n")) :]
    return "".join(out)


def _identifiers(node: ast.AST, imports: Dict[str, str]) -> Set[str]:
    """Every identifier in ``node``; its imports go into ``imports``."""
    found: Set[str] = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            found.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            found.add(inner.attr)
        elif isinstance(inner, _DEFINITION):
            found.add(inner.name)
        elif isinstance(inner, ast.arg):
            found.add(inner.arg)
        elif isinstance(inner, (ast.Import, ast.ImportFrom)):
            _add_import(inner, imports)
    return found


def _describe(
    definition: _Definition, node: ast.stmt, top_names: Set[str], module_names: Set[str], imports: Dict[str, str]
) -> None:
    mentions = definition.mentions
    links = definition.links
    read: Set[str] = set()
    links.add(definition.name)
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            mentions.add(inner.id)
            if isinstance(inner.ctx, ast.Load):
                read.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            mentions.add(inner.attr)
        elif isinstance(inner, _DEFINITION):
            mentions.add(inner.name)
            if isinstance(inner, ast.ClassDef):
                links.add(inner.name)
        elif isinstance(inner, ast.arg):
            mentions.add(inner.arg)
        elif isinstance(inner, (ast.Import, ast.ImportFrom)):
            _add_import(inner, imports)
            definition.needed = True
        elif isinstance(inner, ast.Global):
            definition.needed = True
        elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "compile":
            definition.needed = True  # compile(loss=...): Keras runs the loss under its tape
        elif isinstance(inner, (ast.Assign, ast.AnnAssign)) and isinstance(inner.value, ast.Call):
            for target in inner.targets if isinstance(inner, ast.Assign) else [inner.target]:
                if isinstance(target, ast.Name):
                    definition.constructed.append((target.id, inner.value))
                elif isinstance(target, ast.Attribute):
                    definition.constructed.append((target.attr, inner.value))
    links.update(read & top_names)
    # Bound here or not (a nested scope may bind what this one reads), a module-level name it reads may be
    # one it appends a tensor to or watches.
    links.update(read & module_names)


def _module_level_names(body: Sequence[ast.stmt]) -> Set[str]:
    """Names bound by module-level code other than imports and definitions (the analysis's module values)."""
    names: Set[str] = set()
    for statement in body:
        if isinstance(statement, (*_DEFINITION, ast.Import, ast.ImportFrom)):
            continue
        for inner in ast.walk(statement):
            if isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
                names.add(inner.id)
            elif isinstance(inner, _DEFINITION):
                names.add(inner.name)
    return names


def _add_import(node: ast.Import | ast.ImportFrom, imports: Dict[str, str]) -> None:
    """What each imported name stands for (``layers``: ``tensorflow.keras.layers``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                imports[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                imports[head] = head
    elif node.module and not node.level:
        for alias in node.names:
            imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"


def _makes_keras_object(value: ast.Call, imports: Dict[str, str]) -> bool:
    """Whether ``value`` may construct a Keras object (``layers.Dense(...)``): a call of a capitalised name
    under an imported Keras module, as the analysis decides it (a superset of its test)."""
    parts: List[str] = []
    func: ast.expr = value.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in imports:
        return False
    qualified = imports[func.id].split(".") + parts[::-1]
    return qualified[-1][:1].isupper() and any(part in ("keras", "tf_keras") for part in qualified)
