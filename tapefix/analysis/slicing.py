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
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

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


class _Module:
    """A module read with ``ast``: its lines, its top-level definitions and what the rest of it mentions."""

    def __init__(self, source: str, tree: ast.Module) -> None:
        self.lines: List[str] = _LINES.findall(source)
        #: the offset at which each line starts (1-based lines: ``starts[line - 1]``), and the end
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))
        top_names = self.top_names = {s.name for s in tree.body if isinstance(s, _DEFINITION)}
        module_names = self.code_names = _module_level_names(tree.body)
        self.imports: Dict[str, str] = {}
        #: every identifier module-level code (everything but the top-level definitions) mentions
        self.code_mentions: Set[str] = set()
        self.definitions: List[_Definition] = []
        #: the (first, last) lines of each top-level statement that is not a definition
        self.code_lines: List[Tuple[int, int]] = []
        for statement in tree.body:
            first = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", ()))])
            last = statement.end_lineno or statement.lineno
            if not isinstance(statement, _DEFINITION):
                self.code_mentions.update(_identifiers(statement, self.imports))
                self.code_lines.append((first, last))
                continue
            definition = _Definition(statement, first, last, "".join(self.lines[first - 1 : last]))
            _describe(definition, statement, top_names, module_names, self.imports)
            self.definitions.append(definition)
        # Imports anywhere count, as they do for the analysis's names: only now are they all known.
        for definition in self.definitions:
            definition.links.update(
                name for name, call in definition.constructed if _makes_keras_object(call, self.imports)
            )
        self.tape_aliases = tuple(local for local, bound in self.imports.items() if bound.endswith(".GradientTape"))

    def span(self, first: int, last: int) -> Tuple[int, int]:
        """The offsets of lines first..last (1-based, inclusive), the last line break included."""
        return self.starts[first - 1], self.starts[last]


