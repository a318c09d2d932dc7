"""The Rule base class and the context a rule works in.

A rule is a class with a stable ``CODE``, a ``NAME``, a ``MESSAGE``, a documented fix safety and
forward contract, and ``VALID`` / ``INVALID`` examples that are its tests and its docs. It defines
``visit_<Node>`` methods (libcst node class names); the engine calls them only for nodes that run
while a tape records (on every node for a rule with ``EVERYWHERE``), and the rule calls ``self.report(...)``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional, Sequence, Set, Tuple

import libcst as cst
from libcst.metadata import CodePosition, CodeRange

from tapefix.analysis.expressions import is_pure
from tapefix.analysis.scope import Function, ModuleAnalysis, Scope, Value
from tapefix.analysis.syntax import assigned_in, keyword, target_names
from tapefix.analysis.tfops import GRADIENT_METHODS
from tapefix.analysis.walk import Positions, children
from tapefix.types import Edit, Finding, Fix, Forward, Position, Safety


@dataclass(frozen=True)
class Valid:
    """Code the rule must leave alone, byte for byte."""

    code: str
    note: str = ""


@dataclass(frozen=True)
class Invalid:
    """Code the rule must flag. ``expected`` is the source after the fix (unsafe fixes applied);
    ``None`` asserts that the rule reports without offering a fix."""

    code: str
    expected: Optional[str] = None
    note: str = ""
    #: what the verifier must conclude for this example's fix: "verified", "failed" or "unverified"; with
    #: several fixes, the worst of their verdicts ("failed" before "unverified" before "verified")
    verdict: str = "verified"


class Candidate(Exception):
    """A rule reported on a tree built from ``ast``: the module has a finding, to be made exactly."""


class NeedsExact(Exception):
    """A rule asked a tree built from ``ast`` what only libcst's exact tree answers."""


