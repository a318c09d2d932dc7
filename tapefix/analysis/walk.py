"""A fast, read-only walk of a libcst tree that calls a ``CSTVisitor``'s methods.

``node.visit(visitor)`` rebuilds every node it passes (libcst's ``_visit_and_replace_children``
constructs and validates a new node even for a read-only visitor), which makes a visit cost about
as much as the parse itself. tapefix only reads the tree, several times per module, so it walks the
nodes' fields directly instead, in the order libcst visits them (learned once per node class from
libcst's own ``on_visit_attribute`` callbacks), and skips whitespace and punctuation nodes, which no
tapefix visitor looks at.

Semantics kept from ``CSTVisitor``: ``on_visit`` (or ``visit_<Node>``) returning ``False`` skips the
node's children; ``on_leave`` (or ``leave_<Node>``) is called after them.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple, Type

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, MetadataWrapper, PositionProvider
from libcst.metadata.position_provider import NEWLINE_RE, PositionProvidingCodegenState

#: Nodes that are only whitespace, comments and punctuation; their subtrees hold nothing else.
TRIVIA: Tuple[Type[cst.CSTNode], ...] = (
    cst.SimpleWhitespace,
    cst.ParenthesizedWhitespace,
    cst.TrailingWhitespace,
    cst.EmptyLine,
    cst.Comment,
    cst.Newline,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.Comma,
    cst.Dot,
    cst.Colon,
    cst.Semicolon,
    cst.AssignEqual,
)
_TRIVIA_SET = frozenset(TRIVIA)

#: per node class: its child fields in visiting order, and the fields libcst skipped because they were None
_FIELDS: Dict[type, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {}
_VARIANTS: Dict[Tuple[type, Tuple[bool, ...]], Tuple[str, ...]] = {}
#: ``_without_trivia`` of each variant's fields, by node class and variant
_NODE_VARIANTS: Dict[Tuple[type, Tuple[str, ...]], Tuple[str, ...]] = {}
#: per node class: its child fields that can hold something other than trivia, in visiting order
_NODE_FIELDS: Dict[type, Tuple[str, ...]] = {}
NODE_FIELDS = _NODE_FIELDS
#: per node class: the fields whose declared type admits only trivia (whitespace, punctuation, None)
_TRIVIA_FIELDS: Dict[type, FrozenSet[str]] = {}
_Handler = Optional[Callable[[cst.CSTVisitor, cst.CSTNode], Optional[bool]]]
#: the classes of values in a node field that are not nodes to enter
NOT_NODES = frozenset(TRIVIA) | {type(None), cst.MaybeSentinel}
_SKIP = NOT_NODES
_TRIVIA_TYPES = TRIVIA + (cst.BaseParenthesizableWhitespace, type(None), cst.MaybeSentinel, str)


class _FieldOrder(cst.CSTVisitor):
    """Records the fields libcst visits on one node, in order, without descending."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: List[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        self.fields.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass


def child_fields(node: cst.CSTNode) -> Tuple[str, ...]:
    """The names of ``node``'s child fields in the order libcst visits them."""
    kind = type(node)
    entry = _FIELDS.get(kind)
    if entry is None:
        # A few nodes visit a field only when it is set (an f-string's format spec): their order is
        # learned for each combination of their optional fields that are set.
        hints = typing.get_type_hints(kind)
        optional = tuple(
            f.name for f in dataclasses.fields(kind) if type(None) in _leaf_types(hints.get(f.name, object))
        )
        entry = _FIELDS[kind] = (() if optional else _learn(node), optional)
        if not optional:
            _NODE_FIELDS[kind] = _without_trivia(kind, entry[0])
    if not entry[1]:
        return entry[0]
    key = (kind, tuple(getattr(node, name) is not None for name in entry[1]))
    fields = _VARIANTS.get(key)
    if fields is None:
        fields = _VARIANTS[key] = _learn(node)
    return fields


