"""Where a value goes: into TensorFlow computation, into display code, or into foreign code.

Asked by the rules about NumPy and Python values on the gradient path (TF104-TF109) and others. A NumPy or
Python value breaks the gradient only when it flows back into the computation the tape differentiates;
the same conversion feeding ``print``, a logger, a comparison or an index is harmless, and one feeding
non-TensorFlow code (scipy, a file, a subprocess) cannot be fixed by keeping the tensor.
"""

from __future__ import annotations

import enum
import weakref
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

import libcst as cst

from tapefix.analysis.names import is_under
from tapefix.analysis.scope import KERAS, NP, TF, Function, ModuleAnalysis, Value
from tapefix.analysis.syntax import argument, assigned_name, bind_arguments, integer_tensor, is_integer_dtype
from tapefix.analysis.tfops import (
    DISPLAY_CALLS,
    EXACT_NUMPY,
    FOREIGN_CALLS,
    GRADIENT_METHODS,
    INTEGER_ARGUMENTS,
    INTEGER_BUILTINS,
    NO_GRADIENT_THROUGH,
    NUMPY_FOREIGN,
    NUMPY_NO_GRADIENT,
    PASS_THROUGH_CALLS,
    SAME_DTYPE,
    SELECTOR_ARGUMENTS,
    SHOW_ONLY_CALLS,
)
from tapefix.types import Forward


class Cursor(Protocol):
    """Where a question is asked: the module's analysis, the function and the nodes down to the node
    being looked at (a rule's context is one)."""

    module: cst.Module
    analysis: ModuleAnalysis
    function: Optional[Function]
    ancestors: List[cst.CSTNode]

    def value(self, expr: cst.BaseExpression) -> Value: ...


class Use(enum.Enum):
    """What happens to a value."""

    COMPUTE = "compute"  #: it flows into TensorFlow computation (or a gradient target, or a return value)
    DISPLAY = "display"  #: printed, logged, formatted: harmless, but its printed form would change
    NONE = "none"  #: no gradient could flow anyway: a comparison, a condition, an index, discarded
    FOREIGN = "foreign"  #: non-TensorFlow code (scipy, json, a file, a subprocess) or in-place mutation


# Builtins whose result carries nothing a gradient could follow.
_BUILTIN_NONE = {"str", "repr", "format", "len", "isinstance", "type", "id", "hash", "bool", "range", "callable"}
# Builtins through which the value flows on to whatever uses their result.
_BUILTIN_PASS = {"float", "int", "list", "tuple", "sorted", "sum", "min", "max", "abs", "round", "pow", "reversed"}
_DISPLAY_METHODS = {
    "info",
    "debug",
    "warning",
    "warn",
    "error",
    "critical",
    "exception",
    "log",
    "write",
    "writelines",
    "set_description",
    "set_postfix",
    "set_postfix_str",
    "add_scalar",
    "add_scalars",
    "add_summary",
    "update_state",
    "reset_state",
    "format",
}
_COLLECT_METHODS = {"append", "extend", "insert"}
_MAX_NAME_DEPTH = 4
# Operators that round the same way in NumPy, Python (rounded back to float32) and TensorFlow.
_EXACT_OPERATORS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide)


class _Scan(cst.CSTVisitor):
    """Every read of a plain name in a scope, with the chain of its ancestors."""

    def __init__(self, root: cst.CSTNode) -> None:
        super().__init__()
        self.root = root
        self.stack: List[cst.CSTNode] = []
        self.reads: Dict[str, List[Tuple[cst.Name, Tuple[cst.CSTNode, ...]]]] = {}

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Name) and self.stack and _is_read(node, self.stack):
            self.reads.setdefault(node.value, []).append((node, tuple(self.stack)))
        # libcst calls on_leave even for a node whose children it skips.
        self.stack.append(node)
        return not (isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda)) and node is not self.root)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()


