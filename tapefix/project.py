"""The project index: which functions of which modules a tape elsewhere in the tree runs.

A loss function usually lives in another module (``from .losses import focal_loss``). Given the files
of a tree, ``entry_points`` follows the calls that recorded code makes (and the losses handed to Keras's
``compile``) into the modules of that tree that define the callee, transitively, and returns for each
file the functions a tape elsewhere runs, with the arguments that are on the gradient path. The engine
then analyses those functions as ``Scope.THROUGH_CALL`` regions.

Two phases keep it cheap: a summary per module from Python's own ``ast`` (its imports and the names it
defines; no inference), and a full analysis only of modules that may run code under a tape *and* import
something from the tree. Nothing here reads a file: the caller passes ``read``.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from tapefix.prefilter import might_run_under_tape
from tapefix.types import EntryPoint, SourceError

#: a module's text by path, or None when it cannot be read
Reader = Callable[[str], Optional[str]]

#: how many module analyses one run may spend on following calls (bounds pathological trees)
MAX_ANALYSES_PER_MODULE = 4
#: how many re-exports one name may go through (``pkg/__init__.py`` re-exporting ``pkg.losses.f``)
MAX_REEXPORTS = 5


@dataclass(frozen=True)
class Binding:
    """What an imported name stands for: a dotted name, absolute or (with ``anchor``) relative to a folder."""

    dotted: str
    #: the package folder a relative import starts from; None for an absolute import
    anchor: Optional[str] = None


@dataclass(frozen=True)
class ModuleSummary:
    """What the index needs of one module to resolve names, read without inference."""

    path: str
    imports: Mapping[str, Binding] = field(default_factory=dict)
    #: top-level functions and classes the module defines
    defines: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class CallGraph:
    """Which names the code of one module calls, by name; only asked of modules that import from the tree."""

    #: the names called (``f(...)``: f; ``a.b.f(...)``: a and f) in each def, and the names assigned to each
    #: name or attribute (``self.loss_fn = focal_loss``), keyed by the def's or the target's name
    calls: Mapping[str, FrozenSet[str]] = field(default_factory=dict)
    #: the names called inside ``with`` blocks that may record and in ``loss=`` values given to ``compile``
    roots: FrozenSet[str] = frozenset()


def parse(source: str) -> Optional[ast.Module]:
    """Python's own parse of a module (about a fifth of libcst's cost); None when it does not parse."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def summarise(path: str, tree: Optional[ast.Module]) -> ModuleSummary:
    """The imports (relative ones anchored at their package folder) and top-level definitions of a module."""
    if tree is None:
        return ModuleSummary(path)
    imports: Dict[str, Binding] = {}
    folder = os.path.dirname(path)
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports[alias.asname] = Binding(alias.name)
                else:
                    head = alias.name.split(".")[0]
                    imports[head] = Binding(head)
        else:
            anchor = None
            if node.level:
                anchor = folder
                for _ in range(node.level - 1):
                    anchor = os.path.dirname(anchor)
            for alias in node.names:
                if alias.name == "*":
                    continue
                base = f"{node.module}.{alias.name}" if node.module else alias.name
                imports[alias.asname or alias.name] = Binding(base, anchor)
    defines = frozenset(
        statement.name
        for statement in tree.body
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    )
    return ModuleSummary(path, imports, defines)


