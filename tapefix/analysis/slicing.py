"""The part of a module that the analysis needs, found before the expensive parse.

libcst parses about five times slower than Python's own parser, and a module that holds a tape is
mostly other code: layers, data pipelines, utilities. ``needed_source`` reads the module with ``ast``,
finds the top-level ``def`` and ``class`` statements, and the methods of the classes, that cannot change
what the analysis says about code that may run under a tape, and leaves them out: their lines become
one ``pass`` statement (indented as they were) and a string that spans them (one token each, where
libcst would read an empty line per line). libcst then parses, and the analysis walks, only what
matters, while every line and column stays that of the original source, so findings and fixes (their
offsets are counted in the original) are those of the whole module.

Kept are every top-level statement that is not a ``def`` or ``class`` (imports, module-level code,
definitions under ``if`` or ``try``); every function or method that names ``GradientTape`` (or an
alias of it), ``compute_loss`` or an entry point, or that holds a ``global`` statement or a call of
``compile``, ``watch``, ``gradient`` or ``jacobian``; and, to a fixed point (``_left_out_units``),
every function, class or method that shares with kept code a name through which the analysis
connects statements:

* a function's own name, and the names of classes defined in it (calls resolve by name; attributes
  of ``self`` are kept per class name);
* names of top-level definitions it reads (a call from it binds a callee's parameters);
* names it assigns a call result to, as ``x`` or ``self.x`` (a Keras object is known by that name);
* module-level names it reads (it may mark them watched, or append a tensor to them);
* names its imports bind (an import anywhere binds for the whole module, to the analysis);
* any mention of a private function's name (the analysis counts them to decide whether the
  function runs only under a tape).

A class is kept as its header and statements (when kept code names it or a name they assign, which
the analysis keeps with the module's, or a method of it is kept) plus the methods something kept
connects to: its ``call``; a method whose name, or an attribute it assigns, kept code of the class
reads (``self.step(...)``, ``self.w``); a method that shares a link as above, or calls a kept method
on ``self`` (binding its parameters).

Anything else a definition holds only concerns itself, and nothing in it runs under a tape.

The ``ast`` read costs about a fifth of libcst's parse, so a module is read only when it is long
(``MIN_LINES``) and its text alone shows that much of it might go (``MIN_SHARE``).

For an editor, ``plan_edit`` re-reads only the top-level statements an edit touched, and says which
functions and methods must be analysed again (those the edit touched and those connected to them,
either way) and where the other findings moved.
"""

from __future__ import annotations

import ast
import bisect
import copy
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple, TypeVar

from tapefix.analysis.tfops import MARKING_METHODS
from tapefix.types import EntryPoint

#: text that makes a definition needed by itself
_MARKERS = ("GradientTape", "compute_loss")
#: calls that make a definition needed: ``compile(loss=...)`` (Keras runs the loss under its tape)
_NEEDING_METHODS = ("compile",)
#: a tape's methods that mark their arguments (a name no function binds is marked for the whole module)
_MARKING_METHODS = MARKING_METHODS
#: the methods the analysis enters when an instance of their class is called
_CALLED_METHODS = ("call", "__call__")
_DEFINITION = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: below this many lines a module is parsed whole: the ``ast`` pass would cost more than it saves
MIN_LINES = 200
#: nor when less than this share of its text is in top-level definitions that name no marker (measured on
#: 21 real packages: reading every long module cost 11% more than parsing it whole, with this 2%)
MIN_SHARE = 0.5
#: the first character of a line that starts a top-level statement (or closes a bracket at column 0)
_COLUMN_0 = re.compile(r"^[^\s#]", re.M)
_DEFINITION_START = ("def ", "async def ", "class ", "@")


class _Statement:
    """One top-level statement: its lines, and what it tells of the module."""

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        #: every identifier it mentions (names, attributes, definition and parameter names)
        self.mentions: Set[str] = set()
        #: what the imports in it bind, in order (local name, what it stands for)
        self.imports: List[Tuple[str, str]] = []
        #: the private functions (``_name``) it defines, at any depth (the analysis counts their uses)
        self.private: Set[str] = set()

    def moved(self: _S, lines: int) -> _S:
        """The same statement ``lines`` further down (a copy: a definition's links are its module's)."""
        other = copy.copy(self)
        other.first += lines
        other.last += lines
        if isinstance(other, _Definition):
            other.members = [member.moved(lines) for member in other.members]
            other.rest = other.rest.moved(lines) if other.rest is not None else None
        return other


