"""From a source and a finding to the probes that check its fix: pure, libcst only, no TensorFlow.

A probe is the smallest runnable unit around a fix, written out twice (before and after the fix) as
a small module that defines ``__tapefix_unit(<tensor inputs>)``:

* the statement the fix rewrites (an assignment, an ``if``), with every free name bound: names on
  the gradient path become synthesised tensor inputs, names bound only to number literals keep their
  literal, TensorFlow / NumPy / ``math`` imports are copied, and the module's own functions that the
  statement calls are copied in as well;
* when the statement returns (a fix inside a function reached through a call), the whole function,
  called with a synthesised tensor for each parameter;
* ``plan_block``: the whole tape block around the statement, when it can stand alone;
* ``plan_tape``: for a fix of the tape's bookkeeping (the ``with`` line, a ``tape.watch``, a gradient
  call, the definition of a gradient source), the slice of the enclosing function or module made of
  the literal definitions the block reads, the block and the gradient calls on its tape.

Anything else (a model, a call into other code, ``self``, a global read by a copied function, an import
of another module) makes the fix *unverifiable*, and the reason says which name and why. The user's
module is never imported and its top-level code never runs: only these snippets do.
"""

from __future__ import annotations

import builtins
import functools
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from tapefix.analysis.expressions import numeric_literal
from tapefix.analysis.names import dotted
from tapefix.analysis.scope import Function, ModuleAnalysis, encloses
from tapefix.analysis.syntax import keyword
from tapefix.layout import parse_exactly
from tapefix.types import Edit, Finding

#: the only modules a probe may import
ALLOWED_IMPORTS = ("tensorflow", "numpy", "math", "keras")
#: the entry point every probe module defines
UNIT = "__tapefix_unit"
#: what a tape probe module defines besides: the variables of the slice, made before it runs
SETUP = "__tapefix_setup"
#: the longest tape block (in statements) that is also probed as a whole
MAX_BLOCK_STATEMENTS = 20
# Builtins a snippet may use; anything else (open, exec, input, ...) has effects a probe must not have.
_SAFE_BUILTINS = frozenset(
    "abs all any bool dict divmod enumerate filter float int isinstance len list map max min pow print range "
    "reversed round set slice sorted str sum tuple zip True False None ValueError TypeError Exception".split()
)
_STATEMENT = (cst.SimpleStatementLine, cst.BaseCompoundStatement)
#: calls whose result, made from a literal of floats, any float tensor of the same shape may stand for
_FLOAT_MAKERS = ("tensorflow.constant", "tensorflow.convert_to_tensor", "numpy.array", "numpy.asarray")
#: the class a probe builds in place of a Keras model or layer of the module that it cannot construct: a
#: differentiable, elementwise map of the same shape, with weights of its own (the same before and after)
STAND_IN = "TapefixStandIn"
_STAND_IN_SOURCE = f"""import tensorflow as _tapefix_tf


class {STAND_IN}:
    def __init__(self):
        self.kernel = _tapefix_tf.Variable(0.75)
        self.bias = _tapefix_tf.Variable(0.25)
        self.trainable_variables = [self.kernel, self.bias]
        self.trainable_weights = self.variables = self.weights = self.trainable_variables

    def __call__(self, inputs, *args, **kwargs):
        return _tapefix_tf.cast(inputs, _tapefix_tf.float32) * self.kernel + self.bias

    def predict(self, inputs, *args, **kwargs):
        return self(inputs).numpy()


"""


@dataclass(frozen=True)
class Probe:
    """One runnable check: the same unit before and after the fix, as module sources."""

    kind: str  #: "statement" or "function"
    before: str
    after: str
    #: the names of the synthesised tensor inputs, in the order ``__tapefix_unit`` takes them
    inputs: Tuple[str, ...]
    #: the names whose values are compared and whose gradients are taken
    outputs: Tuple[str, ...]
    forward: str  #: a tapefix.types.Forward value
    #: whether XLA (jit_compile) adds a finding: the fixed code selects with tf.where
    xla: bool
    #: whether tf.function needs autograph: the unit has Python control flow
    autograph: bool = True
    #: each input's shape where the module declares it (``tf.Variable([[0.0, 1.0]])``), else None
    shapes: Tuple[Optional[Tuple[int, ...]], ...] = ()
    #: the inputs passed as ``tf.Variable`` (a tape probe's function parameters), the others as tensors
    variables: Tuple[str, ...] = ()
    #: the Keras models and layers of the module that the probe replaces by ``STAND_IN``
    stand_ins: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Unverifiable:
    """Why a fix cannot be probed."""

    reason: str


Plan = Union[Probe, Unverifiable]


class _CannotProbe(Exception):
    pass


def plan_block(
    source: str, finding: Finding, others: Sequence[Finding] = (), facts: Optional[ModuleFacts] = None
) -> Plan:
    """The probe of the whole tape block around ``finding``'s fix (with the same-module functions it
    calls), or why the block cannot stand alone (a model call, the tape itself, ...). Never raises."""
    if finding.fix is None:
        return Unverifiable("the finding has no fix")
    try:
        if facts is None or facts.source != source:
            facts = ModuleFacts(source)
        return _Planner(facts, finding, _other_edits(finding, others)).block()
    except _CannotProbe as reason:
        return Unverifiable(str(reason))
    except (cst.ParserSyntaxError, RecursionError) as error:
        return Unverifiable(f"the tape block cannot be isolated: {type(error).__name__}")


def plan_tape_block(
    source: str, finding: Finding, others: Sequence[Finding] = (), facts: Optional[ModuleFacts] = None
) -> Plan:
    """The tape probe of the tape block whose gradients ``finding``'s fix is for, wherever the fix sits
    in it (a statement of the block, a function the block calls): the slice of definitions, the ``with``
    block and its gradient calls, as written and with every fix of the slice applied. It checks what
    the user asks of the fix: that the gradients of the block with respect to their sources come back
    present and finite. Never raises."""
    if finding.fix is None:
        return Unverifiable("the finding has no fix")
    try:
        if facts is None or facts.source != source:
            facts = ModuleFacts(source)
        return _Planner(facts, finding, _other_edits(finding, others)).tape(anywhere=True)
    except _CannotProbe as reason:
        return Unverifiable(str(reason))
    except (cst.ParserSyntaxError, RecursionError) as error:
        return Unverifiable(f"the tape slice cannot be isolated: {type(error).__name__}")


#: the reason ``plan_tape`` gives for a fix that touches no tape block, its gradient calls or their sources
NOT_A_TAPE_FIX = "the fix touches no tape block, gradient call or gradient source"
#: the calls whose result a tape probe copies with its definition (with literal arguments only)
LITERAL_MAKERS = frozenset(
    "tensorflow." + n
    for n in "constant Variable zeros ones fill eye linspace range convert_to_tensor GradientTape".split()
) | frozenset("numpy." + n for n in "array asarray zeros ones arange linspace float32 float64 int32 int64".split())
#: Keras model and layer constructors a tape probe copies (with literal arguments): the model is built
#: in the probe, with the same seeded weights before and after the fix
KERAS_MAKERS = ("tensorflow.keras.Sequential", "tensorflow.keras.Input", "keras.Sequential", "keras.Input")
KERAS_LAYERS = ("tensorflow.keras.layers.", "keras.layers.")
_TAPE_METHODS = ("gradient", "jacobian", "batch_jacobian")