def _is_read(name: cst.Name, stack: Sequence[cst.CSTNode]) -> bool:
    """Whether ``name`` (whose ancestors are ``stack``) is read rather than bound or an attribute name."""
    parent = stack[-1]
    if isinstance(parent, cst.Attribute) and parent.attr is name:
        return False
    if isinstance(parent, (cst.AssignTarget, cst.Param, cst.FunctionDef, cst.ClassDef, cst.ImportAlias)):
        return False
    if isinstance(parent, (cst.AugAssign, cst.AnnAssign)) and parent.target is name:
        return False
    if isinstance(parent, (cst.For, cst.CompFor)) and parent.target is name:
        return False
    if isinstance(parent, (cst.Arg,)) and parent.keyword is name:
        return False
    if isinstance(parent, cst.AsName):
        return False
    # ``a, (b, *c) = ...`` and ``for a, b in ...``: unpacking targets bind.
    child: cst.CSTNode = name
    for node in reversed(stack):
        if isinstance(node, (cst.Element, cst.Tuple, cst.List, cst.StarredElement)):
            child = node
            continue
        if isinstance(node, cst.AssignTarget):
            return False
        if isinstance(node, (cst.For, cst.CompFor)) and node.target is child:
            return False
        break
    return True


_SCANS: weakref.WeakKeyDictionary[ModuleAnalysis, Dict[cst.CSTNode, _Scan]] = weakref.WeakKeyDictionary()


def _scan(analysis: ModuleAnalysis, root: cst.CSTNode) -> _Scan:
    per_module = _SCANS.setdefault(analysis, {})
    scan = per_module.get(root)
    if scan is None:
        scan = _Scan(root)
        root.visit(scan)
        per_module[root] = scan
    return scan