_S = TypeVar("_S", bound=_Statement)


class _Definition(_Statement):
    """One top-level def or class: the names through which it connects to other code."""

    def __init__(self, node: ast.stmt, first: int, last: int, text: str) -> None:
        super().__init__(first, last)
        self.text = text
        #: the names it reads
        self.read: Set[str] = set()
        #: its own name and the names of the classes defined in it (attributes of ``self`` go by class)
        self.own: Set[str] = set()
        #: the names through which it may change what the analysis says of other code (set by its module)
        self.links: Set[str] = set()
        #: it holds a global statement, or a call that makes it needed (``_NEEDING_METHODS``)
        self.needed = False
        self.name: str = getattr(node, "name", "")
        #: ``x = <call>`` and ``self.x = <call>`` in it: x, and the call (a Keras object is known by name)
        self.constructed: List[Tuple[str, ast.Call]] = []
        #: attributes it assigns (``self.x = ...``), reads, and calls on ``self`` (``self.x(...)``): what a
        #: method shares with the other methods of its class
        self.stores: Set[str] = set()
        self.loads: Set[str] = set()
        self.calls_on_self: Set[str] = set()
        #: a class's methods, each described on its own (a method of a kept class may still be left out)
        self.members: List[_Definition] = []
        #: the rest of a class: its header and the statements of its body that are not methods
        self.rest: Optional[_Definition] = None
        #: names it passes to a tape's watch / gradient / jacobian that no function around binds: the
        #: analysis marks them module-wide
        self.marked: Set[str] = set()
        #: names it assigns a ``GradientTape(...)`` to (``with name:`` opens a tape wherever it stands)
        self.tapes: Set[str] = set()
        #: names it assigns (the statements of a class body bind them where the analysis keeps the module's)
        self.assigned: Set[str] = set()