def plan_tape(
    source: str, finding: Finding, others: Sequence[Finding] = (), facts: Optional[ModuleFacts] = None
) -> Plan:
    """The tape probe of ``finding``'s fix: the slice of the enclosing function (or module) made of the
    definitions the tape block reads, the ``with`` block and the gradient calls on its tape, run as
    written and with the fixes in it. ``Unverifiable(NOT_A_TAPE_FIX)`` when the fix touches none of
    these. Never raises."""
    if finding.fix is None:
        return Unverifiable("the finding has no fix")
    try:
        if facts is None or facts.source != source:
            facts = ModuleFacts(source)
        return _Planner(facts, finding, _other_edits(finding, others)).tape()
    except _CannotProbe as reason:
        return Unverifiable(str(reason))
    except (cst.ParserSyntaxError, RecursionError) as error:
        return Unverifiable(f"the tape slice cannot be isolated: {type(error).__name__}")


@dataclass
class _Slice:
    """One tape block with the statements after it that ask its tape for gradients."""

    with_node: cst.With
    tapes: Tuple[str, ...]
    #: (body, index of the with statement in it), innermost first, up to the module
    chain: List[Tuple[Sequence[cst.CSTNode], int, Optional[cst.FunctionDef]]]
    calls: List[cst.CSTNode]


def _other_edits(finding: Finding, others: Sequence[Finding]) -> List[Edit]:
    """The edits of the other proposed fixes that do not clash with ``finding``'s."""
    assert finding.fix is not None
    own = finding.fix.edits
    extra: List[Edit] = []
    seen: Set[Edit] = set(own)
    for other in others:
        if other is finding or other.fix is None:
            continue
        new = [e for e in other.fix.edits if e not in seen]
        if not any(_overlaps(e, t) for e in new for t in own):
            extra.extend(new)
            seen.update(new)
    return extra


class ModuleFacts:
    """What every probe of one source needs, computed once: the tree, its analysis, positions,
    parents and the line span of every statement."""

    def __init__(self, source: str, module: Optional[cst.Module] = None) -> None:
        self.source = source
        # The engine's parse: its positions are true after a lone backslash line (tapefix.layout).
        self.module = module if module is not None else parse_exactly(source)
        self.analysis = ModuleAnalysis(self.module)
        wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        self.positions = wrapper.resolve(PositionProvider)
        self.line_starts = [0]
        for index, char in enumerate(source):
            if char == "\n" or (char == "\r" and source[index + 1 : index + 2] != "\n"):
                self.line_starts.append(index + 1)
        self.parents: Dict[cst.CSTNode, cst.CSTNode] = {}
        self.statements: List[Tuple[int, int, cst.CSTNode]] = []
        stack: List[cst.CSTNode] = [self.module]
        while stack:
            node = stack.pop()
            for child in node.children:
                self.parents[child] = node
                stack.append(child)
            if isinstance(node, _STATEMENT):
                self.statements.append((*self.lines(node), node))

    def lines(self, node: cst.CSTNode) -> Tuple[int, int]:
        """The offsets of the full lines ``node`` spans (decorators included)."""
        first: cst.CSTNode = node
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node.decorators:
            first = node.decorators[0]
        start_line = self.positions[first].start.line
        end_line = self.positions[node].end.line
        start = self.line_starts[start_line - 1]
        end = self.line_starts[end_line] if end_line < len(self.line_starts) else len(self.source)
        return start, end


def plan(
    source: str,
    finding: Finding,
    others: Sequence[Finding] = (),
    module: Optional[cst.Module] = None,
    facts: Optional[ModuleFacts] = None,
) -> Plan:
    """The probe for ``finding``'s fix in ``source``, or why there is none. Never raises.

    ``others`` are the other fixes proposed with it: those that land in the same unit are applied to
    both sides, so the probe measures what this fix adds (two fixes in one expression each leave the
    other's problem behind on their own)."""
    if finding.fix is None:
        return Unverifiable("the finding has no fix")
    extra = _other_edits(finding, others)
    try:
        if facts is None or facts.source != source:
            facts = ModuleFacts(source, module)
        return _Planner(facts, finding, extra).probe()
    except _CannotProbe as reason:
        return Unverifiable(str(reason))
    except (cst.ParserSyntaxError, RecursionError) as error:
        return Unverifiable(f"the code around the fix cannot be isolated: {type(error).__name__}")