class UseFinder:
    """Classifies where the value of an expression goes, following names it is bound to."""

    def __init__(self, context: Cursor, python_number: bool = False) -> None:
        self.context = context
        self.analysis = context.analysis
        #: the value is a Python float: its arithmetic runs in float64, so every operator rounds
        #: differently from the float32 TensorFlow op a fix puts there
        self.python_number = python_number
        #: on some way to TensorFlow the value passes NumPy or Python arithmetic that a fix turns into
        #: TensorFlow arithmetic with other rounding (``**``, ``@``, ``//``, ``%``, NumPy functions,
        #: builtins, a NumPy operand of another dtype): forward values then agree only within ulp
        self.rounding_changes = False
        #: the value meets a tensor that keeps its own gradient (``x.numpy() * x``): the original
        #: gradient was partial rather than missing, and the detour may have been a deliberate
        #: stop_gradient, so a fix changes gradient values the code already produced
        self.meets_gradient = False

    def of_node(self, node: cst.CSTNode) -> FrozenSet[Use]:
        """Uses of the value of ``node``, which must be the node being visited."""
        ancestors = list(self.context.ancestors)
        if ancestors and ancestors[-1] is node:
            ancestors.pop()
        return frozenset(self._classify(node, ancestors, set(), 0, self.python_number))

    # ------------------------------------------------------------------ the walk up
    def _classify(
        self, node: cst.CSTNode, parents: Sequence[cst.CSTNode], seen: Set[str], depth: int, python_value: bool
    ) -> Set[Use]:
        """Uses of ``node`` found by walking up ``parents``; ``python_value``: it is a Python number."""
        child: cst.CSTNode = node
        for index in range(len(parents) - 1, -1, -1):
            parent = parents[index]
            if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
                return {Use.NONE}
            if isinstance(parent, cst.BinaryOperation):
                other = parent.right if parent.left is child else parent.left
                self._note_meeting((other,))
                if python_value:
                    if self._foreign_operand(parent, child, python_value):
                        self.rounding_changes = True  # Python float64 arithmetic
                    else:
                        python_value = False  # a tensor operand: TensorFlow arithmetic from here on
                elif not isinstance(parent.operator, _EXACT_OPERATORS) or self._foreign_operand(
                    parent, child, python_value
                ):
                    self.rounding_changes = True
                child = parent
                continue
            if isinstance(parent, (cst.UnaryOperation, cst.Element, cst.List, cst.Tuple)):
                child = parent
                continue
            if isinstance(parent, (cst.StarredElement, cst.DictElement, cst.Dict, cst.Set, cst.ListComp)):
                child = parent
                continue
            if isinstance(parent, cst.Subscript):
                if parent.value is child:
                    child = parent
                    continue
                return {Use.NONE}
            if isinstance(parent, (cst.SubscriptElement, cst.Index, cst.Slice)):
                return {Use.NONE}
            if isinstance(parent, cst.IfExp):
                if parent.test is child:
                    return {Use.NONE}
                child = parent
                continue
            if isinstance(parent, (cst.Comparison, cst.ComparisonTarget, cst.BooleanOperation, cst.If, cst.While)):
                return {Use.NONE}
            if isinstance(parent, (cst.Assert, cst.Expr, cst.Del, cst.Raise)):
                return {Use.NONE}
            if isinstance(parent, (cst.FormattedStringExpression, cst.FormattedString)):
                return {Use.DISPLAY}
            if isinstance(parent, cst.AssignTarget):
                return {Use.FOREIGN}  # stored into a container in place: ``buffer[i] = value``
            if isinstance(parent, cst.Arg):
                child = parent
                continue
            if isinstance(parent, cst.Attribute):
                if parent.value is not child:
                    return {Use.NONE}
                if parent.attr.value in ("shape", "dtype", "ndim", "size"):
                    return {Use.NONE}
                call = parents[index - 1] if index > 0 else None
                if isinstance(call, cst.Call) and call.func is parent:
                    return self._method_on_value(
                        parent.attr.value, call, parents[: index - 1], seen, depth, python_value
                    )
                return {Use.FOREIGN}
            if isinstance(parent, cst.Call):
                if parent.func is child:
                    return {Use.FOREIGN}
                kind = self._call(parent)
                if kind is None:
                    if self.analysis.is_numpy_call(parent) not in EXACT_NUMPY:
                        self.rounding_changes = True
                    child = parent  # the value flows on through the call's result
                    continue
                if kind == "collect":
                    assert isinstance(parent.func, cst.Attribute) and isinstance(parent.func.value, cst.Name)
                    return self._name(parent.func.value.value, seen, depth, python_value)
                assert isinstance(kind, Use)
                if kind is Use.COMPUTE:
                    self._note_meeting(tuple(a.value for a in parent.args if a is not child))
                return {kind}
            if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
                return self._assigned(parent, seen, depth, python_value)
            if isinstance(parent, (cst.Return, cst.Yield, cst.Await)):
                return {Use.COMPUTE}
            if isinstance(parent, (cst.BaseSmallStatement, cst.BaseStatement, cst.BaseSuite, cst.Module)):
                return {Use.NONE}
            child = parent
        return {Use.NONE}

    def _note_meeting(self, others: Sequence[cst.BaseExpression]) -> None:
        for other in others:
            value = self.context.value(other)
            if value.on_path and not value.numpy:
                self.meets_gradient = True

    def _foreign_operand(self, operation: cst.BinaryOperation, child: cst.CSTNode, python_value: bool) -> bool:
        """The other operand is a NumPy value off the path (NumPy may promote where TensorFlow does not),
        or, for a Python number, anything but a tensor (the operation runs in Python's float64)."""
        other = operation.right if operation.left is child else operation.left
        value = self.context.value(other)
        if python_value:
            return not value.on_path or value.numpy
        return value.numpy and not value.on_path

    def _method_on_value(
        self,
        method: str,
        call: cst.Call,
        parents: Sequence[cst.CSTNode],
        seen: Set[str],
        depth: int,
        python_value: bool,
    ) -> Set[Use]:
        """``value.method(...)``: NumPy-only methods are foreign to a tensor."""
        if method in ("numpy", "item", "tolist") or method in _COLLECT_METHODS:
            return {Use.NONE}  # ``items.append(x)`` reads ``items`` only to add to it
        if method in ("__float__", "__int__"):
            return self._classify(call, parents, seen, depth, python_value)
        return {Use.FOREIGN}

    def _assigned(self, statement: cst.CSTNode, seen: Set[str], depth: int, python_value: bool) -> Set[Use]:
        targets: List[cst.BaseExpression] = []
        if isinstance(statement, cst.Assign):
            targets = [t.target for t in statement.targets]
        elif isinstance(statement, (cst.AnnAssign, cst.AugAssign, cst.NamedExpr)):
            targets = [statement.target]
        uses: Set[Use] = set()
        for target in targets:
            if isinstance(target, cst.Name):
                uses |= self._name(target.value, seen, depth, python_value)
            elif isinstance(target, (cst.Tuple, cst.List)):
                for element in target.elements:
                    if isinstance(element.value, cst.Name):
                        uses |= self._name(element.value.value, seen, depth, python_value)
            # ``self.history = value`` and ``buffer[i] = value`` store the value for later, outside the
            # computation this module shows: left alone.
        return uses or {Use.NONE}

    def _name(self, name: str, seen: Set[str], depth: int, python_value: bool) -> Set[Use]:
        if name in seen or depth >= _MAX_NAME_DEPTH:
            return set()
        seen = seen | {name}
        function = self.context.function
        root: cst.CSTNode = function.node if function is not None else self.context.module
        uses: Set[Use] = set()
        for read, stack in _scan(self.analysis, root).reads.get(name, ()):
            if not self._recorded(stack) and not _is_gradient_target(read, stack):
                continue  # read after the tape (or under stop_recording): no gradient flows there
            uses |= self._classify(read, stack, seen, depth + 1, python_value)
        return uses

    def _recorded(self, stack: Sequence[cst.CSTNode]) -> bool:
        recorded = False
        for node in stack:
            if node in self.analysis.regions:
                recorded = True
            elif node in self.analysis.excluded:
                recorded = False
        return recorded

    # ------------------------------------------------------------------ calls
    def _call(self, call: cst.Call) -> Optional[Use | str]:
        """What a call does with its arguments: a Use, ``"collect"`` (``list.append``), or None when
        the value flows on through the call's result."""
        func = call.func
        name = self.analysis.qualify(func)
        if name is not None:
            if name.startswith(TF + "."):
                short = name[len(TF) + 1 :]
                if short.startswith(PASS_THROUGH_CALLS):
                    return None
                if short.startswith(DISPLAY_CALLS):
                    return Use.DISPLAY
                if short.startswith(FOREIGN_CALLS):
                    return Use.FOREIGN
                return Use.COMPUTE
            if name.startswith(NP + "."):
                short = name[len(NP) + 1 :]
                if short.startswith(NUMPY_FOREIGN):
                    return Use.FOREIGN
                if short in NUMPY_NO_GRADIENT:
                    return Use.NONE
                return None
            if is_under(name, KERAS):
                return Use.COMPUTE
            if name.startswith("math."):
                return None  # a Python number flows on (TF107 reports the ``math`` call itself)
            if name.startswith(("logging", "absl.logging", "tqdm", "wandb", "mlflow")):
                return Use.DISPLAY
            return Use.FOREIGN  # scipy, json, subprocess, math, ...: code that holds no tape
        if isinstance(func, cst.Name):
            if func.value == "print":
                return Use.DISPLAY
            if func.value in _BUILTIN_NONE:
                return Use.NONE
            if func.value in _BUILTIN_PASS:
                return None
            if func.value in ("open", "exec", "eval"):
                return Use.FOREIGN
            return Use.COMPUTE  # the module's own functions, Keras objects, callables passed in
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in GRADIENT_METHODS:
                return Use.COMPUTE
            if method in _COLLECT_METHODS and isinstance(func.value, cst.Name):
                return "collect"
            if method in _DISPLAY_METHODS:
                return Use.DISPLAY
            return Use.COMPUTE
        return Use.COMPUTE