class RuleContext:
    """Everything a rule may ask about the module it is looking at."""

    def __init__(
        self,
        source: str,
        module: cst.Module,
        analysis: ModuleAnalysis,
        code: Optional[str] = None,
        light: Optional[Dict[cst.CSTNode, Tuple[int, int, int, int]]] = None,
    ) -> None:
        """``code`` is what was parsed into ``module`` when it is not all of ``source``: the same lines and
        columns with the definitions the analysis does not need left out (tapefix.analysis.slicing).
        ``light`` is given when ``module`` was built from Python's ``ast`` (tapefix.analysis.lighttree):
        the ranges of its nodes. Such a tree only tells whether the module has a finding: the first
        ``report`` raises ``Candidate``, and a question it cannot answer exactly raises ``NeedsExact``."""
        self.light = light
        self.source = source
        self.code = source if code is None else code
        self.module = module
        self.analysis = analysis
        self.scope: Scope = Scope.DIRECT
        #: the node being visited runs while a tape records (always true for rules without ``EVERYWHERE``)
        self.recording: bool = True
        self.function: Optional[Function] = None
        self.findings: List[Finding] = []
        #: the nodes from the module down to the node being visited
        self.ancestors: List[cst.CSTNode] = []
        self._positions: Optional[Positions] = None
        self._line_starts: Optional[List[int]] = None
        #: every identifier-like word of the source (names a fix binds must not clash with any)
        self._identifiers: Optional[Set[str]] = None
        self._tape_blocks: Optional[TapeBlocks] = None

    def tape_blocks(self) -> TapeBlocks:
        """The module's ``TapeBlocks`` (made by the first ``TapeBlockRule`` that asks)."""
        if self._tape_blocks is None:
            self._tape_blocks = TapeBlocks(self)
        return self._tape_blocks

    # --------------------------------------------------------------- values and names
    def value(self, expr: cst.BaseExpression) -> Value:
        return self.analysis.value(expr, self.function)

    def on_path(self, expr: cst.BaseExpression) -> bool:
        return self.value(expr).on_path

    @property
    def parent(self) -> Optional[cst.CSTNode]:
        """The parent of the node being visited."""
        return self.ancestors[-2] if len(self.ancestors) >= 2 else None

    # --------------------------------------------------------------- positions and text
    def _range(self, node: cst.CSTNode) -> CodeRange:
        if self.light is not None:
            found = self.light.get(node)
            if found is None:
                raise NeedsExact(f"no range for a {type(node).__name__}")
            return CodeRange(CodePosition(found[0], found[1]), CodePosition(found[2], found[3]))
        if self._positions is None:
            # Only modules with a finding pay for positions, and mostly only for the top-level
            # statement being visited (tapefix.analysis.walk.Positions).
            self._positions = Positions(self.module, self.code)
        return self._positions.get(node, self.ancestors[1] if len(self.ancestors) > 1 else None)

    def offset(self, line: int, column: int) -> int:
        if self._line_starts is None:
            starts = [0]
            for match in re.finditer(r"\r\n|\r|\n", self.source):
                starts.append(match.end())
            self._line_starts = starts
        return self._line_starts[line - 1] + column

    def span(self, node: cst.CSTNode) -> Tuple[int, int]:
        """Code-point offsets of the node, its own parentheses included."""
        code_range = self._range(node)
        start = self.offset(code_range.start.line, code_range.start.column)
        end = self.offset(code_range.end.line, code_range.end.column)
        for _ in getattr(node, "lpar", ()):
            start = self.source.rindex("(", 0, start)
        for _ in getattr(node, "rpar", ()):
            end = self.source.index(")", end) + 1
        return start, end

    def text(self, node: cst.CSTNode) -> str:
        """The node's own source text, exactly as the user wrote it."""
        start, end = self.span(node)
        return self.source[start:end]

    def line_indent(self, node: cst.CSTNode) -> str:
        """The whitespace that starts the line the node starts on."""
        start, _ = self.span(node)
        line_start = self._line_starts[bisect.bisect_right(self._line_starts, start) - 1] if self._line_starts else 0
        prefix = self.source[line_start:start]
        return prefix[: len(prefix) - len(prefix.lstrip(" \t"))]

    @property
    def newline(self) -> str:
        return self.module.default_newline

    # --------------------------------------------------------------- building fixes
    def replace(self, node: cst.CSTNode, text: str) -> Edit:
        start, end = self.span(node)
        return Edit(start, end, text)

    def tf(self) -> Tuple[str, Tuple[Edit, ...]]:
        """The module's name for TensorFlow, and the edit that imports it when the module has none."""
        alias = self.analysis.tf_alias
        if alias is not None:
            return alias, ()
        offset = self._import_offset()
        text = "import tensorflow as tf" + self.newline
        if offset == len(self.source) and self.source and not self.source.endswith(("\n", "\r")):
            text = self.newline + text
        return "tf", (Edit(offset, offset, text),)

    def _import_offset(self) -> int:
        """Where an added import goes: after the module's leading imports, or else after its
        docstring and ``from __future__`` imports."""
        body = self.module.body
        index = 0
        if body and _is_docstring(body[0]):
            index = 1
        while index < len(body) and _is_future_import(body[index]):
            index += 1
        last_import = None
        while index < len(body) and _is_import(body[index]):
            last_import = body[index]
            index += 1
        if last_import is not None:
            _, end = self.span(last_import)
            return self._next_line_start(end)
        if index < len(body):
            # The start of that statement's first line, its decorators' (its leading comments stay above).
            decorators = getattr(body[index], "decorators", ())
            start, _ = self.span(decorators[0] if decorators else body[index])
            return self._line_start(start)
        return len(self.source)

    def _next_line_start(self, offset: int) -> int:
        self.offset(1, 0)
        assert self._line_starts is not None
        position = bisect.bisect_right(self._line_starts, offset)
        return self._line_starts[position] if position < len(self._line_starts) else len(self.source)

    def _line_start(self, offset: int) -> int:
        self.offset(1, 0)
        assert self._line_starts is not None
        return self._line_starts[bisect.bisect_right(self._line_starts, offset) - 1]

    def name_once(
        self, arg: cst.BaseExpression, text: str, hint: str, worth: bool = True
    ) -> Optional[Tuple[str, Tuple[Edit, ...]]]:
        """For a fix that repeats ``text`` (computed from ``arg``): the text to repeat and the edits that
        bind it. When naming is ``worth`` it, ``text`` is bound once to a fresh name on the line above
        (``bind_above``); an argument with side effects or cost is moved there only when no other call
        of the statement runs before it (``first_evaluated``). None when it can be neither named nor
        repeated: the rule reports without a fix."""
        pure = is_pure(arg, self.analysis)
        if worth and (pure or self.first_evaluated(arg)):
            bound = self.bind_above(text, hint)
            if bound is not None:
                return bound[0], (bound[1],)
        return (text, ()) if pure else None

    def first_evaluated(self, expr: cst.BaseExpression) -> bool:
        """Whether no call of the statement that holds the node being visited runs before ``expr``: then
        computing ``expr`` on the line above (``bind_above``) keeps the order of every call. A call that
        starts before ``expr`` in the statement runs before it, unless it holds ``expr`` (its arguments run
        first)."""
        statement = next((a for a in reversed(self.ancestors) if isinstance(a, cst.SimpleStatementLine)), None)
        if statement is None:
            return False
        start, _ = self.span(expr)
        holders = set(map(id, self.ancestors))
        for node in _calls(statement):
            if id(node) not in holders and node is not expr and self.span(node)[0] < start:
                return False
        return True

    def bind_above(self, value: str, hint: str) -> Optional[Tuple[str, Edit]]:
        """A fresh name for ``value`` and the edit that binds it on a new line above the statement that
        holds the node being visited (same indentation, the module's line ending), so that a fix can name
        a value it would otherwise repeat; None where a new line cannot go: the node is in an expression-only context
        (a lambda, a comprehension, a conditional expression, an ``and``/``or``), in the header of a
        compound statement, or in a line of several statements."""
        ancestors = self.ancestors
        statement: Optional[cst.SimpleStatementLine] = None
        for index in range(len(ancestors) - 1, 0, -1):
            ancestor = ancestors[index]
            if isinstance(ancestor, _EXPRESSION_ONLY) or isinstance(ancestor, cst.BaseCompoundStatement):
                return None
            if isinstance(ancestor, cst.SimpleStatementLine):
                if len(ancestor.body) != 1 or not isinstance(ancestors[index - 1], (cst.IndentedBlock, cst.Module)):
                    return None
                statement = ancestor
                break
        if statement is None:
            return None
        start, _ = self.span(statement.body[0])
        line_start = self._line_start(start)
        indent = self.source[line_start:start]
        if indent.strip(" \t"):
            return None
        name = self.fresh_name(hint)
        return name, Edit(line_start, line_start, f"{indent}{name} = {value}{self.newline}")

    def fresh_name(self, hint: str) -> str:
        """``hint``, or ``hint_2``, ``hint_3``, ...: a name no identifier of the module spells (so it
        shadows nothing and clashes with nothing), and that no other fix of this check takes."""
        if self._identifiers is None:
            self._identifiers = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.source))
        name, count = hint, 1
        while name in self._identifiers:
            count += 1
            name = f"{hint}_{count}"
        self._identifiers.add(name)
        return name

    def persistent_edit(self, constructor: cst.Call) -> Edit:
        """The edit that makes the tape ``tf.GradientTape(...)`` builds persistent: ``persistent=True``
        given (or set) in its arguments."""
        flag = keyword(constructor, "persistent")
        positional = [a for a in constructor.args if a.keyword is None]
        if flag is None and positional:
            flag = positional[0].value
        if flag is not None:
            return self.replace(flag, "True")
        if not constructor.args:
            return self.replace(constructor, f"{self.text(constructor.func)}(persistent=True)")
        start, _ = self.span(constructor.args[0])
        _, end = self.span(constructor.args[-1].value)
        arguments = self.source[start:end]
        return self.replace(constructor, f"{self.text(constructor.func)}({arguments}, persistent=True)")

    def report(
        self,
        rule: Rule,
        node: cst.CSTNode,
        message: Optional[str] = None,
        edits: Sequence[Edit] = (),
        description: str = "",
        no_fix_reason: str = "",
        safety: Optional[Safety] = None,
        forward: Optional[Forward] = None,
    ) -> None:
        """Record a finding; with ``edits``, a fix whose safety and forward contract are the rule's
        unless this fix states its own. A fix in code reached only through a call is never safe."""
        if self.light is not None:
            raise Candidate(rule.CODE)
        code_range = self._range(node)
        start, end = self.span(node)
        fix = None
        through_call = self.scope is Scope.THROUGH_CALL
        if edits:
            safety = rule.SAFETY if safety is None else safety
            if through_call and safety is Safety.SAFE:
                safety = Safety.UNSAFE
            forward = rule.FORWARD if forward is None else forward
            fix = Fix(tuple(sorted(set(edits), key=lambda e: (e.start, e.end))), safety, forward, description)
        self.findings.append(
            Finding(
                code=rule.CODE,
                message=message or rule.MESSAGE,
                start=Position(code_range.start.line, code_range.start.column),
                end=Position(code_range.end.line, code_range.end.column),
                start_offset=start,
                end_offset=end,
                fix=fix,
                through_call=through_call,
                no_fix_reason="" if edits else no_fix_reason,
            )
        )