def _without_trivia(kind: type, fields: Tuple[str, ...]) -> Tuple[str, ...]:
    """``fields`` less those whose declared type holds only whitespace and punctuation."""
    skip = _TRIVIA_FIELDS.get(kind)
    if skip is None:
        hints = typing.get_type_hints(kind)
        skip = _TRIVIA_FIELDS[kind] = frozenset(
            name for name, hint in hints.items() if all(_is_trivia_type(t) for t in _leaf_types(hint))
        )
    return tuple(name for name in fields if name not in skip)


def _leaf_types(hint: object) -> List[object]:
    if typing.get_origin(hint) is None:
        return [hint]
    return [leaf for arg in typing.get_args(hint) if arg is not Ellipsis for leaf in _leaf_types(arg)]


def _is_trivia_type(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, _TRIVIA_TYPES)


def _learn(node: cst.CSTNode) -> Tuple[str, ...]:
    recorder = _FieldOrder()
    node._visit_and_replace_children(recorder)
    return tuple(dict.fromkeys(recorder.fields))


def node_fields(node: cst.CSTNode) -> Tuple[str, ...]:
    """``child_fields(node)`` less the fields that hold only trivia (a walk of its own reads
    ``NODE_FIELDS`` first, and calls this for a class not yet there)."""
    kind = type(node)
    fields = _NODE_FIELDS.get(kind)
    if fields is not None:
        return fields
    visited = child_fields(node)
    found = _NODE_VARIANTS.get((kind, visited))
    if found is None:
        found = _NODE_VARIANTS[(kind, visited)] = _without_trivia(kind, visited)
    return found


def children(node: cst.CSTNode) -> List[cst.CSTNode]:
    """The node's children in source order, whitespace and punctuation left out."""
    out: List[cst.CSTNode] = []
    skip = _SKIP
    for name in node_fields(node):
        value = getattr(node, name)
        cls = value.__class__
        if cls is tuple or cls is list:
            out.extend(v for v in value if v.__class__ not in skip)
        elif cls not in skip:
            out.append(value)
    return out


def _table(visitor: object, prefix: str) -> Dict[type, _Handler]:
    """The visitor class's method table for ``prefix``, kept on the class itself, so that it lives and
    dies with the class (a visitor class made per call leaves nothing behind)."""
    owner = visitor if isinstance(visitor, type) else type(visitor)
    tables: Optional[Dict[str, Dict[type, _Handler]]] = owner.__dict__.get("_tapefix_walk_tables")
    if tables is None:
        tables = {}
        owner._tapefix_walk_tables = tables  # type: ignore[attr-defined]
    return tables.setdefault(prefix, {})


def _handler(table: Dict[type, _Handler], visitor: object, prefix: str, kind: type) -> _Handler:
    """The unbound ``visit_<Node>`` (or ``leave_``) method of a visitor (or visitor class), looked up once."""
    try:
        return table[kind]
    except KeyError:
        owner = visitor if isinstance(visitor, type) else type(visitor)
        handler = getattr(owner, f"{prefix}{kind.__name__}", None)
        if handler is not None and getattr(cst.CSTVisitor, f"{prefix}{kind.__name__}", None) is handler:
            handler = None  # libcst's own stub, which does nothing: not calling it saves a call per node
        table[kind] = handler
        return handler