def _is_gradient_target(read: cst.Name, stack: Sequence[cst.CSTNode]) -> bool:
    """``tape.gradient(read, ...)``: the target is used by the tape even after the block."""
    if len(stack) < 2 or not isinstance(stack[-1], cst.Arg) or not isinstance(stack[-2], cst.Call):
        return False
    func = stack[-2].func
    return isinstance(func, cst.Attribute) and func.attr.value in GRADIENT_METHODS


def forward_after(finder: UseFinder, forward: Forward) -> Forward:
    """The forward contract of a fix whose own op swap is ``forward``, given the way the value goes."""
    return Forward.ULP if finder.rounding_changes else forward


def decide(uses: FrozenSet[Use]) -> Tuple[bool, bool, bool]:
    """(report, fixable, printed form changes) for a conversion whose value has ``uses``."""
    if Use.COMPUTE not in uses:
        return False, False, False
    return True, Use.FOREIGN not in uses, Use.DISPLAY in uses


def feeds_computation(context: Cursor, node: cst.CSTNode) -> bool:
    """False when the value of ``node`` (the node being visited) is only printed, logged or written to a
    summary, so no gradient flows through it; True otherwise (an unused value included, as for the
    other rules)."""
    for ancestor in context.ancestors:
        if isinstance(ancestor, cst.Call) and ancestor is not node:
            name = context.analysis.is_tf_call(ancestor) or ""
            for prefix in ("compat.v1.", "compat.v2."):
                name = name[len(prefix) :] if name.startswith(prefix) else name
            if name.startswith(SHOW_ONLY_CALLS) and not name.startswith(PASS_THROUGH_CALLS):
                return False
    uses = UseFinder(context).of_node(node)
    return Use.COMPUTE in uses or Use.DISPLAY not in uses