class _Code(_Statement):
    """One top-level statement that is not a definition: module-level code, always analysed."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__(first, last)
        #: the names it binds (the analysis's module-level values); none for an import
        self.binds: Set[str] = set()


#: lines as Python counts them (str.splitlines also breaks at form feeds and other separators)
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class _Module:
    """A module read with ``ast``: its lines, its top-level statements and how its definitions connect."""

    def __init__(self, lines: List[str], statements: List[_Statement]) -> None:
        self.lines = lines
        #: the offset at which each line starts (1-based lines: ``starts[line - 1]``), and the end
        self.starts = [0]
        for line in lines:
            self.starts.append(self.starts[-1] + len(line))
        self.statements = statements
        self.definitions = [s for s in statements if isinstance(s, _Definition)]
        code = [s for s in statements if isinstance(s, _Code)]
        #: the (first, last) lines of each top-level statement that is not a definition
        self.code_lines = [(s.first, s.last) for s in code]
        #: every identifier module-level code (everything but the top-level definitions) mentions
        self.code_mentions: Set[str] = set().union(*(s.mentions for s in code))
        #: names bound by module-level code other than imports and definitions
        self.code_names: Set[str] = set().union(*(s.binds for s in code))
        self.top_names = {d.name for d in self.definitions}
        # Imports anywhere count, as they do for the analysis's names.
        self.imports: Dict[str, str] = {}
        for statement in statements:
            self.imports.update(statement.imports)
        #: private functions defined anywhere: the analysis counts their uses in the whole module
        self.private: Set[str] = set().union(*(s.private for s in statements))
        #: names a ``GradientTape(...)`` is assigned to in a definition: ``with name:`` anywhere opens it
        self.tape_vars: Set[str] = set().union(*(d.tapes for d in self.definitions))
        for definition in self.definitions:
            if definition.rest is None:
                self._link(definition)
                continue
            self._link(definition.rest)
            definition.rest.links.update(definition.rest.assigned)
            for member in definition.members:
                self._link(member)
                # Code reaches a method through an attribute (``self.step(...)``), not by its bare name;
                # but a function of the same name counts it among its namesakes.
                if member.name not in self.private:
                    member.links.discard(member.name)
                member.links.update(member.calls_on_self)
        self.tape_aliases = tuple(local for local, bound in self.imports.items() if bound.endswith(".GradientTape"))

    def span(self, first: int, last: int) -> Tuple[int, int]:
        """The offsets of lines first..last (1-based, inclusive), the last line break included."""
        return self.starts[first - 1], self.starts[last]

    def _link(self, definition: _Definition) -> None:
        read = definition.read
        # Bound here or not (a nested scope may bind what this one reads), a module-level name it reads may
        # be one it appends a tensor to or watches.
        definition.links = definition.own | (read & self.top_names) | (read & self.code_names)
        imports = self.imports
        definition.links.update(name for name, call in definition.constructed if _makes_keras_object(call, imports))
        definition.links.update(definition.mentions & self.private)
        # An import anywhere binds its names for the whole module, as far as the analysis goes.
        definition.links.update(local for local, _ in definition.imports)
        definition.links.update(definition.marked)
        definition.links.update(definition.mentions & self.tape_vars)


def _statements(tree: ast.Module, lines: List[str], below: int = 0) -> List[_Statement]:
    """What each top-level statement of ``tree`` tells; it was parsed from ``lines`` after the first
    ``below`` lines of the module."""
    described: List[_Statement] = []
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))]) + below
        last = (node.end_lineno or node.lineno) + below
        if isinstance(node, ast.ClassDef):
            described.append(_describe_class(node, first, last, lines, below))
        elif isinstance(node, _DEFINITION):
            definition = _Definition(node, first, last, "".join(lines[first - 1 : last]))
            _describe(definition, [node])
            described.append(definition)
        else:
            code = _Code(first, last)
            code.mentions = _identifiers(node, code.imports)
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                code.binds = _bound_names(node)
                code.private = {name for name in code.binds if _is_private(name)}
            described.append(code)
    return described


def _read(source: str) -> Optional[_Module]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # libcst's parse says why
    lines: List[str] = _LINES.findall(source)
    return _Module(lines, _statements(tree, lines))


def _read_edited(old: _Module, new: str, start: int, old_end: int, new_end: int) -> Optional[_Module]:
    """``_read(new)``, where ``new`` is ``old``'s source with the whole lines ``start:old_end`` replaced by
    ``new[start:new_end]``: only the top-level statements the edit touched are read again.

    They, and the edited lines, are parsed on their own. The statements around them are whole and start
    at column 0, so when that part parses alone, the module is the statements before it, its own and
    those after it (an open bracket, string or block in it would not parse alone). When it does not,
    the whole source is read."""
    low, high = start, old_end
    before: List[_Statement] = []
    after: List[_Statement] = []
    for statement in old.statements:
        statement_low, statement_high = old.span(statement.first, statement.last)
        if statement_high <= start:
            before.append(statement)
        elif statement_low >= old_end:
            after.append(statement)
        else:
            low, high = min(low, statement_low), max(high, statement_high)
    region = new[low : high + new_end - old_end]
    try:
        tree = ast.parse(region)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _read(new)
    first = bisect.bisect_left(old.starts, low)  # the lines before the region
    last = bisect.bisect_left(old.starts, high)  # the lines up to its end
    region_lines: List[str] = _LINES.findall(region)
    lines = old.lines[:first] + region_lines + old.lines[last:]
    moved = len(region_lines) - (last - first)
    statements = [s.moved(0) for s in before] + _statements(tree, lines, first) + [s.moved(moved) for s in after]
    return _Module(lines, statements)


def needed_source(source: str, entry_points: Sequence[EntryPoint] = ()) -> str:
    """``source`` with the top-level definitions the analysis does not need left out (``_blank``: the
    lines stay); ``source`` itself when nothing can be left out or it does not parse."""
    if source.count("\n") < MIN_LINES or _room(source, _MARKERS + tuple(e.function for e in entry_points)) < MIN_SHARE:
        return source
    module = _read_cached(source)
    if module is None:
        return source
    markers = _MARKERS + module.tape_aliases + tuple(e.function for e in entry_points)
    spans = _left_out_units(module, markers)
    if not spans:
        return source
    return _blank(module.lines, spans)


def _room(source: str, markers: Sequence[str]) -> float:
    """About what share of ``source`` could be left out, judged from its text: that of the top-level
    ``def`` and ``class`` blocks (up to the next line that starts at column 0) that name no marker."""
    starts = [match.start() for match in _COLUMN_0.finditer(source)]
    starts.append(len(source))
    free = 0
    for start, end in zip(starts, starts[1:]):
        if source.startswith(_DEFINITION_START, start) and not any(m in source[start:end] for m in markers):
            free += end - start
    return free / len(source)


def _units(module: _Module) -> Tuple[List[_Definition], Dict[int, _Definition]]:
    """What the slicing keeps or leaves out one by one: each top-level function, and for each class its
    rest (header and statements) and each of its methods; with the class of each rest and method."""
    units: List[_Definition] = []
    owner: Dict[int, _Definition] = {}
    for definition in module.definitions:
        if definition.rest is None:
            units.append(definition)
            continue
        for unit in [definition.rest, *definition.members]:
            units.append(unit)
            owner[id(unit)] = definition
    return units, owner


def _left_out_units(
    module: _Module, markers: Sequence[str], seeds: Optional[Sequence[_Definition]] = None
) -> List[Tuple[int, int]]:
    """The lines of what nothing that may run under a tape connects to: top-level functions, classes,
    and methods of the classes kept. Kept to begin with is every function and method that names a marker
    or is needed by itself (and a class whose own statements do), or else the ``seeds``; then, to a
    fixed point:

    * a function, or the rest of a class (its header and statements), that shares a link with what kept
      code mentions;
    * with the rest of its class, a method that shares a link with kept code (a name it reads, a method
      it calls on ``self``), or whose name, or an attribute it assigns, kept code of its class reads; the
      ``call`` of a class kept.

    A method kept keeps the rest of its class."""
    mentions = set(module.code_mentions)
    #: per class name (the analysis knows the attributes of ``self`` by class name): what kept code reads
    loads: Dict[str, Set[str]] = {d.name: set() for d in module.definitions}
    kept: Set[int] = set()
    units, owner = _units(module)

    def keep(unit: _Definition) -> None:
        if id(unit) in kept:
            return
        kept.add(id(unit))
        mentions.update(unit.mentions)
        cls = owner.get(id(unit))
        if cls is None:
            return
        assert cls.rest is not None
        loads[cls.name].update(unit.loads)
        if unit is cls.rest:
            loads[cls.name].update(unit.mentions)  # what its own statements name (``forward = call``)
            for member in cls.members:
                if member.name in _CALLED_METHODS:
                    keep(member)
        else:
            keep(cls.rest)

    for unit in units if seeds is None else seeds:
        if seeds is not None or unit.needed or any(marker in unit.text for marker in markers):
            keep(unit)
    changed = True
    while changed:
        changed = False
        for unit in units:
            if id(unit) in kept:
                continue
            cls = owner.get(id(unit))
            read = loads[cls.name] if cls is not None and unit is not cls.rest else set()
            if unit.links & mentions or unit.name in read or unit.stores & read:
                keep(unit)
                changed = True
    spans: List[Tuple[int, int]] = []
    for definition in module.definitions:
        whole = definition if definition.rest is None else definition.rest
        if id(whole) not in kept:
            spans.append((definition.first, definition.last))
        else:
            spans.extend((m.first, m.last) for m in definition.members if id(m) not in kept)
    return spans


def _outermost(spans: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """The spans (of definitions and their methods) that no other of them holds."""
    out: List[Tuple[int, int]] = []
    for first, last in sorted(set(spans), key=lambda span: (span[0], -span[1])):
        if not out or first > out[-1][1]:
            out.append((first, last))
    return out


def _blank(lines: List[str], spans: Iterable[Tuple[int, int]]) -> str:
    """The lines with those of each span (1-based, inclusive) left out, their line breaks kept. One
    statement stands in for each span, so that libcst reads one token where it would read an empty line
    per line: ``pass`` on its first line, and a string that runs from there to its last line."""
    out = list(lines)
    for first, last in spans:
        for index in range(first - 1, last):
            line = out[index]
            out[index] = line[len(line.rstrip("\r\n")) :]
        indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip(" \t\f"))]
        out[first - 1] = indent + ("pass" if first == last else 'pass;"""') + out[first - 1]
        if first < last:
            out[last - 1] = '"""' + out[last - 1]
    return "".join(out)