def walk(root: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """Visit ``root`` and every non-trivia node under it with ``visitor``, never rebuilding a node."""
    cls = type(visitor)
    custom_visit = cls.on_visit is not cst.CSTVisitor.on_visit
    custom_leave = cls.on_leave is not cst.CSTVisitor.on_leave
    visits = _table(visitor, "visit_") if not custom_visit else {}
    leaves = _table(visitor, "leave_") if not custom_leave else {}
    fields_of = _NODE_FIELDS
    skip = _SKIP

    def enter(node: cst.CSTNode) -> None:
        kind = type(node)
        if custom_visit:
            descend = visitor.on_visit(node)
        else:
            handler = visits[kind] if kind in visits else _handler(visits, visitor, "visit_", kind)
            descend = True if handler is None else handler(visitor, node) is not False
        if descend:
            fields = fields_of.get(kind)
            if fields is None:
                fields = node_fields(node)
            for name in fields:
                value = getattr(node, name)
                cls = value.__class__
                if cls is tuple or cls is list:
                    for item in value:
                        if item.__class__ not in skip:
                            enter(item)
                elif cls not in skip:
                    enter(value)
        if custom_leave:
            visitor.on_leave(node)
        else:
            handler = leaves[kind] if kind in leaves else _handler(leaves, visitor, "leave_", kind)
            if handler is not None:
                handler(visitor, node)

    enter(root)


class Recording:
    """The ``visit_<Node>`` / ``leave_<Node>`` calls one walk of a tree makes on a visitor class, in order,
    so that a visitor that walks the same unchanged tree many times (a fixed-point pass) can replay them
    without walking. ``visit_`` returning ``False`` still skips the calls for the node's subtree."""

    def __init__(
        self, root: cst.CSTNode, visitor_class: Type[cst.CSTVisitor], walking: Optional[cst.CSTVisitor] = None
    ) -> None:
        """Record the calls a walk of ``root`` makes on ``visitor_class``; with ``walking``, walk that visitor
        in the same pass (its ``visit_`` handlers must not skip children: they are not asked)."""
        #: (handler, node, where to go on when the handler returns False)
        self.calls: List[Tuple[Callable[..., Optional[bool]], cst.CSTNode, int]] = _record(root, visitor_class, walking)

    def replay(self, visitor: cst.CSTVisitor, start: int = 0, end: Optional[int] = None) -> None:
        """Replay the calls from ``start`` up to ``end`` (all of them by default)."""
        calls = self.calls
        index, end = start, len(calls) if end is None else end
        while index < end:
            handler, node, skip_to = calls[index]
            if handler(visitor, node) is False and skip_to > index:
                index = skip_to
            else:
                index += 1


def _record(
    root: cst.CSTNode, target: type, walking: Optional[cst.CSTVisitor] = None
) -> List[Tuple[Callable[..., Optional[bool]], cst.CSTNode, int]]:
    """The calls ``walk(root, target(...))`` would make, without a visitor: the walk's own loop, appending
    each handler with its node. Skipping a node's children lands on its leave call (or what follows).
    ``walking``'s own handlers are called as the walk goes (``walk(root, walking)`` in the same pass)."""
    visits = _table(target, "visit_")
    leaves = _table(target, "leave_")
    calls: List[Tuple[Callable[..., Optional[bool]], cst.CSTNode, int]] = []
    fields_of = _NODE_FIELDS
    skip = _SKIP
    other_visits: Dict[type, _Handler] = _table(walking, "visit_") if walking is not None else {}
    other_leaves: Dict[type, _Handler] = _table(walking, "leave_") if walking is not None else {}

    def enter(node: cst.CSTNode) -> None:
        kind = type(node)
        if walking is not None:
            handler = other_visits[kind] if kind in other_visits else _handler(other_visits, walking, "visit_", kind)
            if handler is not None:
                handler(walking, node)
        visit = visits[kind] if kind in visits else _handler(visits, target, "visit_", kind)
        index = -1
        if visit is not None:
            index = len(calls)
            calls.append((visit, node, -1))
        fields = fields_of.get(kind)
        if fields is None:
            fields = node_fields(node)
        for name in fields:
            value = getattr(node, name)
            cls = value.__class__
            if cls is tuple or cls is list:
                for item in value:
                    if item.__class__ not in skip:
                        enter(item)
            elif cls not in skip:
                enter(value)
        if index >= 0:
            calls[index] = (visit, node, len(calls))  # type: ignore[assignment]
        leave = leaves[kind] if kind in leaves else _handler(leaves, target, "leave_", kind)
        if leave is not None:
            calls.append((leave, node, -1))
        if walking is not None:
            handler = other_leaves[kind] if kind in other_leaves else _handler(other_leaves, walking, "leave_", kind)
            if handler is not None:
                handler(walking, node)

    enter(root)
    return calls


class Positions:
    """The ranges libcst's ``PositionProvider`` gives, computed one top-level statement at a time.

    The provider generates the code of the whole module to place every node, which costs about twice
    the parse. A rule wants the place of a few nodes, almost always inside the top-level statement
    being visited; this generates only that statement's code, finds where it starts in the module's
    source (a statement whose code occurs once there; otherwise by the plain code of the statements
    before it, which is dearer), and falls back to the whole module for a node it did not find there.
    The ranges are the provider's own (the same codegen state), moved down to the statement's line.
    """

    def __init__(self, module: cst.Module, source: Optional[str] = None) -> None:
        self.module = module
        #: the module's code (``module.code``), when the caller has it at hand
        self.source = source
        self.ranges: Dict[cst.CSTNode, CodeRange] = {}
        self._index = {id(statement): index for index, statement in enumerate(module.body)}
        #: the first line of each top-level statement, as far as computed
        self._lines: List[int] = []
        #: per placed statement: its nodes' ranges counted from line 1, and the lines to add to them
        self._placed: Dict[int, Tuple[Dict[cst.CSTNode, CodeRange], int]] = {}
        self._whole = False

    def get(self, node: cst.CSTNode, statement: Optional[cst.CSTNode] = None) -> CodeRange:
        """The node's range; ``statement`` is the top-level statement that (probably) holds it."""
        found = self.ranges.get(node)
        if found is None and statement is not None and id(statement) in self._index:
            relative, below = self._place(self._index[id(statement)])
            moved = relative.get(node)
            if moved is not None:
                found = CodeRange(
                    CodePosition(moved.start.line + below, moved.start.column),
                    CodePosition(moved.end.line + below, moved.end.column),
                )
                self.ranges[node] = found
        if found is None and not self._whole:
            self._whole = True
            self.ranges.update(MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider))
            found = self.ranges.get(node)
        if found is None:
            raise KeyError(node)
        return found

    def _line_of(self, index: int) -> int:
        module = self.module
        if not self._lines:
            header = "".join(module.code_for_node(line) for line in module.header)
            self._lines.append(1 + _count_newlines(header))
        while len(self._lines) <= index:
            previous = module.body[len(self._lines) - 1]
            self._lines.append(self._lines[-1] + _count_newlines(module.code_for_node(previous)))
        return self._lines[index]

    def _place(self, index: int) -> Tuple[Dict[cst.CSTNode, CodeRange], int]:
        placed = self._placed.get(index)
        if placed is not None:
            return placed
        provider = PositionProvider()
        state = PositionProvidingCodegenState(
            default_indent=self.module.default_indent,
            default_newline=self.module.default_newline,
            provider=provider,
            line=1,
            column=0,
        )
        statement = self.module.body[index]
        # Its leading blank and comment lines hold no node but itself: generate without them (a module may
        # have hundreds before a statement), then give it its range.
        bare = statement.with_changes(leading_lines=()) if getattr(statement, "leading_lines", ()) else statement
        bare._codegen(state)
        if bare is not statement and bare in provider._computed:
            provider._computed[statement] = provider._computed.pop(bare)
        code = "".join(state.tokens)
        source = self.source
        start = source.find(code) if source is not None and code else -1
        if source is not None and start >= 0 and source.find(code, start + 1) < 0:
            first_line = 1 + _count_newlines(source[:start])
        else:
            first_line = self._line_of(index) + len(getattr(statement, "leading_lines", ()))
        computed: Dict[cst.CSTNode, CodeRange] = provider._computed  # type: ignore[assignment]
        self._placed[index] = (computed, first_line - 1)
        return computed, first_line - 1


def _count_newlines(text: str) -> int:
    return len(NEWLINE_RE.findall(text))