# Builtins whose result is a Python value no gradient follows back.
_BUILTIN_NO_GRADIENT = {"int", "bool", "len", "str", "repr", "round", "isinstance", "type", "range", "print"}
_MAX_GRADIENT_DEPTH = 6


def feeds_gradient(context: Cursor, node: cst.CSTNode) -> bool:
    """False when no gradient can flow back into the value of ``node`` (the node being visited): every
    way it goes ends in a rounding, an integer cast, a comparison, an index or mask, ``tf.stop_gradient``
    or a shape, directly or through the names it is assigned to (``level = tf.math.log(area)`` that only
    picks a pyramid level by ``tf.cast(tf.round(level), tf.int32)``). True otherwise: whenever the value
    leaves what tapefix can follow (a return, a call of other code), and for a value never read."""
    ancestors = list(context.ancestors)
    if ancestors and ancestors[-1] is node:
        ancestors.pop()
    return _gradient_walk(context, node, ancestors, set(), 0)


def _gradient_walk(
    context: Cursor, node: cst.CSTNode, parents: Sequence[cst.CSTNode], seen: Set[str], depth: int
) -> bool:
    analysis = context.analysis
    child: cst.CSTNode = node
    for index in range(len(parents) - 1, -1, -1):
        parent = parents[index]
        if isinstance(parent, cst.UnaryOperation) and isinstance(parent.operator, cst.Not):
            return False
        if isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation, cst.Element, cst.List, cst.Tuple, cst.Arg)):
            child = parent
            continue
        if isinstance(parent, (cst.StarredElement, cst.DictElement, cst.Dict)):
            child = parent
            continue
        if isinstance(parent, cst.Subscript):
            if parent.value is child:
                child = parent
                continue
            return False  # an index: the value picks elements, no gradient flows into it
        if isinstance(parent, (cst.SubscriptElement, cst.Index, cst.Slice)):
            return False
        if isinstance(parent, cst.IfExp):
            if parent.test is child:
                return False
            child = parent
            continue
        if isinstance(parent, (cst.Comparison, cst.ComparisonTarget, cst.BooleanOperation, cst.If, cst.While)):
            return False
        if isinstance(parent, (cst.Assert, cst.Del)):
            return False
        if isinstance(parent, cst.Call):
            if parent.func is child:
                return True
            if not _call_passes_gradient(analysis, parent, child):
                return False
            if not _follows_result(analysis, parent):
                return True
            child = parent
            continue
        if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
            targets: List[cst.BaseExpression] = (
                [t.target for t in parent.targets] if isinstance(parent, cst.Assign) else [parent.target]
            )
            names = [n for target in targets for n in _plain_names(target)]
            if len(names) != sum(1 for target in targets for _ in _all_targets(target)):
                return True  # stored into an attribute or a container: followed no further
            return any(_name_feeds_gradient(context, name, seen, depth) for name in names)
        if isinstance(parent, (cst.BaseSmallStatement, cst.BaseStatement, cst.BaseSuite, cst.Module)):
            return True
        child = parent
    return True