#: where an expression cannot be bound to a name on the line above: it may run more or less often, or
#: see names bound only there
_EXPRESSION_ONLY = (
    cst.Lambda,
    cst.ListComp,
    cst.SetComp,
    cst.DictComp,
    cst.GeneratorExp,
    cst.IfExp,
    cst.BooleanOperation,
    cst.NamedExpr,
)


def _calls(node: cst.CSTNode) -> List[cst.Call]:
    """The calls under ``node``, not entering lambdas (their body runs later, if ever)."""
    found: List[cst.Call] = []
    for child in children(node):
        if isinstance(child, cst.Lambda):
            continue
        if isinstance(child, cst.Call):
            found.append(child)
        found.extend(_calls(child))
    return found


def _is_docstring(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _is_import(statement: cst.BaseStatement) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and all(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in statement.body
    )


def _is_future_import(statement: cst.BaseStatement) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(s, cst.ImportFrom) and isinstance(s.module, cst.Name) and s.module.value == "__future__"
        for s in statement.body
    )


class Rule:
    """Base class of every rule. The class docstring is the rule's user documentation, with the
    headings *What it does*, *Why is this bad?*, *Example*, *Use instead*, *Fix safety*."""

    CODE: ClassVar[str]
    NAME: ClassVar[str]
    MESSAGE: ClassVar[str]
    SAFETY: ClassVar[Safety] = Safety.UNSAFE
    FORWARD: ClassVar[Forward] = Forward.EXACT
    VALID: ClassVar[Sequence[Valid]] = ()
    INVALID: ClassVar[Sequence[Invalid]] = ()
    #: the engine calls this rule's ``visit_<Node>`` methods on every node of a module that holds a tape
    #: block, not only on nodes that run while a tape records; ``context.recording`` tells them apart.
    #: For rules that look at a tape block from outside (a ``tape.gradient`` call after the block).
    EVERYWHERE: ClassVar[bool] = False

    def __init__(self, context: RuleContext) -> None:
        self.context = context

    def report(
        self,
        node: cst.CSTNode,
        message: Optional[str] = None,
        edits: Sequence[Edit] = (),
        description: str = "",
        no_fix_reason: str = "",
        safety: Optional[Safety] = None,
        forward: Optional[Forward] = None,
    ) -> None:
        self.context.report(self, node, message, edits, description, no_fix_reason, safety, forward)

    @classmethod
    def has_fix(cls) -> bool:
        return any(example.expected is not None for example in cls.INVALID)