def _import_statements(tree: ast.Module) -> List[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, in source order (a later import of a name wins)."""
    found: List[ast.Import | ast.ImportFrom] = []
    statements: List[ast.AST] = [tree]
    while statements:
        node = statements.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                statements.append(child)  # imports are statements: expressions are never entered
    found.sort(key=lambda n: (n.lineno, n.col_offset))
    return found


def call_graph(tree: Optional[ast.Module]) -> CallGraph:
    """Which names each def calls and which names run where a tape may record, by name."""
    if tree is None:
        return CallGraph()
    scan = _Scan()
    scan.visit(tree)
    return CallGraph({name: frozenset(names) for name, names in scan.calls.items()}, frozenset(scan.roots))


#: the modules an import statement names: ``from a.b import c`` gives "a.b"; ``import a.b as c, d`` gives
#: "a.b as c, d" (its first words are what matter); backslash continuations included
_IMPORTED_MODULES = re.compile(
    r"\bfrom(?:\s|\\\r?\n)+(\.*)(?:\s|\\\r?\n)*([A-Za-z_]\w*)?|\bimport(?:\s|\\\r?\n)+((?:[^\n;#\\]|\\\r?\n)*)"
)


class _Scan(ast.NodeVisitor):
    """One walk: the names each def calls (nested defs' calls count for the enclosing def too), the names
    assigned to each name or attribute, and the names called where a tape may record."""

    def __init__(self) -> None:
        self.calls: Dict[str, Set[str]] = {}
        self.roots: Set[str] = set()
        #: the sets that a call found here adds its names to (enclosing defs, recording blocks)
        self.open: List[Set[str]] = []

    def _within(self, names: Set[str], node: ast.AST) -> None:
        self.open.append(names)
        self.generic_visit(node)
        self.open.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._within(self.calls.setdefault(node.name, set()), node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._within(self.calls.setdefault(node.name, set()), node)

    def visit_With(self, node: ast.With) -> None:
        if any(_may_record(item) for item in node.items):
            self._within(self.roots, node)
        else:
            self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        if any(_may_record(item) for item in node.items):
            self._within(self.roots, node)
        else:
            self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assigned(node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._assigned([node.target], node.value)
        self.generic_visit(node)

    def _assigned(self, targets: Sequence[ast.expr], value: ast.expr) -> None:
        for target in targets:
            key = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if key is not None:
                self.calls.setdefault(key, set()).update(_read_names(value))

    def visit_Call(self, node: ast.Call) -> None:
        names: Set[str] = set()
        func = node.func
        if isinstance(func, ast.Attribute):
            names.add(func.attr)
            while isinstance(func, ast.Attribute):
                func = func.value
        if isinstance(func, ast.Name):
            names.add(func.id)
        for enclosing in self.open:
            enclosing.update(names)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "compile":
            for keyword in node.keywords:
                if keyword.arg == "loss":
                    self.roots.update(_read_names(keyword.value))
        self.generic_visit(node)


def _may_record(item: ast.withitem) -> bool:
    """``with tf.GradientTape() as t`` or ``with tape:`` (resuming a tape)."""
    expr = item.context_expr
    return isinstance(expr, ast.Name) or "GradientTape" in ast.dump(expr)


def _read_names(node: ast.AST) -> Set[str]:
    names: Set[str] = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            names.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            names.add(inner.attr)
    return names


class ProjectIndex:
    """The modules of one tree, and where a dotted name used in one of them is defined."""

    def __init__(self, files: Sequence[str], read: Reader) -> None:
        self.read = read
        self.paths = {os.path.abspath(p): p for p in files}
        self._trees: Dict[str, Optional[ast.Module]] = {}
        self._summaries: Dict[str, ModuleSummary] = {}
        self._graphs: Dict[str, CallGraph] = {}
        #: every folder name and module name in the tree's paths: an absolute import can reach a module of
        #: the tree only if its first name is one of them
        self._components: Set[str] = set()
        #: "pkg/losses.py" style tails of each file, for imports made from outside the package's root
        self._by_tail: Dict[str, List[str]] = {}
        for absolute in self.paths:
            parts = absolute.split(os.sep)
            for depth in range(1, min(len(parts), 6)):
                self._by_tail.setdefault(os.sep.join(parts[-depth:]), []).append(absolute)
            self._components.update(parts[:-1])
            self._components.add(os.path.splitext(parts[-1])[0])
        self._components.discard("")

    def text(self, path: str) -> Optional[str]:
        return self.read(self.paths.get(os.path.abspath(path), path))

    def tree(self, path: str) -> Optional[ast.Module]:
        absolute = os.path.abspath(path)
        if absolute not in self._trees:
            source = self.text(absolute)
            self._trees[absolute] = parse(source) if source is not None else None
        return self._trees[absolute]

    def summary(self, path: str) -> ModuleSummary:
        absolute = os.path.abspath(path)
        found = self._summaries.get(absolute)
        if found is None:
            found = self._summaries[absolute] = summarise(absolute, self.tree(absolute))
        return found

    def graph(self, path: str) -> CallGraph:
        absolute = os.path.abspath(path)
        found = self._graphs.get(absolute)
        if found is None:
            found = self._graphs[absolute] = call_graph(self.tree(absolute))
        return found

    def may_import_from_tree(self, source: str) -> bool:
        """The text test before any parse: does an import statement name a relative module, or an absolute
        one whose first name is a folder or module of the tree? (Text in strings and comments only makes
        it say yes more often.)"""
        for dots, first, names in _IMPORTED_MODULES.findall(source):
            if dots or first in self._components:
                return True
            for name in names.split(","):
                word = name.strip(" \t\\\r\n()").split(".")[0].split()
                if word and word[0] in self._components:
                    return True
        return False

    # ------------------------------------------------------------------ modules
    def module_file(self, parts: Sequence[str], importer: str, anchor: Optional[str]) -> Optional[str]:
        """The file of the module ``parts`` (``["pkg", "losses"]``) as ``importer`` would import it."""
        if anchor is not None:
            return self._file_under(anchor, parts)
        if not parts:
            return None
        # sys.path holds the script's folder or a root above it: try the importer's folders, nearest first.
        folder = os.path.dirname(os.path.abspath(importer))
        while True:
            found = self._file_under(folder, parts)
            if found is not None:
                return found
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        # A tree whose root is not an ancestor (``src/`` layouts): a unique file with that dotted tail.
        for tail in (os.sep.join(parts) + ".py", os.sep.join([*parts, "__init__.py"])):
            candidates = self._by_tail.get(tail, [])
            if len(candidates) == 1:
                return candidates[0]
        return None

    def _file_under(self, folder: str, parts: Sequence[str]) -> Optional[str]:
        base = os.path.join(folder, *parts)
        for candidate in (base + ".py" if parts else None, os.path.join(base, "__init__.py")):
            if candidate is not None and candidate in self.paths:
                return candidate
        return None

    # ------------------------------------------------------------------ names
    def resolve(self, importer: str, name: str, depth: int = 0) -> Optional[Tuple[str, str]]:
        """(file, top-level name in it) for a dotted callee ``name`` written in ``importer``, when the
        callee is a function or class defined in a module of the tree; else None."""
        head, _, rest = name.partition(".")
        binding = self.summary(importer).imports.get(head)
        if binding is None or depth > MAX_REEXPORTS:
            return None
        parts = binding.dotted.split(".") + (rest.split(".") if rest else [])
        # The longest prefix that is a module of the tree; what follows is a name defined in it.
        for split in range(len(parts), -1, -1):
            if split == 0 and binding.anchor is None:
                break
            module = self.module_file(parts[:split], importer, binding.anchor)
            if module is None:
                continue
            attributes = parts[split:]
            if len(attributes) != 1:
                if len(attributes) > 1 and attributes[0] in self.summary(module).imports:
                    return self.resolve(module, ".".join(attributes), depth + 1)
                return None
            summary = self.summary(module)
            if attributes[0] in summary.defines:
                return module, attributes[0]
            if attributes[0] in summary.imports:
                return self.resolve(module, attributes[0], depth + 1)  # a re-export
            return None
        return None

    def tree_imports(self, path: str) -> Set[str]:
        """The names the module imports from modules of the tree (cheap: no inference)."""
        found: Set[str] = set()
        source = self.text(path)
        if source is None or not self.may_import_from_tree(source):
            return found
        for local, binding in self.summary(path).imports.items():
            parts = binding.dotted.split(".")
            for split in range(len(parts), 0 if binding.anchor is None else -1, -1):
                if self.module_file(parts[:split], path, binding.anchor) is not None:
                    found.add(local)
                    break
        return found

    def may_call_into_tree(self, path: str, entered: Sequence[str]) -> bool:
        """Can code that runs under a tape in this module (its tape blocks, ``compile`` losses and the
        ``entered`` functions, followed through the names they call) call a name imported from the tree?
        A syntactic over-approximation of ``ModuleAnalysis.external_calls``, so a False spares its cost."""
        imported = self.tree_imports(path)
        if not imported:
            return False
        graph = self.graph(path)
        seen: Set[str] = set()
        # A class entered as a loss runs its call(); a def it holds is keyed by its own name.
        work = [*graph.roots, "compute_loss"]  # a Keras compute_loss override runs under the train step's tape
        if entered:
            work.extend([*entered, "call", "__call__"])
        while work:
            name = work.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in imported:
                return True
            work.extend(graph.calls.get(name, ()))
        return False


def entry_points(files: Sequence[str], read: Reader) -> Dict[str, Tuple[EntryPoint, ...]]:
    """For each file of the tree that a tape in another module runs: the entry points into it, sorted.

    Files not in the result have none. ``read`` returns a file's text (None when it cannot be read).
    """
    if len(files) < 2:
        return {}
    from tapefix import engine  # libcst, only when some module has to be analysed

    index = ProjectIndex(files, read)
    entries: Dict[str, Set[EntryPoint]] = {}
    analysed: Dict[str, FrozenSet[EntryPoint]] = {}
    analyses: Dict[str, int] = {}
    work: List[str] = [os.path.abspath(p) for p in reversed(files)]
    while work:
        path = work.pop()
        current = frozenset(entries.get(path, ()))
        if analysed.get(path) == current and path in analysed:
            continue
        source = index.text(path)
        if source is None or not might_run_under_tape(source, tuple(current)):
            continue
        analysed[path] = current
        if not index.may_call_into_tree(path, [e.function for e in current]):
            continue
        analyses[path] = analyses.get(path, 0) + 1
        if analyses[path] > MAX_ANALYSES_PER_MODULE:
            continue
        try:
            calls = engine.external_calls(source, _sorted(current), partial(_resolvable, index, path))
        except (SourceError, RecursionError):
            continue  # the file's own run reports why it does not parse
        for call in calls:
            target = index.resolve(path, call.function)
            if target is None:
                continue
            module, name = target
            known = entries.setdefault(module, set())
            merged = _merge(known, replace(call, function=name))
            if merged not in known:
                known.difference_update({e for e in known if (e.function, e.result) == (name, call.result)})
                known.add(merged)
                work.append(module)
    return {index.paths[path]: _sorted(found) for path, found in entries.items() if found}


def _resolvable(index: ProjectIndex, importer: str, name: str) -> bool:
    return index.resolve(importer, name) is not None


def _merge(known: Set[EntryPoint], entry: EntryPoint) -> EntryPoint:
    """One entry per function: an argument is on the path when it is at any call site (as the analysis
    of one module joins the values a function is called with)."""
    for other in known:
        if (other.function, other.result) == (entry.function, entry.result):
            length = max(len(other.positional), len(entry.positional))
            positional = tuple(
                (i < len(other.positional) and other.positional[i])
                or (i < len(entry.positional) and entry.positional[i])
                for i in range(length)
            )
            keywords = tuple(sorted(set(other.keywords) | set(entry.keywords)))
            return EntryPoint(entry.function, positional, keywords, entry.result)
    return entry


def _sorted(entries: FrozenSet[EntryPoint] | Set[EntryPoint]) -> Tuple[EntryPoint, ...]:
    return tuple(sorted(entries, key=lambda e: (e.function, e.positional, e.keywords, e.result)))