def _call_passes_gradient(analysis: ModuleAnalysis, call: cst.Call, child: cst.CSTNode) -> bool:
    """Whether a gradient of the call's result reaches its argument ``child`` (an ``Arg``)."""
    name = analysis.qualify(call.func)
    if name is not None and name.startswith(TF + "."):
        short = name[len(TF) + 1 :]
        if short in NO_GRADIENT_THROUGH:
            return False
        shown = short.split(".", 2)[2] if short.startswith(("compat.v1.", "compat.v2.")) else short
        if shown.startswith(SHOW_ONLY_CALLS) and not shown.startswith(PASS_THROUGH_CALLS):
            return False  # printed, summarised or asserted: what it returns carries no gradient back
        if short == "cast" or short == "dtypes.cast":
            dtype = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "dtype"), None)
            if dtype is None and len(call.args) > 1 and call.args[1].keyword is None:
                dtype = call.args[1].value
            return not is_integer_dtype(dtype)
        selector = SELECTOR_ARGUMENTS.get(short)
        if selector is not None and isinstance(child, cst.Arg):
            position, keyword = selector
            positional = [a for a in call.args if a.keyword is None]
            if (child.keyword is not None and child.keyword.value == keyword) or (
                child.keyword is None and position < len(positional) and positional[position] is child
            ):
                return False
        return True
    if isinstance(call.func, cst.Name) and call.func.value in _BUILTIN_NO_GRADIENT:
        return False
    return True


def _follows_result(analysis: ModuleAnalysis, call: cst.Call) -> bool:
    """Whether the walk goes on through the call's result: a TensorFlow op. Any other call (a gradient
    call, a model, a helper, a list's ``append``) takes the value where tapefix stops following it."""
    name = analysis.qualify(call.func)
    return name is not None and name.startswith(TF + ".")


def _name_feeds_gradient(context: Cursor, name: str, seen: Set[str], depth: int) -> bool:
    if name in seen:
        return False  # already being followed: its other reads decide
    if depth >= _MAX_GRADIENT_DEPTH:
        return True
    seen.add(name)
    function = context.function
    root: cst.CSTNode = function.node if function is not None else context.module
    reads = _scan(context.analysis, root).reads.get(name, ())
    if not reads:
        return True  # never read: an unused value counts as used, as for every rule
    return any(_gradient_walk(context, read, stack, seen, depth + 1) for read, stack in reads)


def _plain_names(target: cst.BaseExpression) -> List[str]:
    return [t.value for t in _all_targets(target) if isinstance(t, cst.Name)]


def _all_targets(target: cst.BaseExpression) -> List[cst.BaseExpression]:
    if isinstance(target, (cst.Tuple, cst.List)):
        return [t for e in target.elements for t in _all_targets(e.value)]
    if isinstance(target, cst.StarredElement):
        return _all_targets(target.value)
    return [target]


# ---------------------------------------------------------------------- where a value's dtype matters


@dataclass(frozen=True)
class DtypeUse:
    """A place where the dtype of a value matters: TensorFlow takes only an integer there (``kind ==
    "index"``: an index argument, a shape, a subscript, ``range``), or the value meets ``other`` in
    arithmetic (``kind == "operand"``), where both operands must have one dtype."""

    node: cst.CSTNode
    kind: str
    #: the other operand of an arithmetic operation
    other: Optional[cst.BaseExpression] = None
    #: the function ``node`` is in (None: the module), where ``other`` is to be looked up
    function: Optional[Function] = None


_MAX_DTYPE_DEPTH = 6
_ARITHMETIC = (
    cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power, cst.MatrixMultiply,
)  # fmt: skip


def dtype_uses(analysis: ModuleAnalysis, name: str, function: Optional[Function]) -> List[DtypeUse]:
    """Where the value bound to ``name`` (as seen from ``function``; None: the module) goes where its
    dtype matters, in the scope that binds it and the functions nested there: directly, through the
    names it is assigned to, through ops that keep its dtype (``tf.reshape``), and into the module's own
    functions it is passed to (decorated with ``tf.function`` or ``tf.custom_gradient`` included), as
    the parameter the call binds it to."""
    found: List[DtypeUse] = []
    _dtype_name(analysis, name, _owner(name, function), found, set(), 0)
    return found