def _identifiers(node: ast.AST, imports: List[Tuple[str, str]]) -> Set[str]:
    """Every identifier in ``node``; what its imports bind goes into ``imports``."""
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
            imports.extend(_imported(inner))
    return found


def _describe_class(node: ast.ClassDef, first: int, last: int, lines: List[str], below: int) -> _Definition:
    """A top-level class: each method described on its own, and the rest of the class (``rest``)."""
    definition = _Definition(node, first, last, "".join(lines[first - 1 : last]))
    parts: List[ast.AST] = [*node.decorator_list, *node.bases, *node.keywords]
    inside: Set[int] = set()
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            member_first = min([statement.lineno, *(d.lineno for d in statement.decorator_list)]) + below
            member_last = (statement.end_lineno or statement.lineno) + below
            member = _Definition(statement, member_first, member_last, "".join(lines[member_first - 1 : member_last]))
            _describe(member, [statement], {id(statement)})
            definition.members.append(member)
            inside.update(range(member_first, member_last + 1))
        else:
            parts.append(statement)
    rest_text = "".join(lines[line - 1] for line in range(first, last + 1) if line not in inside)
    rest = definition.rest = _Definition(node, first, last, rest_text)
    _describe(rest, parts)
    rest.mentions.add(rest.name)
    # The class as a whole is sliced by its parts; the module takes from it what is module-wide.
    for part in [rest, *definition.members]:
        definition.imports.extend(part.imports)
        definition.private.update(part.private)
        definition.tapes.update(part.tapes)
    return definition