class _Planner:
    def __init__(self, facts: ModuleFacts, finding: Finding, others: Sequence[Edit]) -> None:
        assert finding.fix is not None
        self.others = list(others)
        # Names the proposed fixes import (`import tensorflow as tf` where the module had no alias).
        self.added_bindings: Set[str] = set()
        for edit in [*finding.fix.edits, *self.others]:
            if _is_import_edit(edit):
                parsed = cst.parse_module(edit.text.strip())
                for line in parsed.body:
                    for small in getattr(line, "body", ()):
                        if isinstance(small, (cst.Import, cst.ImportFrom)):
                            self.added_bindings.update(_import_names(small))
        self.facts = facts
        self.source = facts.source
        self.module = facts.module
        self.finding = finding
        self.fix = finding.fix
        self.analysis = facts.analysis
        self.positions = facts.positions
        self.line_starts = facts.line_starts
        self.parents = facts.parents

    # ------------------------------------------------------------------ spans
    def _lines(self, node: cst.CSTNode) -> Tuple[int, int]:
        return self.facts.lines(node)

    def _text(self, start: int, end: int, used: Set[Edit], fixed: bool, others: bool = True) -> str:
        """The source of [start, end) with the other fixes' edits inside it (unless not ``others``), and
        this fix's if ``fixed``."""
        candidates = (list(self.fix.edits) if fixed else []) + (list(self.others) if others else [])
        inside: List[Edit] = []
        for edit in candidates:
            if start <= edit.start and edit.end <= end and not (edit.start == edit.end == end):
                # Other fixes that clash with one already applied are left out (as the engine would).
                if not any(_overlaps(edit, taken) for taken in inside):
                    inside.append(edit)
        used.update(inside)
        out, cursor = [], start
        for edit in sorted(inside, key=lambda e: (e.start, e.end)):
            out.append(self.source[cursor : edit.start])
            out.append(edit.text)
            cursor = edit.end
        out.append(self.source[cursor:end])
        return _terminated("".join(out))

    # ------------------------------------------------------------------ the unit
    def probe(self) -> Probe:
        statement, function_node, function = self._locate()
        if _has(statement, (cst.Return,)):
            if function_node is None or function is None:
                raise _CannotProbe("a return outside a function")
            return self._function_probe(function_node, function)
        return self._statement_probe([statement], function)

    def block(self) -> Probe:
        """The whole tape block around the fix, when it can stand alone."""
        statement, _, function = self._locate()
        parent = self.parents.get(statement)
        while parent is not None and not (isinstance(parent, cst.With) and parent.body in self.analysis.regions):
            if isinstance(parent, (cst.FunctionDef, cst.ClassDef)):
                raise _CannotProbe("the fix is in a function the tape calls, not in the tape block")
            parent = self.parents.get(parent)
        if parent is None or not isinstance(parent.body, cst.IndentedBlock):
            raise _CannotProbe("no tape block around the fix")
        body = list(parent.body.body)
        if len(body) > MAX_BLOCK_STATEMENTS:
            # Each fix runs the whole block: long blocks would cost a probe per statement per fix.
            raise _CannotProbe(
                f"the tape block has {len(body)} statements (whole-block probes stop at {MAX_BLOCK_STATEMENTS})"
            )
        if body == [statement]:
            raise _CannotProbe("the tape block is the rewritten statement")
        if any(_has(s, (cst.Return, cst.Yield, cst.Await)) for s in body):
            raise _CannotProbe("the tape block returns")
        return self._statement_probe(body, function, kind="block")

    # ------------------------------------------------------------------ tape probes
    def tape(self, anywhere: bool = False) -> Probe:
        """The tape probe: definitions, the ``with`` block and its gradient calls, as one unit. With
        ``anywhere``, for a fix anywhere in the slice or the functions it runs (the first slice whose
        probe holds every edit of the fix), not only one of the tape's bookkeeping."""
        edits = [e for e in self.fix.edits if not _is_import_edit(e)]
        if not edits:
            raise _CannotProbe("the fix only adds imports")
        why = NOT_A_TAPE_FIX
        for with_node, tapes in self.analysis.tape_blocks:
            found = self._tape_slice(with_node, tapes)
            if found is None:
                continue
            if not anywhere:
                if self._touches(found, edits):
                    return self._tape_probe(found)
                continue
            try:
                return self._tape_probe(found)
            except _CannotProbe as reason:
                why = str(reason)
        raise _CannotProbe(why)

    def _tape_slice(self, with_node: cst.With, tapes: Tuple[str, ...]) -> Optional[_Slice]:
        chain: List[Tuple[Sequence[cst.CSTNode], int, Optional[cst.FunctionDef]]] = []
        node: cst.CSTNode = with_node
        while True:
            parent = self.parents.get(node)
            while isinstance(parent, (cst.SimpleStatementLine,)):
                node, parent = parent, self.parents.get(parent)
            if parent is None:
                return None
            body = getattr(parent, "body", None)
            if isinstance(parent, (cst.Module, cst.IndentedBlock)) and isinstance(body, (list, tuple)):
                function = self._enclosing(parent, cst.FunctionDef) if not isinstance(parent, cst.Module) else None
                chain.append((body, list(body).index(node), function))
                if isinstance(parent, cst.Module):
                    break
            node = parent
        body, index, _ = chain[0]
        calls: List[cst.CSTNode] = []
        for statement in list(body)[index + 1 :]:
            if _rebinds(statement, tapes):
                break
            if _tape_calls(statement, tapes):
                calls.append(statement)
        if not calls:
            return None
        return _Slice(with_node, tapes, chain, calls)

    def _touches(self, found: _Slice, edits: Sequence[Edit]) -> bool:
        """Whether a fix is about the tape's bookkeeping: it edits the ``with`` line, a gradient call,
        a definition the slice copies, or adds a ``tape.watch`` to the block. Other fixes in the block
        are the statement, function and whole-block probes' to check."""
        start, end = self._lines(found.with_node)
        body = found.with_node.body
        first = body.body[0] if isinstance(body, cst.IndentedBlock) and body.body else None
        header_end = self._lines(first)[0] if first is not None else end
        if any(start <= e.start and e.end < header_end for e in edits):
            return True
        watches = tuple(f"{tape}.watch(" for tape in found.tapes)
        if any(start <= e.start and e.end <= end and any(w in e.text for w in watches) for e in edits):
            return True
        spans = [self._lines(s) for s in found.calls]
        try:
            free, _ = _free_and_stored([found.with_node, *found.calls])
        except _CannotProbe:
            free = []
        for name in free:
            definition = self._definition(name, found)
            if isinstance(definition, cst.SimpleStatementLine):
                spans.append(self._lines(definition))
        return any(any(low <= e.start and e.end <= high for low, high in spans) for e in edits)

    def _definition(self, name: str, found: _Slice) -> Union[cst.SimpleStatementLine, str, None]:
        """The statement that binds ``name`` for the slice, when it is ``name = <literal maker>``;
        "parameter" for a parameter of the enclosing function; None for anything else."""
        for level, (body, index, function) in enumerate(found.chain):
            outer = found.chain[level + 1][2] if level + 1 < len(found.chain) else None
            for statement in reversed(list(body)[:index]):
                try:
                    _, stored = _free_and_stored([statement])
                except _CannotProbe:
                    stored = [name] if name in _function_free_names_safe(statement) else []
                if name not in stored:
                    continue
                if not (
                    isinstance(statement, cst.SimpleStatementLine)
                    and len(statement.body) == 1
                    and isinstance(statement.body[0], cst.Assign)
                    and len(statement.body[0].targets) == 1
                    and isinstance(statement.body[0].targets[0].target, cst.Name)
                    and self._literal_value(statement.body[0].value)
                ):
                    return None
                value = statement.body[0].value
                scope = self.analysis.function_of(function) if function is not None else None
                inside = {id(n) for s in [found.with_node, *found.calls] for n in _nodes(s)}
                others = [d for d in self.analysis.definitions(name, scope) if d is not value and id(d) not in inside]
                if others and not (function is None and all(self._top_level(d) for d in others)):
                    return None  # assigned elsewhere too: which value is in force is not plain
                return statement
            if function is not None and function is not outer and name in _parameters(function):
                return "parameter"
        return None

    def _model_input(self, name: str, found: _Slice) -> Optional[Tuple[int, ...]]:
        """A batch of two for a parameter the slice passes first to a Keras model it copies, when the
        model declares its input shape (``keras.Input(shape=...)`` first, or ``input_shape=`` on its first
        layer); None otherwise."""
        for statement in [found.with_node, *found.calls]:
            for node in _nodes(statement):
                if not (
                    isinstance(node, cst.Call)
                    and isinstance(node.func, cst.Name)
                    and node.args
                    and isinstance(node.args[0].value, cst.Name)
                    and node.args[0].value.value == name
                ):
                    continue
                definition = self._definition(node.func.value, found)
                if not isinstance(definition, cst.SimpleStatementLine):
                    continue
                maker = definition.body[0].value  # type: ignore[attr-defined]
                if not (isinstance(maker, cst.Call) and maker.args and isinstance(maker.args[0].value, cst.List)):
                    continue
                layers = maker.args[0].value.elements
                first = layers[0].value if layers else None
                if not isinstance(first, cst.Call):
                    continue
                shape = keyword(first, "shape") or keyword(first, "input_shape")
                if shape is None and (self.analysis.qualify(first.func) or "").endswith(".Input") and first.args:
                    shape = first.args[0].value
                if isinstance(shape, cst.Tuple) and all(isinstance(e.value, cst.Integer) for e in shape.elements):
                    return (2, *(int(e.value.value) for e in shape.elements))  # type: ignore[attr-defined]
        return None

    def _top_level(self, value: cst.CSTNode) -> bool:
        """Whether ``value`` is assigned by a statement of the module's own body (straight-line code:
        the nearest such assignment above a statement is the one in force there)."""
        node: Optional[cst.CSTNode] = value
        while node is not None and not isinstance(node, cst.SimpleStatementLine):
            if isinstance(node, (cst.BaseCompoundStatement, cst.FunctionDef, cst.Lambda)):
                return False
            node = self.parents.get(node)
        return node is not None and isinstance(self.parents.get(node), cst.Module)

    def _makes_variable(self, statement: cst.CSTNode) -> bool:
        """Whether the definition makes variables: a ``tf.Variable`` or a Keras model."""
        value = statement.body[0].value  # type: ignore[attr-defined]
        if not isinstance(value, cst.Call):
            return False
        qualified = self.analysis.qualify(value.func) or ""
        return qualified == "tensorflow.Variable" or _keras(qualified)

    def _literal_value(self, expr: cst.BaseExpression) -> bool:
        """Whether ``expr`` is made of literals and the tensor makers a tape probe may copy."""
        if numeric_literal(expr) is not None or isinstance(expr, (cst.SimpleString, cst.ConcatenatedString)):
            return True
        if isinstance(expr, cst.Name):
            return expr.value in ("True", "False", "None")
        if isinstance(expr, (cst.List, cst.Tuple)):
            return all(isinstance(e, cst.Element) and self._literal_value(e.value) for e in expr.elements)
        if isinstance(expr, cst.Attribute):
            # A dtype: tf.float32, np.int64.
            return (self.analysis.qualify(expr) or "").split(".")[0] in ("tensorflow", "numpy")
        if isinstance(expr, cst.Call):
            qualified = self.analysis.qualify(expr.func) or ""
            return (qualified in LITERAL_MAKERS or _keras(qualified)) and all(
                not a.star and self._literal_value(a.value) for a in expr.args
            )
        return False

    def _tape_probe(self, found: _Slice) -> Probe:
        body, _, function_node = found.chain[0]
        function = self.analysis.function_of(function_node) if function_node is not None else None
        core: List[cst.CSTNode] = [found.with_node, *found.calls]
        for statement in core:
            if _has(statement, (cst.Yield, cst.Await)):
                raise _CannotProbe("the tape slice yields or awaits")
        for statement in found.calls:
            if _has(statement, (cst.Return,)) and not _plain_return(statement):
                raise _CannotProbe("a gradient call returns from inside a compound statement")
        if _has(found.with_node, (cst.Return,)):
            raise _CannotProbe("the tape block returns")
        free, stored = _free_and_stored(core)
        sources = {n.value for s in found.calls for c in _tape_calls(s, found.tapes) for n in _sources(c)}
        allowed = _allowed_bindings(self.module) | self.added_bindings
        resolver = _Resolver(self, function, self._lines(found.with_node)[0])
        definitions: List[cst.CSTNode] = []
        inputs: List[str] = []
        variables: List[str] = []
        literals: List[str] = []
        for name in free:
            if name in allowed:
                continue
            definition = self._definition(name, found)
            if isinstance(definition, cst.SimpleStatementLine):
                definitions.append(definition)
            elif definition == "parameter":
                if name in _callees(core) or name in _attribute_bases(core):
                    raise _CannotProbe(
                        f"the parameter `{name}` is called or has attributes read: the verifier cannot tell what it is"
                    )
                # The code takes it from its caller; a variable is what the tape watches without being told.
                inputs.append(name)
                variables.append(name)
            elif name in sources:
                raise _CannotProbe(
                    f"the gradient source `{name}` is not made by a literal the verifier can copy "
                    "(tf.constant, tf.Variable, tf.zeros, a number)"
                )
            else:
                binding, detail = resolver.resolve(name, name in _callees(core))
                if binding == "tensor":
                    inputs.append(name)
                elif binding == "literal":
                    literals.append(f"    {name} = {detail}\n")
                elif binding == "stand-in":
                    raise _CannotProbe(f"a call into `{name}`, a Keras object the tape probe cannot build")
        # What the tape block computes and the gradient calls read (their targets): the forward values.
        read_after = [n for s in found.calls for n in _reads(s)]
        computed = _stored_by([found.with_node])
        forward = [
            n
            for n in dict.fromkeys(read_after)
            if n in computed and n not in found.tapes and n not in _stored_by(found.calls)
        ]
        if not forward:
            raise _CannotProbe("the gradient target reads nothing the tape block computes")
        gradients = [n for n in _gradient_names(found.calls, found.tapes) if n not in forward]
        returns = any(_plain_return(s) for s in found.calls)
        if not gradients and not returns:
            raise _CannotProbe("the gradient calls bind no name whose value could be checked")
        used: Set[Edit] = set()
        # Variables are made once, outside the unit: tf.function may create them on its first call only.
        made = [d for d in definitions if self._makes_variable(d)]
        ordered = sorted([d for d in definitions if d not in made] + core, key=lambda s: self._lines(s)[0])
        made_names = [_stores(d.body[0].targets[0].target)[0][0] for d in made]  # type: ignore[attr-defined]
        units, setups = [], []
        for fixed in (False, True):
            parts, setup = [], []
            for statement in sorted(made, key=lambda s: self._lines(s)[0]):
                start, end = self._lines(statement)
                setup.append(_reindent(self._text(start, end, used, fixed=fixed, others=fixed), ""))
            for statement in ordered:
                start, end = self._lines(statement)
                text = self._text(start, end, used, fixed=fixed, others=fixed)
                text = _reindent(text, _indent_of(text))
                if statement in found.calls and _plain_return(statement):
                    text = re.sub(r"^(\s*)return\b", r"\1__tapefix_returned =", text, count=1)
                parts.append(text)
                if statement is found.with_node:
                    parts.append(f"    __tapefix_forward.extend(({', '.join(forward)},))\n")
            units.append("".join(parts))
            setups.append(
                f"def {SETUP}():\n"
                + "".join(_reindent(t, _indent_of(t)) for t in setup)
                + f"    return ({''.join(n + ', ' for n in made_names)})\n"
            )
        grads = ", ".join(gradients + (["__tapefix_returned"] if returns else []))
        epilogue = f"    return ({', '.join(forward)},), ({grads},)\n"
        header = f"def {UNIT}({', '.join(['__tapefix_forward', *inputs, *made_names])}):\n"
        before_helpers, after_helpers = self._helpers(resolver.helpers, used)
        self._check_all_edits_used(used)
        before = self._module(False, before_helpers + setups[0], header, literals, units[0], epilogue)
        after = self._module(True, after_helpers + setups[1], header, literals, units[1], epilogue)
        return Probe(
            "tape",
            before,
            after,
            tuple(inputs),
            tuple(forward + gradients),
            self.fix.forward.value,
            False,
            _control_flow(before) or _control_flow(after),
            tuple(resolver.shape(n) if n not in variables else self._model_input(n, found) for n in inputs),
            tuple(variables),
        )

    def _locate(self) -> Tuple[cst.CSTNode, Optional[cst.FunctionDef], Optional[Function]]:
        edits = [e for e in self.fix.edits if not _is_import_edit(e)]
        if not edits:
            raise _CannotProbe("the fix only adds imports")
        low = min(e.start for e in edits)
        high = max(e.end for e in edits)
        statement = self._innermost_statement(low, high)
        if statement is None:
            raise _CannotProbe("the fix is not inside a statement the verifier can isolate")
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            raise _CannotProbe("the fix rewrites a definition's header")
        if isinstance(statement, cst.With) and any(w.body is statement.body for w, _ in self.analysis.tape_blocks):
            raise _CannotProbe("the fix changes the tape block itself; probes run code inside a tape, not the tape")
        if not self._inside_tape_block(statement):
            raise _CannotProbe("the fix is outside the tape block (in the gradient call or the code around it)")
        function_node = self._enclosing(statement, cst.FunctionDef)
        function = self.analysis.function_of(function_node) if function_node is not None else None
        if _has(statement, (cst.Yield, cst.Await)):
            raise _CannotProbe("the rewritten statement yields or awaits")
        if _has(statement, (cst.Break, cst.Continue)) and not _has(statement, (cst.For, cst.While)):
            raise _CannotProbe("the rewritten statement breaks out of a loop around it")
        return statement, function_node, function

    def _innermost_statement(self, low: int, high: int) -> Optional[cst.CSTNode]:
        best: Optional[cst.CSTNode] = None
        best_size = None
        for start, end, node in self.facts.statements:
            if start <= low and high <= end and (best_size is None or end - start <= best_size):
                # Nested statements come later in the walk and are never larger: the innermost wins.
                best, best_size = node, end - start
        return best

    def _inside_tape_block(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` runs while a tape records: inside a tape block or a function the tape calls."""
        parent = self.parents.get(node)
        while parent is not None:
            if parent in self.analysis.regions:
                return True
            parent = self.parents.get(parent)
        return False

    def _enclosing(self, node: cst.CSTNode, kind: type) -> Optional[cst.FunctionDef]:
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, kind):
                return parent  # type: ignore[return-value]
            parent = self.parents.get(parent)
        return None

    def _statement_probe(
        self, statements: Sequence[cst.CSTNode], function: Optional[Function], kind: str = "statement"
    ) -> Probe:
        start, end = self._lines(statements[0])[0], self._lines(statements[-1])[1]
        used: Set[Edit] = set()
        before_unit = self._text(start, end, used, fixed=False)
        indent = before_unit[: len(before_unit) - len(before_unit.lstrip(" \t"))]
        if not indent:
            raise _CannotProbe("the rewritten statement is at module level")
        after_unit = self._text(start, end, used, fixed=True)
        free, stored = _free_and_stored(statements)
        callees = _callees(list(statements))
        fixed = _parse_unit(after_unit)
        if fixed is None:
            raise _CannotProbe("the fixed statement does not parse on its own")
        free_after, stored_after = _free_and_stored(fixed)
        free += [name for name in free_after if name not in free]
        stored = [name for name in stored if name in stored_after]
        callees |= _callees(fixed)
        resolver = _Resolver(self, function, start)
        inputs: List[str] = []
        shapes: List[Optional[Tuple[int, ...]]] = []
        literals: List[str] = []
        stand_ins: List[str] = []
        for name in free:
            binding, detail = resolver.resolve(name, name in callees)
            if binding == "tensor":
                inputs.append(name)
                shapes.append(resolver.shape(name))
            elif binding == "literal":
                literals.append(f"{indent}{name} = {detail}\n")
            elif binding == "stand-in":
                stand_ins.append(name)
        if not stored:
            raise _CannotProbe("the rewritten statement binds no name whose value could be compared")
        before_helpers, after_helpers = self._helpers(resolver.helpers, used)
        self._check_all_edits_used(used)
        signature = ", ".join(inputs)
        outputs = ", ".join(stored)
        epilogue = f"{indent}return ({outputs},)\n"
        if stand_ins:
            # Made once, at module level: tf.function creates variables on its first call only.
            made = _STAND_IN_SOURCE + "".join(f"{name} = {STAND_IN}()\n" for name in stand_ins)
            before_helpers, after_helpers = made + before_helpers, made + after_helpers
        before = self._module(False, before_helpers, f"def {UNIT}({signature}):\n", literals, before_unit, epilogue)
        after = self._module(True, after_helpers, f"def {UNIT}({signature}):\n", literals, after_unit, epilogue)
        return Probe(
            kind,
            before,
            after,
            tuple(inputs),
            tuple(stored),
            self.fix.forward.value,
            _xla(after),
            _control_flow(before) or _control_flow(after),
            tuple(shapes),
            stand_ins=tuple(stand_ins),
        )

    def _function_probe(self, node: cst.FunctionDef, function: Function) -> Probe:
        if function.class_name is not None:
            raise _CannotProbe(f"the fix is in the method `{function.qualname}`: `self` cannot be synthesised")
        params = node.params
        if params.star_arg not in (None, cst.MaybeSentinel.DEFAULT) or params.star_kwarg is not None:
            raise _CannotProbe(f"`{node.name.value}` takes *args or **kwargs")
        required = [p.name.value for p in (*params.posonly_params, *params.params) if p.default is None]
        if any(p.default is None for p in params.kwonly_params):
            raise _CannotProbe(f"`{node.name.value}` has required keyword-only parameters")
        for name in required:
            if not self.analysis.value(cst.Name(name), function).on_path:
                raise _CannotProbe(
                    f"parameter `{name}` of `{node.name.value}` is not a tensor on the gradient path; "
                    "the verifier cannot tell what to pass"
                )
        resolver = _Resolver(self, function.parent)
        resolver.add_helper(node, function)
        used: Set[Edit] = set()
        before_helpers, after_helpers = self._helpers(resolver.helpers, used)
        self._check_all_edits_used(used)
        signature = ", ".join(required)
        call = f"    return ({node.name.value}({signature}),)\n"
        header = f"def {UNIT}({signature}):\n"
        before = self._module(False, before_helpers, header, [], call, "")
        after = self._module(True, after_helpers, header, [], call, "")
        output = f"{node.name.value}(...)"
        return Probe(
            "function",
            before,
            after,
            tuple(required),
            (output,),
            self.fix.forward.value,
            _xla(after),
            _control_flow(before) or _control_flow(after),
        )

    # ------------------------------------------------------------------ assembling a probe module
    def _helpers(self, helpers: Sequence[cst.FunctionDef], used: Set[Edit]) -> Tuple[str, str]:
        before, after = [], []
        for node in helpers:
            start, end = self._lines(node)
            text_before = self._text(start, end, used, fixed=False)
            text_after = self._text(start, end, used, fixed=True)
            if text_before[:1] in (" ", "\t"):
                # A nested def keeps its indentation under an always-true guard.
                text_before, text_after = "if True:\n" + text_before, "if True:\n" + text_after
            before.append(text_before)
            after.append(text_after)
        return "".join(before), "".join(after)

    def _check_all_edits_used(self, used: Set[Edit]) -> None:
        for edit in self.fix.edits:
            if edit not in used and not _is_import_edit(edit):
                raise _CannotProbe("the fix also edits code outside the unit the verifier runs")

    def _module(self, after: bool, helpers: str, header: str, literals: Sequence[str], body: str, epilogue: str) -> str:
        imports = list(self._allowed_imports())
        added = [e for e in self.others if _is_import_edit(e)]
        if after:
            added += [e for e in self.fix.edits if _is_import_edit(e) and e not in added]
        for edit in added:
            text = _terminated(edit.text.strip("\r\n"))
            if text not in imports:
                imports.append(text)
        return "".join(imports) + helpers + header + "".join(literals) + body + epilogue

    def _allowed_imports(self) -> List[str]:
        out = []
        for statement in self.module.body:
            if isinstance(statement, cst.SimpleStatementLine) and all(
                isinstance(s, (cst.Import, cst.ImportFrom)) for s in statement.body
            ):
                text = self.module.code_for_node(statement).strip()
                if _imports_only_allowed(text):
                    out.append(_terminated(text))
        return out


class _Resolver:
    """What each free name of a unit stands for, and the module's functions the unit needs."""

    def __init__(self, planner: _Planner, function: Optional[Function], unit_start: int = -1) -> None:
        self.unit_start = unit_start
        self.planner = planner
        self.analysis = planner.analysis
        self.function = function
        self.helpers: List[cst.FunctionDef] = []
        self.allowed = _allowed_bindings(planner.module) | planner.added_bindings

    def resolve(self, name: str, called: bool) -> Tuple[str, str]:
        """("tensor", ""), ("literal", text) or ("bound", "") for imports, builtins and copied functions."""
        if name in self.allowed:
            return "bound", ""
        if name in self.analysis.keras_objects and not self.analysis.imports.bindings.get(name):
            return "stand-in", ""  # a Keras model or layer, known by how the module made it
        imported = self.analysis.imports.bindings.get(name)
        if imported is not None:
            raise _CannotProbe(
                f"`{name}` is imported from `{imported.rsplit('.', 1)[0]}`, which the verifier does not import"
            )
        local = self._function_named(name)
        if local is not None:
            self.add_helper(local.node, local)
            return "bound", ""
        if called:
            if name in _SAFE_BUILTINS and not self.analysis.definitions(name, self.function):
                return "bound", ""
            raise _CannotProbe(f"a call into `{name}`, which is not code of this module the verifier can run")
        if self.analysis.value(cst.Name(name), self.function).on_path:
            return "tensor", ""
        definitions = self.analysis.definitions(name, self.function)
        if definitions and all(self._float_constant(d) for d in definitions):
            # A float constant of the module (targets, a query point): any float tensor will do.
            return "tensor", ""
        if definitions and all(numeric_literal(d) is not None for d in definitions):
            texts = {self.planner.module.code_for_node(d).strip() for d in definitions}
            if len(texts) == 1:
                return "literal", texts.pop()
            # Several numbers: the one in force is the last one assigned before the unit, if any is.
            earlier = [d for d in definitions if self._offset(d) < self.unit_start]
            if earlier:
                last = max(earlier, key=self._offset)
                return "literal", self.planner.module.code_for_node(last).strip()
            raise _CannotProbe(f"the free name `{name}` is bound to different numbers in different places")
        if name in _SAFE_BUILTINS and not definitions:
            return "bound", ""
        if hasattr(builtins, name):
            raise _CannotProbe(f"the snippet uses the builtin `{name}`, which a probe must not run")
        raise _CannotProbe(f"the free name `{name}` is bound to something the verifier cannot synthesise")

    def _float_constant(self, expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Call) or not expr.args:
            return False
        if self.analysis.qualify(expr.func) not in _FLOAT_MAKERS:
            return False
        return _literal_shape(expr.args[0].value, floats=True) is not None

    def shape(self, name: str) -> Optional[Tuple[int, ...]]:
        """The shape the module gives ``name``: a Variable or constant of a nested list of numbers."""
        shapes = set()
        for expr in self.analysis.definitions(name, self.function):
            if not isinstance(expr, cst.Call) or not expr.args:
                return None
            qualified = self.analysis.qualify(expr.func) or ""
            if qualified.rsplit(".", 1)[-1] not in ("Variable", "constant", "convert_to_tensor"):
                return None
            shapes.add(_literal_shape(expr.args[0].value, floats=False))
        if len(shapes) != 1:
            return None
        return shapes.pop()

    def _offset(self, node: cst.CSTNode) -> int:
        try:
            position = self.planner.positions[node].start
        except KeyError:
            return -1
        return self.planner.line_starts[position.line - 1] + position.column

    def _function_named(self, name: str) -> Optional[Function]:
        found = [f for f in self.analysis.by_name.get(name, []) if f.class_name is None]
        visible = [f for f in found if f.parent is None or encloses(f.parent, self.function)]
        if len(visible) > 1:
            raise _CannotProbe(f"`{name}` is defined more than once in the module")
        return visible[0] if visible else None

    def add_helper(self, node: cst.FunctionDef, function: Function) -> None:
        if node in self.helpers:
            return
        if function.class_name is not None:
            raise _CannotProbe(f"a call into the method `{function.qualname}`")
        for decorator in node.decorators:
            if self.analysis.qualify(decorator.decorator) != "tensorflow.function":
                raise _CannotProbe(f"`{node.name.value}` has a decorator the verifier cannot run")
        self.helpers.append(node)
        free = _function_free_names(node)
        callees = _callees(node.body)
        inner = _Resolver(self.planner, function)
        inner.helpers = self.helpers
        for name in free:
            if name in self.allowed:
                continue
            local = inner._function_named(name)
            if local is not None:
                inner.add_helper(local.node, local)
                continue
            if name in _SAFE_BUILTINS and name not in self.analysis.module_defs:
                continue
            if name in callees:
                raise _CannotProbe(f"`{node.name.value}` calls `{name}`, which is not code of this module")
            raise _CannotProbe(f"`{node.name.value}` reads the global `{name}`, which the verifier cannot synthesise")


# ---------------------------------------------------------------------- names
def _allowed_bindings(module: cst.Module) -> Set[str]:
    """Module-level names bound by imports of TensorFlow, NumPy or math."""
    names: Set[str] = set()
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, (cst.Import, cst.ImportFrom)) and _import_allowed(small):
                names.update(_import_names(small))
    return names


def _import_allowed(node: Union[cst.Import, cst.ImportFrom]) -> bool:
    if isinstance(node, cst.Import):
        return all((dotted(a.name) or "").split(".")[0] in ALLOWED_IMPORTS for a in node.names)
    if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
        return False
    return (dotted(node.module) or "").split(".")[0] in ALLOWED_IMPORTS


def _import_names(node: Union[cst.Import, cst.ImportFrom]) -> List[str]:
    out = []
    names = node.names if not isinstance(node.names, cst.ImportStar) else ()
    for alias in names:
        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
            out.append(alias.asname.name.value)
        elif isinstance(node, cst.Import):
            out.append((dotted(alias.name) or "").split(".")[0])
        else:
            out.append(dotted(alias.name) or "")
    return out


def _imports_only_allowed(text: str) -> bool:
    try:
        parsed = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return False
    if not parsed.body or not all(isinstance(line, cst.SimpleStatementLine) for line in parsed.body):
        return False
    smalls = [s for line in parsed.body if isinstance(line, cst.SimpleStatementLine) for s in line.body]
    return all(isinstance(s, (cst.Import, cst.ImportFrom)) and _import_allowed(s) for s in smalls)


def _overlaps(a: Edit, b: Edit) -> bool:
    if a.start == a.end or b.start == b.end:
        return a.start == b.start or b.start < a.start < b.end or a.start < b.start < a.end
    return a.start < b.end and b.start < a.end


@functools.lru_cache(maxsize=1024)
def _is_import_edit(edit: Edit) -> bool:
    """An insertion of whole import lines (what ``RuleContext.tf()`` adds)."""
    return (
        edit.start == edit.end
        and edit.text.strip().startswith(("import ", "from "))
        and _imports_only_allowed(edit.text.strip())
    )


def _literal_shape(expr: cst.BaseExpression, floats: bool) -> Optional[Tuple[int, ...]]:
    """The shape of a (nested) list of number literals; with ``floats``, only if one is a float."""
    found_float = False

    def walk(node: cst.BaseExpression) -> Optional[Tuple[int, ...]]:
        nonlocal found_float
        if numeric_literal(node) is not None:
            while isinstance(node, cst.UnaryOperation):
                node = node.expression
            found_float = found_float or isinstance(node, cst.Float)
            return ()
        if isinstance(node, (cst.List, cst.Tuple)) and node.elements:
            inner = [walk(e.value) for e in node.elements]
            first = inner[0]
            if first is None or any(i != first for i in inner):
                return None
            return (len(inner), *first)
        return None

    shape = walk(expr)
    if shape is None or (floats and not found_float):
        return None
    return shape


def _parse_unit(text: str) -> Optional[List[cst.CSTNode]]:
    """The statements of an indented unit text."""
    try:
        parsed = cst.parse_module("if True:\n" + text)
    except cst.ParserSyntaxError:
        return None
    guard = parsed.body[0]
    if not isinstance(guard, cst.If) or not isinstance(guard.body, cst.IndentedBlock):
        return None
    return list(guard.body.body)


def _terminated(text: str) -> str:
    return text if text.endswith(("\n", "\r")) else text + "\n"


def _has(node: cst.CSTNode, kinds: Tuple[type, ...]) -> bool:
    """Whether ``node`` holds one of ``kinds`` outside nested defs, lambdas and classes."""
    stack = list(node.children) + [node]
    while stack:
        current = stack.pop()
        if isinstance(current, kinds):
            return True
        if isinstance(current, (cst.FunctionDef, cst.Lambda, cst.ClassDef)) and current is not node:
            continue
        if current is not node:
            stack.extend(current.children)
    return False


def _callees(node: Union[cst.CSTNode, Sequence[cst.CSTNode]]) -> Set[str]:
    out: Set[str] = set()
    stack: List[cst.CSTNode] = list(node) if isinstance(node, (list, tuple)) else [node]  # type: ignore[list-item]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Call) and isinstance(current.func, cst.Name):
            out.add(current.func.value)
        stack.extend(current.children)
    return out


def _reads(node: cst.CSTNode) -> List[str]:
    """Names an expression reads, in order (attribute names, keywords, lambda parameters and
    comprehension variables left out)."""
    out: List[str] = []
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, cst.Attribute):
        return _reads(node.value)
    if isinstance(node, cst.Arg):
        return _reads(node.value)
    if isinstance(node, cst.Lambda):
        params = {p.name.value for p in node.params.params}
        return [n for n in _reads(node.body) if n not in params]
    if isinstance(node, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
        bound: Set[str] = set()
        comp: Optional[cst.CompFor] = node.for_in
        parts: List[cst.CSTNode] = []
        while comp is not None:
            bound.update(_stores(comp.target)[0])
            parts.append(comp.iter)
            parts.extend(c.test for c in comp.ifs)
            comp = comp.inner_for_in
        if isinstance(node, cst.DictComp):
            parts.extend([node.key, node.value])
        else:
            parts.append(node.elt)
        return [n for part in parts for n in _reads(part) if n not in bound]
    for child in node.children:
        out.extend(_reads(child))
    return out


def _stores(target: cst.CSTNode) -> Tuple[List[str], List[str]]:
    """(names bound, names read) by an assignment target."""
    if isinstance(target, cst.Name):
        return [target.value], []
    if isinstance(target, (cst.Tuple, cst.List)):
        stored: List[str] = []
        read: List[str] = []
        for element in target.elements:
            s, r = _stores(element.value)
            stored += s
            read += r
        return stored, read
    if isinstance(target, cst.StarredElement):
        return _stores(target.value)
    return [], _reads(target)


def _free_and_stored(statements: Sequence[cst.CSTNode]) -> Tuple[List[str], List[str]]:
    """Names read before the statements bind them, and names they bind, both in order of appearance."""
    free: List[str] = []
    stored: List[str] = []

    def read(names: Sequence[str], bound: Set[str]) -> None:
        for name in names:
            if name not in bound and name not in free:
                free.append(name)

    def store(names: Sequence[str], bound: Set[str]) -> None:
        for name in names:
            bound.add(name)
            if name not in stored:
                stored.append(name)

    def block(body: Sequence[cst.CSTNode], bound: Set[str]) -> Set[str]:
        for statement in body:
            one(statement, bound)
        return bound

    def suite(node: cst.BaseSuite, bound: Set[str]) -> Set[str]:
        return block(list(node.body), bound)

    def one(node: cst.CSTNode, bound: Set[str]) -> None:
        if isinstance(node, cst.SimpleStatementLine):
            block(list(node.body), bound)
        elif isinstance(node, cst.Assign):
            read(_reads(node.value), bound)
            for target in node.targets:
                s, r = _stores(target.target)
                read(r, bound)
                store(s, bound)
        elif isinstance(node, cst.AnnAssign):
            if node.value is not None:
                read(_reads(node.value), bound)
                s, r = _stores(node.target)
                read(r, bound)
                store(s, bound)
        elif isinstance(node, cst.AugAssign):
            read(_reads(node.value), bound)
            s, r = _stores(node.target)
            read(s + r, bound)
            store(s, bound)
        elif isinstance(node, cst.If):
            read(_reads(node.test), bound)
            then = suite(node.body, set(bound))
            other = set(bound)
            if node.orelse is not None:
                if isinstance(node.orelse, cst.If):
                    one(node.orelse, other)
                else:
                    suite(node.orelse.body, other)
            for name in then | other:
                store([name], bound)
        elif isinstance(node, (cst.For,)):
            read(_reads(node.iter), bound)
            store(_stores(node.target)[0], bound)
            suite(node.body, bound)
        elif isinstance(node, cst.While):
            read(_reads(node.test), bound)
            suite(node.body, bound)
        elif isinstance(node, cst.With):
            for item in node.items:
                read(_reads(item.item), bound)
                if item.asname is not None:
                    store(_stores(item.asname.name)[0], bound)
            suite(node.body, bound)
        elif isinstance(node, (cst.Import, cst.ImportFrom, cst.Global, cst.Nonlocal, cst.Del, cst.Try, cst.ClassDef)):
            raise _CannotProbe(f"the rewritten code holds a `{type(node).__name__}` statement")
        elif isinstance(node, cst.FunctionDef):
            store([node.name.value], bound)
        else:
            read(_reads(node), bound)

    block(list(statements), set())
    return free, stored


def _function_free_names(node: cst.FunctionDef) -> List[str]:
    """Names a function reads that it neither takes nor binds anywhere (its globals)."""
    params = node.params
    local: Set[str] = {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}
    if isinstance(params.star_arg, cst.Param):
        local.add(params.star_arg.name.value)
    if params.star_kwarg is not None:
        local.add(params.star_kwarg.name.value)
    reads: List[str] = []
    stack: List[cst.CSTNode] = list(node.body.children)
    while stack:
        current = stack.pop()
        if isinstance(current, cst.Assign):
            for target in current.targets:
                local.update(_stores(target.target)[0])
        elif isinstance(current, (cst.AugAssign, cst.AnnAssign)):
            local.update(_stores(current.target)[0])
        elif isinstance(current, cst.For):
            local.update(_stores(current.target)[0])
        elif isinstance(current, cst.FunctionDef):
            local.add(current.name.value)
        elif isinstance(current, (cst.Import, cst.ImportFrom)):
            if not _import_allowed(current):
                raise _CannotProbe(f"`{node.name.value}` imports a module other than TensorFlow/NumPy/math")
            local.update(_import_names(current))
        elif isinstance(current, (cst.Global, cst.Nonlocal)):
            raise _CannotProbe(f"`{node.name.value}` declares global or nonlocal names")
        if isinstance(current, (cst.BaseExpression,)) and not isinstance(current, cst.Name):
            reads.extend(_reads(current))
            continue
        if isinstance(current, cst.Name):
            reads.append(current.value)
            continue
        stack.extend(current.children)
    return list(dict.fromkeys(n for n in reads if n not in local))


# ---------------------------------------------------------------------- tape slices
def _nodes(node: cst.CSTNode) -> List[cst.CSTNode]:
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(current.children)
    return out


def _tape_calls(statement: cst.CSTNode, tapes: Sequence[str]) -> List[cst.Call]:
    """The ``tape.gradient(...)`` / ``tape.jacobian(...)`` calls in ``statement`` on one of ``tapes``."""
    return [
        n
        for n in _nodes(statement)
        if isinstance(n, cst.Call)
        and isinstance(n.func, cst.Attribute)
        and n.func.attr.value in _TAPE_METHODS
        and isinstance(n.func.value, cst.Name)
        and n.func.value.value in tapes
    ]


def _argument(call: cst.Call, index: int, keyword: str) -> Optional[cst.BaseExpression]:
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if index < len(positional):
        return positional[index].value
    return next((a.value for a in call.args if a.keyword is not None and a.keyword.value == keyword), None)


def _sources(call: cst.Call) -> List[cst.Name]:
    sources = _argument(call, 1, "sources")
    if isinstance(sources, cst.Name):
        return [sources]
    if isinstance(sources, (cst.List, cst.Tuple)):
        return [e.value for e in sources.elements if isinstance(e.value, cst.Name)]
    return []


def _keras(qualified: str) -> bool:
    """A Keras model or a layer class (``tf.keras.layers.Dense``, not ``tf.keras.layers.experimental.x``)."""
    if qualified in KERAS_MAKERS:
        return True
    prefix = next((p for p in KERAS_LAYERS if qualified.startswith(p)), None)
    return prefix is not None and "." not in qualified[len(prefix) :]


def _attribute_bases(statements: Sequence[cst.CSTNode]) -> Set[str]:
    """Names whose attributes the statements read (``model`` in ``model.trainable_variables``)."""
    return {
        n.value.value
        for s in statements
        for n in _nodes(s)
        if isinstance(n, cst.Attribute) and isinstance(n.value, cst.Name)
    }


def _stored_by(statements: Sequence[cst.CSTNode]) -> Set[str]:
    try:
        return set(_free_and_stored(statements)[1])
    except _CannotProbe:
        return set()


def _gradient_names(statements: Sequence[cst.CSTNode], tapes: Sequence[str]) -> List[str]:
    """Names assigned from an expression that asks the tape for gradients."""
    out: List[str] = []
    for statement in statements:
        for node in _nodes(statement):
            if isinstance(node, cst.Assign) and _tape_calls(node.value, tapes):
                for target in node.targets:
                    out.extend(_stores(target.target)[0])
    return list(dict.fromkeys(out))


def _rebinds(statement: cst.CSTNode, tapes: Sequence[str]) -> bool:
    try:
        _, stored = _free_and_stored([statement])
    except _CannotProbe:
        return True
    return any(t in stored for t in tapes)


def _plain_return(statement: cst.CSTNode) -> bool:
    """``return <value>`` on a line of its own."""
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Return)
        and statement.body[0].value is not None
    )


def _parameters(function: cst.FunctionDef) -> Set[str]:
    params = function.params
    return {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}


def _function_free_names_safe(statement: cst.CSTNode) -> Set[str]:
    # A statement _free_and_stored cannot read (import, try, class): the names it may bind, roughly.
    return {n.value for n in _nodes(statement) if isinstance(n, cst.Name)}


def _indent_of(text: str) -> str:
    return text[: len(text) - len(text.lstrip(" \t"))]


def _reindent(text: str, old: str, new: str = "    ") -> str:
    """``text`` (lines indented by ``old``) indented by ``new`` instead."""
    lines = text.splitlines(True)
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif line.startswith(old):
            out.append(new + line[len(old) :])
        else:
            out.append(new + line)
    return "".join(out)


def _control_flow(module: str) -> bool:
    # Autograph costs most of a trace; code without Python control flow traces the same without it.
    # A word match may see control flow in a string too, which only costs the autograph pass.
    return re.search(r"\b(if|for|while|and|or|not)\b", module) is not None


def _xla(after_module: str) -> bool:
    # XLA evaluates the unselected branch of tf.where where eager mode does not (research/idioms.md,
    # idiom 34): the one mode-dependent NaN trap, so XLA runs only when the fix selects with where.
    return "where(" in after_module


# ---------------------------------------------------------------------- refusal
#: what a probe may not call or reach, by qualified name (a prefix refuses everything under it), and
#: why. TensorFlow's own I/O runs in C++ threads, out of reach of the child's audit hooks.
REFUSED_NAMES: Tuple[Tuple[str, str], ...] = (
    ("tensorflow.io", "TensorFlow's file I/O"),
    ("tensorflow.gfile", "TensorFlow's file I/O"),
    ("tensorflow.summary", "TensorFlow's summary writers"),
    ("tensorflow.saved_model", "saving or loading a model"),
    ("tensorflow.train", "checkpoints"),
    ("tensorflow.data", "a data pipeline, which can read files"),
    ("tensorflow.py_function", "Python code run from the graph"),
    ("tensorflow.numpy_function", "Python code run from the graph"),
    ("tensorflow.py_func", "Python code run from the graph"),
    ("tensorflow.raw_ops", "raw operations, file writes among them"),
    ("tensorflow.load_op_library", "loading native code"),
    ("tensorflow.load_library", "loading native code"),
    ("tensorflow.debugging.experimental", "debug dumps to files"),
    ("tensorflow.profiler", "profiles written to files"),
    ("tensorflow.lite", "converting and writing models"),
    ("tensorflow.keras.utils.get_file", "downloads"),
    ("tensorflow.keras.datasets", "downloads"),
    ("tensorflow.keras.models.load_model", "loading a model"),
    ("tensorflow.keras.models.save_model", "saving a model"),
    ("tensorflow.keras.saving", "saving or loading a model"),
    ("tensorflow.keras.callbacks", "callbacks that write files"),
    ("tensorflow.keras.preprocessing", "reading files"),
    ("numpy.ctypeslib", "native code through ctypes"),
    ("numpy.save", "writing files"),
    ("numpy.savez", "writing files"),
    ("numpy.savez_compressed", "writing files"),
    ("numpy.savetxt", "writing files"),
    ("numpy.load", "reading files"),
    ("numpy.loadtxt", "reading files"),
    ("numpy.genfromtxt", "reading files"),
    ("numpy.fromfile", "reading files"),
    ("numpy.memmap", "mapping files"),
    ("numpy.lib", "NumPy's file formats"),
    ("numpy.DataSource", "reading files and URLs"),
    ("numpy.f2py", "compiling and running programs"),
    ("numpy.distutils", "compiling and running programs"),
    ("numpy.testing", "running programs"),
)
#: builtins that reach files, other modules or arbitrary code by a string
REFUSED_BUILTINS = frozenset(
    {
        "open",
        "__import__",
        "eval",
        "exec",
        "compile",
        "breakpoint",
        "input",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "__builtins__",
        "__loader__",
        "__spec__",
    }
)
#: methods that write or load files whatever object they are called on (a Keras model, a NumPy array)
REFUSED_METHODS = frozenset({"save", "save_weights", "load_weights", "export", "tofile", "dump"})


def refusal(source: str) -> Optional[str]:
    """Why a probe module must not run (its code reaches files, native code or code by name), or None.

    The check reads what the module's names resolve to through its imports (``import tensorflow as
    tf``, ``from tensorflow import io``), so ``tf.io.write_file`` and ``io.gfile.GFile`` are both
    caught. It is deliberately blunt: a probe it refuses is only left unverified. What it cannot see
    (a name built at run time) meets the child's sandbox instead."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "the probe does not parse"
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    # A parameter or variable named like a builtin (``input`` is a common one) is not the builtin.
    bound = set(aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                return f"refused: the code reaches `.{node.attr}`, which can lead anywhere"
            if node.attr in REFUSED_METHODS and isinstance(getattr(node, "ctx", None), ast.Load):
                return f"refused: the code calls `.{node.attr}(...)`, which can write or read files"
        if isinstance(node, ast.keyword) and node.arg == "output_stream":
            return "refused: the code prints to an output stream, which can be a file"
        if isinstance(node, ast.Name) and node.id in REFUSED_BUILTINS and node.id not in bound:
            return f"refused: the code uses `{node.id}`, which reaches files or code by name"
        if isinstance(node, (ast.Attribute, ast.Name)):
            qualified = _qualified(node, aliases)
            if qualified is None:
                continue
            canonical = _canonical(qualified)
            for prefix, why in REFUSED_NAMES:
                if canonical == prefix or canonical.startswith(prefix + "."):
                    return f"refused: the code calls `{_spelled(node)}` ({why}), which the verifier does not run"
    return None


def _qualified(node: object, aliases: Dict[str, str]) -> Optional[str]:
    import ast

    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def _canonical(qualified: str) -> str:
    """``tensorflow.compat.v1.io`` and ``keras.utils`` as ``tensorflow.io`` and ``tensorflow.keras.utils``."""
    for prefix in ("tensorflow.compat.v1.", "tensorflow.compat.v2.", "tensorflow._api.v2."):
        if qualified.startswith(prefix):
            qualified = "tensorflow." + qualified[len(prefix) :]
    if qualified == "keras" or qualified.startswith("keras."):
        qualified = "tensorflow." + qualified
    return qualified


def _spelled(node: object) -> str:
    import ast

    try:
        return ast.unparse(node)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - only for the message
        return "?"