@dataclass(frozen=True)
class TapeBlock:
    """A ``with`` statement that opens a gradient tape, seen from one of its tape names."""

    node: cst.With
    name: str
    #: the ``tf.GradientTape(...)`` call that made the tape, when tapefix can see it
    constructor: Optional[cst.Call]
    #: the nodes from the module down to the ``with`` statement (excluded)
    ancestors: Tuple[cst.CSTNode, ...]
    #: when the walk met the ``with`` statement (source order)
    order: int = 0

    @property
    def persistent(self) -> Optional[bool]:
        """True or False when the tape's persistence is a literal (absent means False); None when it is
        not, or when the constructor is not known."""
        if self.constructor is None:
            return None
        flag = keyword(self.constructor, "persistent")
        if flag is None:
            positional = [a for a in self.constructor.args if a.keyword is None]
            flag = positional[0].value if positional else None
        if flag is None:
            return False
        if isinstance(flag, cst.Name) and flag.value in ("True", "False"):
            return flag.value == "True"
        return None


def asks_tape(node: cst.Call, tape_names: Set[str]) -> bool:
    """Whether ``node`` is ``<tape>.gradient(...)`` (or another gradient method) on a name that names a
    tape somewhere in the module."""
    func = node.func
    return (
        type(func) is cst.Attribute
        and func.attr.value in GRADIENT_METHODS  # type: ignore[attr-defined]
        and type(func.value) is cst.Name  # type: ignore[attr-defined]
        and func.value.value in tape_names  # type: ignore[attr-defined]
    )