def _describe(definition: _Definition, parts: Sequence[ast.AST], methods: Optional[Set[int]] = None) -> None:
    """What ``parts`` (a definition, or the parts of one) tell of ``definition``; ``methods`` holds the
    ids of the defs among them that are methods (of a class outside them)."""
    mentions = definition.mentions
    read = definition.read
    methods = set(methods or ())
    marks = False
    if definition.name:
        definition.own.add(definition.name)
    for inner in (inner for part in parts for inner in ast.walk(part)):
        if isinstance(inner, ast.Name):
            mentions.add(inner.id)
            if isinstance(inner.ctx, ast.Load):
                read.add(inner.id)
            else:
                definition.assigned.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            mentions.add(inner.attr)
            (definition.loads if isinstance(inner.ctx, ast.Load) else definition.stores).add(inner.attr)
        elif isinstance(inner, _DEFINITION):
            mentions.add(inner.name)
            if isinstance(inner, ast.ClassDef):
                definition.own.add(inner.name)
                methods.update(id(s) for s in inner.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)))
            elif _is_private(inner.name) and id(inner) not in methods:
                definition.private.add(inner.name)  # a function (the analysis counts uses of those)
        elif isinstance(inner, ast.arg):
            mentions.add(inner.arg)
        elif isinstance(inner, (ast.Import, ast.ImportFrom)):
            definition.imports.extend(_imported(inner))
        elif isinstance(inner, ast.Global):
            definition.needed = True
        elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
            if inner.func.attr in _NEEDING_METHODS:
                definition.needed = True
            marks = marks or inner.func.attr in _MARKING_METHODS
            if isinstance(inner.func.value, ast.Name) and inner.func.value.id == "self":
                definition.calls_on_self.add(inner.func.attr)
        if isinstance(inner, (ast.Assign, ast.AnnAssign)) and isinstance(inner.value, ast.Call):
            opens_tape = _called_name(inner.value).endswith("GradientTape")
            for target in inner.targets if isinstance(inner, ast.Assign) else [inner.target]:
                if isinstance(target, ast.Name):
                    definition.constructed.append((target.id, inner.value))
                    if opens_tape:
                        definition.tapes.add(target.id)
                elif isinstance(target, ast.Attribute):
                    definition.constructed.append((target.attr, inner.value))
    if marks:
        for part in parts:
            definition.marked.update(_free_marks(part, frozenset()))


def _free_marks(node: ast.AST, bound: FrozenSet[str]) -> Set[str]:
    """The names ``node`` passes to a tape's watch / gradient / jacobian that no function around the call
    binds as a parameter or by a plain assignment (``bound``: those of the functions around ``node``)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        bound = bound | _locals(node)
    found: Set[str] = set()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MARKING_METHODS:
        for argument in node.args:
            elements = argument.elts if isinstance(argument, (ast.List, ast.Tuple)) else [argument]
            found.update(e.id for e in elements if isinstance(e, ast.Name) and e.id not in bound)
    for child in ast.iter_child_nodes(node):
        found |= _free_marks(child, bound)
    return found


def _locals(function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> FrozenSet[str]:
    """A function's parameters and the names its own body assigns plainly (``x = ...``)."""
    arguments = function.args
    names = {a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]}
    names.update(a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None)
    stack: List[ast.AST] = list(function.body) if isinstance(function.body, list) else [function.body]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return frozenset(names)