def _owner(name: str, function: Optional[Function]) -> Optional[Function]:
    """The function whose own name ``name`` is where ``function`` reads it (None: the module's)."""
    while function is not None:
        if name in function.defs or name in function.params:
            return function
        function = function.parent
    return None


def _dtype_name(
    analysis: ModuleAnalysis,
    name: str,
    owner: Optional[Function],
    found: List[DtypeUse],
    seen: Set[Tuple[int, str]],
    depth: int,
) -> None:
    key = (id(owner), name)
    if key in seen or depth > _MAX_DTYPE_DEPTH:
        return
    seen.add(key)
    for scope, read, stack in _reads(analysis, name, owner):
        _dtype_walk(analysis, read, stack, scope, found, seen, depth)


def _reads(
    analysis: ModuleAnalysis, name: str, owner: Optional[Function]
) -> Iterator[Tuple[Optional[Function], cst.CSTNode, Sequence[cst.CSTNode]]]:
    """Every read of ``name`` in the scope ``owner`` that binds it and in the functions nested there that
    see the same binding: (the scope it is in, the read, the nodes above it)."""
    scopes: List[Optional[Function]] = [owner]
    scopes += [
        f for f in analysis.functions.values() if f is not owner and _owner(name, f) is owner and _within(f, owner)
    ]
    for scope in scopes:
        root: cst.CSTNode = scope.node if scope is not None else analysis.module
        for read, stack in _scan(analysis, root).reads.get(name, ()):
            yield scope, read, stack


def _within(function: Function, owner: Optional[Function]) -> bool:
    while function is not None:
        if function is owner:
            return True
        function = function.parent  # type: ignore[assignment]
    return owner is None


def _dtype_walk(
    analysis: ModuleAnalysis,
    node: cst.CSTNode,
    parents: Sequence[cst.CSTNode],
    scope: Optional[Function],
    found: List[DtypeUse],
    seen: Set[Tuple[int, str]],
    depth: int,
) -> None:
    child: cst.CSTNode = node
    for index in range(len(parents) - 1, -1, -1):
        parent = parents[index]
        if isinstance(parent, cst.BinaryOperation):
            if not isinstance(parent.operator, _ARITHMETIC):
                return
            other = parent.right if parent.left is child else parent.left
            found.append(DtypeUse(parent, "operand", other, scope))
            child = parent
            continue
        if isinstance(parent, (cst.UnaryOperation, cst.Element, cst.List, cst.Tuple, cst.Arg)):
            child = parent
            continue
        if isinstance(parent, cst.Subscript):
            if parent.value is not child:
                return
            child = parent  # an element of an index is an index
            continue
        if isinstance(parent, (cst.Index, cst.Slice)):
            subscript = next((p for p in reversed(parents[:index]) if isinstance(p, cst.Subscript)), parent)
            found.append(DtypeUse(subscript, "index", None, scope))
            return
        if isinstance(parent, cst.Call):
            if parent.func is child or not isinstance(child, cst.Arg):
                return
            short = analysis.is_tf_call(parent)
            if short is not None:
                for position, keyword in INTEGER_ARGUMENTS.get(short, ()):
                    if argument(parent, position, keyword) is child.value:
                        found.append(DtypeUse(parent, "index", None, scope))
                        return
                if short in SAME_DTYPE and argument(parent, 0, "") is child.value:
                    child = parent
                    continue
                return
            if isinstance(parent.func, cst.Name) and parent.func.value in INTEGER_BUILTINS:
                if not analysis.by_name.get(parent.func.value):
                    found.append(DtypeUse(parent, "index", None, scope))
                return
            method = isinstance(parent.func, cst.Attribute)
            for callee in analysis.resolve_callee(parent, scope):
                bound = bind_arguments(callee.node, parent, method and callee.class_name is not None)
                for param, value in (bound or {}).items():
                    if value is child.value:
                        _dtype_name(analysis, param, callee, found, seen, depth + 1)
            return
        if isinstance(parent, (cst.Assign, cst.AnnAssign)):
            targets = [t.target for t in parent.targets] if isinstance(parent, cst.Assign) else [parent.target]
            for target in targets:
                if isinstance(target, cst.Name):
                    _dtype_name(analysis, target.value, _owner(target.value, scope), found, seen, depth + 1)
            return
        return