class TapeBlocks:
    """Where each tape block and each assignment of a plain name lies, as the walk goes: what every
    ``TapeBlockRule`` of a module asks, kept once per module (``RuleContext.tape_blocks``) and updated by
    one handler per node, which the engine calls before the rules'."""

    EVERYWHERE = True

    def __init__(self, context: RuleContext) -> None:
        self.context = context
        self.tape_names: Dict[cst.With, Tuple[str, ...]] = dict(context.analysis.tape_blocks)
        #: the latest tape block before the node being visited, per (function id, tape name)
        self.latest: Dict[Tuple[int, str], TapeBlock] = {}
        #: the latest assignment of each plain name, per function: (order, the nodes above it)
        self.assignments: Dict[Tuple[int, str], Tuple[int, Tuple[cst.CSTNode, ...]]] = {}
        self.order = 0
        self.recorded: Dict[cst.With, Dict[str, List[cst.BaseExpression]]] = {}

    def visit_With(self, node: cst.With) -> None:
        names = self.tape_names.get(node)
        if not names:
            return
        self.order += 1
        ancestors = tuple(self.context.ancestors[:-1])
        for name in names:
            block = TapeBlock(node, name, _constructor(node, name, self.context), ancestors, self.order)
            self.latest[(id(self.context.function), name)] = block

    def visit_Assign(self, node: cst.Assign) -> None:
        self.order += 1
        ancestors = tuple(self.context.ancestors)
        for target in node.targets:
            for name in target_names(target.target):
                self.assignments[(id(self.context.function), name)] = (self.order, ancestors)


class TapeBlockRule(Rule):
    """A rule that the engine calls on every node (``EVERYWHERE``) and that knows, at each
    ``tape.gradient`` / ``tape.jacobian`` call, which tape block recorded for it: the nearest ``with``
    before the call, in the same function, that binds the tape's name (``TapeBlocks``)."""

    EVERYWHERE = True
    #: the rule's ``visit_Call`` returns at once unless ``tape_call`` finds a gradient call: the engine
    #: calls it only for calls that ``asks_tape``
    TAPE_CALLS_ONLY: ClassVar[bool] = False

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        self.blocks = context.tape_blocks()

    @property
    def _latest(self) -> Dict[Tuple[int, str], TapeBlock]:
        return self.blocks.latest

    def assigned_after(self, block: TapeBlock, name: str) -> bool:
        """True when the latest assignment of ``name`` so far comes after the block, outside it."""
        latest = self.blocks.assignments.get((id(self.context.function), name))
        return latest is not None and latest[0] > block.order and block.node.body not in latest[1]

    def assigned_before(self, block: TapeBlock, name: str) -> bool:
        """True when the latest assignment of ``name`` so far comes before the block."""
        latest = self.blocks.assignments.get((id(self.context.function), name))
        return latest is not None and latest[0] < block.order

    def tape_call(self, node: cst.Call) -> Optional[Tuple[TapeBlock, str]]:
        """The tape block and the method (``gradient``, ``jacobian``) when ``node`` asks a tape for
        gradients, else None."""
        if not asks_tape(node, self.context.analysis.tape_names):
            return None
        func = node.func
        block = self.blocks.latest.get((id(self.context.function), func.value.value))  # type: ignore[attr-defined]
        if block is None:
            return None
        return block, func.attr.value

    def recorded(self, block: TapeBlock) -> Dict[str, List[cst.BaseExpression]]:
        """What the block assigns to each name (``assigned_in`` of its body, computed once per block)."""
        found = self.blocks.recorded.get(block.node)
        if found is None:
            found = self.blocks.recorded[block.node] = assigned_in(block.node.body)
        return found

    def inside(self, block: TapeBlock) -> bool:
        """True when the node being visited is in the block's body."""
        return block.node.body in self.context.ancestors


def _constructor(node: cst.With, name: str, context: RuleContext) -> Optional[cst.Call]:
    for item in node.items:
        expr = item.item
        bound = item.asname.name.value if item.asname is not None and isinstance(item.asname.name, cst.Name) else None
        if isinstance(expr, cst.Call) and bound == name:
            return expr
        if isinstance(expr, cst.Name) and expr.value == name:
            definitions = context.analysis.definitions(name, context.function)
            if len(definitions) == 1 and isinstance(definitions[0], cst.Call):
                return definitions[0]
    return None


def report_fix(
    rule: Rule,
    node: cst.CSTNode,
    edits: Sequence[Edit],
    description: str,
    safety: Safety,
    forward: Forward,
    message: Optional[str] = None,
) -> None:
    """Report with a fix whose safety and forward contract are this finding's own, not the rule's default."""
    rule.report(node, message=message, edits=edits, description=description, safety=safety, forward=forward)