def _called_name(call: ast.Call) -> str:
    """The last name of what ``call`` calls (``GradientTape`` for ``tf.GradientTape(...)``)."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_private(name: str) -> bool:
    """A name the analysis may find private (``_helper``; not ``__init__``)."""
    return name.startswith("_") and not name.startswith("__")


def _bound_names(statement: ast.stmt) -> Set[str]:
    """Names a module-level statement binds (the analysis's module values)."""
    names: Set[str] = set()
    for inner in ast.walk(statement):
        if isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
            names.add(inner.id)
        elif isinstance(inner, _DEFINITION):
            names.add(inner.name)
    return names


def _imported(node: ast.Import | ast.ImportFrom) -> List[Tuple[str, str]]:
    """What each imported name stands for (``layers``: ``tensorflow.keras.layers``)."""
    if isinstance(node, ast.Import):
        # ``import a.b`` binds ``a``, ``import a.b as c`` binds ``c`` to ``a.b``
        return [(alias.asname, alias.name) if alias.asname else _head(alias.name) for alias in node.names]
    if node.module and not node.level:
        return [(alias.asname or alias.name, f"{node.module}.{alias.name}") for alias in node.names]
    return []


def _head(name: str) -> Tuple[str, str]:
    head = name.split(".")[0]
    return head, head


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

    def before(self, offset: int) -> int:
        """Where an offset of the new source outside the edited text was in the old one."""
        return offset if offset <= self.start else offset - self.delta

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
    start = _common_length(old, new, 0, min(len(old), len(new)))
    suffix = _common_length(old, new, -1, min(len(old), len(new)) - start)
    # Whole lines: from the start of the first line the edit touches to the end of its last one.
    start = old.rfind("\n", 0, start) + 1
    tail = old.find("\n", len(old) - suffix)
    old_end = len(old) if tail < 0 else tail + 1
    new_end = old_end + len(new) - len(old)
    old_module = _read_cached(old)
    if old_module is None:
        return None
    new_module = _RECENT.get(new) or _remember(new, _read_edited(old_module, new, start, old_end, new_end))
    if new_module is None:
        return None
    for module, end in ((old_module, old_end), (new_module, new_end)):
        for first, last in module.code_lines:
            low, high = module.span(first, last)
            if low < end and start < high:
                return None  # module-level code changed
    lines = len(_BREAKS.findall(new, start, new_end)) - len(_BREAKS.findall(old, start, old_end))
    units, owner = _units(new_module)
    old_seeds = _touched(old_module, start, old_end)
    component = _touched(new_module, start, new_end)
    links: Set[str] = set()
    mentions: Set[str] = set()
    #: per class name: the attributes its units in the component read, and the names and attributes of
    #: its methods there (a method of the class called by the first, or that reads one of the second,
    #: joins)
    reads: Dict[str, Set[str]] = {}
    attributes: Dict[str, Set[str]] = {}
    chosen: Set[int] = set()

    def join(unit: _Definition, cls: Optional[_Definition]) -> None:
        links.update(unit.links)
        mentions.update(unit.mentions)
        if cls is not None:
            reads.setdefault(cls.name, set()).update(unit.loads)
            attributes.setdefault(cls.name, set()).update(unit.stores | {unit.name} if unit is not cls.rest else ())

    _, old_owner = _units(old_module)
    for unit in old_seeds:
        join(unit, old_owner.get(id(unit)))
    for unit in component:
        chosen.add(id(unit))
        join(unit, owner.get(id(unit)))
    # Module-level code is always analysed; when the edit may change what it means, its findings are new
    # too, and so are those of the definitions it connects to (the names it binds, the functions it calls).
    code_links = new_module.code_names | (new_module.code_mentions & new_module.top_names)
    code_joined = False
    grown = True
    while grown:
        grown = False
        if not code_joined and links & new_module.code_mentions:
            code_joined = True
            links.update(code_links)
            mentions.update(new_module.code_mentions)
        for unit in units:
            if id(unit) in chosen:
                continue
            cls = owner.get(id(unit))
            joins = bool(unit.links & mentions or links & unit.mentions)
            if cls is not None and unit is not cls.rest:
                # What the component changes: attributes it assigns and methods it calls (their parameters),
                # and the methods that call it (its value) or read what it assigns.
                joins = joins or unit.name in reads.get(cls.name, set())
                joins = joins or bool(unit.loads & attributes.get(cls.name, set()))
                # An instance of a class in the component is called: its ``call`` runs where it is called.
                joins = joins or (unit.name in _CALLED_METHODS and id(cls.rest) in chosen)
            if joins:
                chosen.add(id(unit))
                component.append(unit)
                join(unit, cls)
                grown = True
    # Left out: what the component does not need, and what nothing under a tape connects to.
    spans = _left_out_units(new_module, (), component + [u for u in units if u.needed])
    spans += _left_out_units(new_module, _MARKERS + new_module.tape_aliases)
    needed = _blank(new_module.lines, _outermost(spans)) if spans else new
    plan = EditPlan(start, old_end, new_end, lines, needed)
    seeds = {id(u) for u in _touched(new_module, start, new_end)}
    for unit in component:
        for low, high in _own_spans(new_module, unit, owner.get(id(unit))):
            plan.fresh.append((low, high))
            if id(unit) not in seeds:
                plan.replaced.append((plan.before(low), plan.before(high)))
    for unit in old_seeds:
        plan.replaced.extend(_own_spans(old_module, unit, old_owner.get(id(unit))))
    if code_joined:
        for first, last in new_module.code_lines:
            low, high = new_module.span(first, last)
            plan.fresh.append((low, high))
            plan.replaced.append((plan.before(low), plan.before(high)))
    return plan


def _own_spans(module: _Module, unit: _Definition, cls: Optional[_Definition]) -> List[Tuple[int, int]]:
    """The offsets of a unit's own lines: a class's rest has those of its class but its methods'."""
    low, high = module.span(unit.first, unit.last)
    if cls is None or unit is not cls.rest:
        return [(low, high)]
    spans: List[Tuple[int, int]] = []
    for member in sorted(cls.members, key=lambda m: m.first):
        member_low, member_high = module.span(member.first, member.last)
        if low < member_low:
            spans.append((low, member_low))
        low = max(low, member_high)
    if low < high:
        spans.append((low, high))
    return spans


def _touched(module: _Module, start: int, end: int) -> List[_Definition]:
    """The units (``_units``) the edited offsets ``start:end`` touch: a method, when the edit lies within
    it; else the class's rest and all of its methods."""
    touched: List[_Definition] = []
    for definition in module.definitions:
        if not _touches(module, definition, start, end):
            continue
        if definition.rest is None:
            touched.append(definition)
            continue
        inside = [m for m in definition.members if _within(module, m, start, end)]
        touched.extend(inside if inside else [definition.rest, *definition.members])
    return touched


def _within(module: _Module, definition: _Definition, start: int, end: int) -> bool:
    low, high = module.span(definition.first, definition.last)
    return low <= start and end <= high


def _touches(module: _Module, definition: _Definition, start: int, end: int) -> bool:
    low, high = module.span(definition.first, definition.last)
    return low < end and start < high


_RECENT: Dict[str, Optional[_Module]] = {}


def _read_cached(source: str) -> Optional[_Module]:
    """``_read``, remembering the last few sources (an editor re-checks each version after the one before)."""
    return _RECENT[source] if source in _RECENT else _remember(source, _read(source))


def _remember(source: str, module: Optional[_Module]) -> Optional[_Module]:
    if len(_RECENT) >= 4:
        _RECENT.pop(next(iter(_RECENT)))
    _RECENT[source] = module
    return module


def _common_length(a: str, b: str, direction: int, limit: int) -> int:
    """How many characters ``a`` and ``b`` share at their start (``direction`` 0) or end (-1), at most
    ``limit``: a binary search, its comparisons of slices made in C."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if direction == 0:
            same = a[low:middle] == b[low:middle]
        else:
            same = a[len(a) - middle : len(a) - low] == b[len(b) - middle : len(b) - low]
        if same:
            low = middle
        else:
            high = middle - 1
    return low