def integer_valued(analysis: ModuleAnalysis, expr: cst.BaseExpression, function: Optional[Function]) -> bool:
    """``tf.constant(2)``, ``tf.cast(x, tf.int32)``, or a name bound to one: a tensor of an integer dtype."""
    if isinstance(expr, cst.Name):
        return any(
            not isinstance(d, cst.Name) and integer_valued(analysis, d, function)
            for d in analysis.definitions(expr.value, function)
        )
    if isinstance(expr, cst.Call):
        short = analysis.is_tf_call(expr)
        if short is None:
            return False
        if short in ("cast", "dtypes.cast"):
            return is_integer_dtype(argument(expr, 1, "dtype"))
        return integer_tensor(expr, short)
    return False


# ---------------------------------------------------------------------- a name read only as a value

# Attributes a tensor has as well as a variable: reading them does not need the variable.
_VALUE_ATTRIBUTES = ("shape", "dtype", "ndim")


def state_use(
    analysis: ModuleAnalysis, name: str, function: Optional[Function], seen: FrozenSet[str] = frozenset()
) -> Optional[cst.CSTNode]:
    """The first read of ``name`` (as seen from ``function``; None: the module), in the scope that binds
    it and the functions nested there, that needs more than its value: a method or attribute of its own
    (``v.assign(...)``, ``v.trainable``), a gradient *source*, ``tape.watch``, a call of anything but
    TensorFlow (an optimizer, the module's own function, ``list.append``), or another name bound to it
    (``alias = v``) that is read so, or bound elsewhere too. None when every read only takes the value:
    arithmetic, a comparison, an element, an argument of a TensorFlow op, a gradient target, a return
    value."""
    for scope, read, stack in _reads(analysis, name, _owner(name, function)):
        alias = assigned_name(read, stack[-1] if stack else None)
        if alias is not None:
            # ``alias = v``: the alias is the same object, so its reads count as the name's.
            if alias in seen or len(analysis.definitions(alias, scope)) != 1:
                return read
            if state_use(analysis, alias, scope, seen | {name}) is not None:
                return read
            continue
        if not _read_as_value(analysis, read, stack):
            return read
    return None


def _read_as_value(analysis: ModuleAnalysis, node: cst.CSTNode, parents: Sequence[cst.CSTNode]) -> bool:
    child: cst.CSTNode = node
    for index in range(len(parents) - 1, -1, -1):
        parent = parents[index]
        if isinstance(parent, (cst.BinaryOperation, cst.UnaryOperation, cst.Comparison, cst.ComparisonTarget)):
            return True
        if isinstance(parent, (cst.Return, cst.Expr, cst.Index, cst.Slice)):
            return True  # returned, discarded, or an index (a variable's value serves as well)
        if isinstance(parent, cst.Subscript):
            return True  # an element of it, or it as an index
        if isinstance(parent, (cst.Element, cst.List, cst.Tuple, cst.Arg, cst.SubscriptElement)):
            child = parent
            continue
        if isinstance(parent, cst.Attribute):
            return parent.value is child and parent.attr.value in _VALUE_ATTRIBUTES
        if isinstance(parent, cst.Call):
            if parent.func is child or not isinstance(child, cst.Arg):
                return False
            short = analysis.is_tf_call(parent)
            if short is not None:
                return not short.startswith("Variable")
            func = parent.func
            if isinstance(func, cst.Attribute) and func.attr.value in GRADIENT_METHODS:
                return argument(parent, 0, "target") is child.value  # a target, not a source
            return isinstance(func, cst.Name) and func.value == "print" and not analysis.by_name.get("print")
        return False
    return False