def _read(source: str) -> Optional[_Module]:
    try:
        return _Module(source, ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # libcst's parse says why


def needed_source(source: str, entry_points: Sequence[EntryPoint] = ()) -> str:
    """``source`` with the top-level definitions the analysis does not need left out, each of their lines
    left empty; ``source`` itself when nothing can be left out or it does not parse."""
    if source.count("\n") < MIN_LINES:
        return source
    module = _read(source)
    if module is None:
        return source
    markers = _MARKERS + module.tape_aliases + tuple(e.function for e in entry_points)
    kept = [d for d in module.definitions if d.needed or any(marker in d.text for marker in markers)]
    dropped = _left_out(module, kept)
    if not dropped:
        return source
    return _blank(module.lines, [(d.first, d.last) for d in dropped])


def _left_out(module: _Module, kept: Sequence[_Definition]) -> List[_Definition]:
    """The definitions, besides ``kept``, that nothing kept (nor module-level code) connects to."""
    mentions = set(module.code_mentions)
    for definition in kept:
        mentions.update(definition.mentions)
    chosen = {id(d) for d in kept}
    dropped = [d for d in module.definitions if id(d) not in chosen]
    changed = bool(dropped)
    while changed:
        changed = False
        remaining = []
        for definition in dropped:
            if definition.links & mentions:
                mentions.update(definition.mentions)
                changed = True
            else:
                remaining.append(definition)
        dropped = remaining
    return dropped


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


# ----------------------------------------------------------------------------- an edit, for the editor
_BREAKS = re.compile(r"\r\n|\r|\n")


class EditPlan:
    """How to bring findings up to date after an edit that changed only top-level definitions.

    The definitions the edit touched, and every definition connected to them either way, are analysed
    again from ``needed`` (the new source with the rest left out, save what module-level code needs);
    findings elsewhere are the previous ones, moved by the lines and characters the edit added.
    """

    def __init__(self, start: int, old_end: int, new_end: int, lines: int, needed: str) -> None:
        self.start = start
        self.old_end = old_end
        self.new_end = new_end
        #: how many characters and lines the edit added (negative when it removed them)
        self.delta = new_end - old_end
        self.lines = lines
        self.needed = needed
        #: offset spans of the new source whose findings the new analysis gives
        self.fresh: List[Tuple[int, int]] = []
        #: offset spans of the old source whose findings are dropped (the fresh spans, as they were)
        self.replaced: List[Tuple[int, int]] = [(start, old_end)]

    def is_fresh(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.fresh)

    def is_replaced(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.replaced)

    def moved(self, offset: int) -> Optional[int]:
        """Where an offset of the old source is in the new one; None inside the edited text."""
        if offset <= self.start:
            return offset  # an insertion at the start of the edited lines stays there
        if offset >= self.old_end:
            return offset + self.delta
        return None


def plan_edit(old: str, new: str) -> Optional[EditPlan]:
    """The plan for re-checking ``new`` after ``old``, or None when the whole module must be analysed
    again (the edit touched module-level code, or what it changed may change what that code means)."""
    shortest = min(len(old), len(new))
    start = 0
    while start < shortest and old[start] == new[start]:
        start += 1
    suffix = 0
    while suffix < shortest - start and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    # Whole lines: from the start of the first line the edit touches to the end of its last one.
    start = old.rfind("\n", 0, start) + 1
    tail = old.find("\n", len(old) - suffix)
    old_end = len(old) if tail < 0 else tail + 1
    new_end = old_end + len(new) - len(old)
    old_module, new_module = _read_cached(old), _read_cached(new)
    if old_module is None or new_module is None:
        return None
    for module, end in ((old_module, old_end), (new_module, new_end)):
        for first, last in module.code_lines:
            low, high = module.span(first, last)
            if low < end and start < high:
                return None  # module-level code changed
    lines = len(_BREAKS.findall(new, start, new_end)) - len(_BREAKS.findall(old, start, old_end))
    old_seeds = [d for d in old_module.definitions if _touches(old_module, d, start, old_end)]
    component = [d for d in new_module.definitions if _touches(new_module, d, start, new_end)]
    links: Set[str] = set()
    mentions: Set[str] = set()
    for definition in old_seeds + component:
        links.update(definition.links)
        mentions.update(definition.mentions)
    # Module-level code is always analysed; when the edit may change what it means, its findings are new
    # too, and so are those of the definitions it connects to (the names it binds, the functions it calls).
    code_links = new_module.code_names | (new_module.code_mentions & new_module.top_names)
    code_joined = False
    chosen = {id(d) for d in component}
    grown = True
    while grown:
        grown = False
        if not code_joined and links & new_module.code_mentions:
            code_joined = True
            links.update(code_links)
            mentions.update(new_module.code_mentions)
        for definition in new_module.definitions:
            if id(definition) not in chosen and (definition.links & mentions or links & definition.mentions):
                chosen.add(id(definition))
                component.append(definition)
                links.update(definition.links)
                mentions.update(definition.mentions)
                grown = True
    dropped = _left_out(new_module, component)
    needed = _blank(new_module.lines, [(d.first, d.last) for d in dropped]) if dropped else new
    plan = EditPlan(start, old_end, new_end, lines, needed)
    seeds = {id(d) for d in component if _touches(new_module, d, start, new_end)}
    for definition in component:
        low, high = new_module.span(definition.first, definition.last)
        plan.fresh.append((low, high))
        if id(definition) not in seeds:
            before = (low, high) if high <= start else (low - plan.delta, high - plan.delta)
            plan.replaced.append(before)
    plan.replaced.extend(old_module.span(d.first, d.last) for d in old_seeds)
    if code_joined:
        for first, last in new_module.code_lines:
            low, high = new_module.span(first, last)
            plan.fresh.append((low, high))
            plan.replaced.append((low, high) if high <= start else (low - plan.delta, high - plan.delta))
    return plan


def _touches(module: _Module, definition: _Definition, start: int, end: int) -> bool:
    low, high = module.span(definition.first, definition.last)
    return low < end and start < high


_RECENT: Dict[str, Optional[_Module]] = {}


def _read_cached(source: str) -> Optional[_Module]:
    """``_read``, remembering the last few sources (an editor re-checks each version after the one before)."""
    if source not in _RECENT:
        if len(_RECENT) >= 4:
            _RECENT.pop(next(iter(_RECENT)))
        _RECENT[source] = _read(source)
    return _RECENT[source]
