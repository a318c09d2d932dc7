"""Where a tape records, and which values are tensors on a gradient path.

``ModuleAnalysis`` is computed once per module and asked by every rule:

* **Tape scope.** The body of ``with tf.GradientTape() as t:`` runs while the tape records
  (``Scope.DIRECT``); so do functions of the same module called from such a body, transitively
  (``Scope.THROUGH_CALL``: they may also run outside any tape), and so do the functions that tapes in
  other modules of the project run (``entry_points``, found by ``tapefix.project``) and losses passed
  to ``compile(loss=...)``, which Keras runs under its own tape. ``with t.stop_recording():`` bodies,
  ``tf.stop_gradient`` arguments, ``@tf.custom_gradient`` bodies and nested ``def``s that are never
  called are outside.
* **Tensor-ness.** A conservative, flow-insensitive inference per function: a name is *on the
  gradient path* when it is bound to a ``tf.Variable``, watched, a gradient source, the result of a
  Keras model or layer call, or computed from such a value by TensorFlow ops, arithmetic or calls of
  the module's own functions. Python numbers, loop counters, flags and NumPy data are not. Shapes are
  tracked just enough to tell a provably scalar value from a provably non-scalar one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import libcst as cst

from tapefix.analysis.names import ImportMap, dotted, is_under
from tapefix.analysis.tfops import ARGMAX, COMPARISONS, GRADIENT_METHODS, SHAPE_OPS
from tapefix.analysis.walk import Recording, children, walk
from tapefix.types import EntryPoint


class Scope(enum.Enum):
    DIRECT = "direct"
    THROUGH_CALL = "through-call"


class Shape(enum.Enum):
    SCALAR = "scalar"
    NONSCALAR = "non-scalar"
    UNKNOWN = "unknown"
    #: no value yet: a name the module binds, read before the fixed point has bound it (a helper's
    #: parameter while its caller's own parameters are still unbound). The bottom of the join; the
    #: model answers UNKNOWN for what stays pending.
    PENDING = "pending"

    def join(self, other: Shape) -> Shape:
        if self is Shape.PENDING:
            return other
        if other is Shape.PENDING:
            return self
        return self if self is other else Shape.UNKNOWN


@dataclass(frozen=True)
class Value:
    """What tapefix knows of an expression."""

    on_path: bool = False  #: a tensor that depends on a gradient source
    shape: Shape = Shape.UNKNOWN
    numpy: bool = False  #: a NumPy value (an ndarray or NumPy scalar), not a tensor
    #: for a tuple or list of known length (``return loss, weights``): what each element is
    elements: Tuple[Value, ...] = ()

    def join(self, other: Value) -> Value:
        elements: Tuple[Value, ...] = ()
        if self.elements and len(self.elements) == len(other.elements):
            elements = tuple(a.join(b) for a, b in zip(self.elements, other.elements))
        on_path, numpy = self.on_path or other.on_path, self.numpy and other.numpy
        return Value(on_path, self.shape.join(other.shape), numpy, elements)


NOTHING = Value()
#: a name's value before the fixed point has bound it (see Shape.PENDING)
PENDING = Value(shape=Shape.PENDING)


#: the arguments Keras passes to a loss while its train step records: ``(y_true, y_pred)``
KERAS_LOSS_ARGUMENTS = (False, True)
TF = "tensorflow"
NP = "numpy"
STOP_GRADIENT = ("tensorflow.stop_gradient", "tensorflow.raw_ops.StopGradient")
# The last is the class itself, as TensorFlow's own libraries import it.
GRADIENT_TAPES = (
    "tensorflow.GradientTape",
    "tensorflow.autodiff.GradientTape",
    "tensorflow.python.eager.backprop.GradientTape",
)
KERAS = ("tensorflow.keras", "keras", "tf_keras")
CUSTOM_GRADIENT = ("tensorflow.custom_gradient", "tensorflow.python.ops.custom_gradient.custom_gradient")
# TensorFlow calls whose result carries no gradient to its inputs, or is not a tensor at all.
_TF_NO_PATH = (
    ARGMAX
    | COMPARISONS
    | SHAPE_OPS
    | {
        "stop_gradient",
        "zeros_like",
        "ones_like",
        "one_hot",
        "is_tensor",
        "print",
        "debugging",
        "summary",
        "data",
        "io",
        "config",
        "saved_model",
        "train",
        "distribute",
        "GradientTape",
        "TensorSpec",
        "function",
        "random",
        "constant",
        "convert_to_tensor",
        "zeros",
        "ones",
        "fill",
        "range",
        "eye",
        "linspace",
        "cast_int",
        "numpy_function",
        "py_function",
        "experimental.numpy.asarray",
    }
)
# TensorFlow calls that keep the shape of their first argument (elementwise ops).
_TF_ELEMENTWISE_HINT = (
    "abs",
    "exp",
    "log",
    "sqrt",
    "square",
    "sigmoid",
    "tanh",
    "floor",
    "ceil",
    "round",
    "sign",
    "nn.relu",
    "nn.sigmoid",
    "nn.softplus",
    "math.",
    "maximum",
    "minimum",
    "clip_by_value",
    "where",
    "cast",
    "pow",
    "identity",
    "nn.softmax",
    "nn.log_softmax",
    "rsqrt",
    "reciprocal",
    "negative",
    "multiply",
    "add",
    "subtract",
    "divide",
)
# TensorFlow calls whose result always has at least one dimension.
_TF_AT_LEAST_2D = {"matmul", "linalg.matmul", "concat", "stack", "expand_dims", "one_hot", "linalg.einsum", "einsum"}
_NUMPY_VALUE_METHODS = {"numpy", "item", "tolist"}
# Methods of a tensor whose result is a static shape or a Python value, never a tensor on the path.
_NO_PATH_METHODS = {"get_shape", "as_list", "num_elements", "is_fully_defined"}
_COLLECT_METHODS = ("append", "extend", "insert")
_NO_PATH_ATTRIBUTES = {"shape", "dtype", "name", "device", "ndim", "trainable", "graph", "op"}
_MODEL_WORDS = ("model", "net", "encoder", "decoder", "generator", "discriminator", "critic", "actor")

FunctionNode = Union[cst.FunctionDef, cst.Lambda]


@dataclass
class Function:
    node: cst.FunctionDef
    qualname: str
    params: List[str]
    class_name: Optional[str]
    parent: Optional[Function]
    env: Dict[str, Value]
    returns: Value = NOTHING
    #: whether a ``return <value>`` has been bound into ``returns`` yet (NOTHING is a value too)
    returned: bool = False
    #: every expression assigned to each plain name in the function body
    defs: Dict[str, List[cst.BaseExpression]] = field(default_factory=dict)


class ModuleAnalysis:
    """Tape scope and tensor-ness for one module; every rule asks this one object."""

    def __init__(self, module: cst.Module, entry_points: Sequence[EntryPoint] = (), infer: bool = True) -> None:
        """``infer=False`` leaves tensor-ness to be inferred on demand (``external_calls`` needs it only
        when a callee is wanted); tape scope does not depend on it."""
        self.module = module
        #: functions of this module that tapes in other modules run (the project index finds them)
        self.entry_points = tuple(entry_points)
        self.imports = ImportMap()
        self.module_env: Dict[str, Value] = {}
        self.module_defs: Dict[str, List[cst.BaseExpression]] = {}
        self.functions: Dict[cst.FunctionDef, Function] = {}
        self.by_name: Dict[str, List[Function]] = {}
        self.class_attrs: Dict[str, Dict[str, Value]] = {}
        self.keras_objects: Set[str] = set()
        #: the classes the module defines at its top level (calling one constructs an object)
        self.class_names: Set[str] = set()
        #: the With statements that open a gradient tape, with the tape names they bind
        self.tape_blocks: List[Tuple[cst.With, Tuple[str, ...]]] = []
        #: region roots (an IndentedBlock of a tape body, or a function body) and their scope
        self.regions: Dict[cst.CSTNode, Scope] = {}
        #: subtrees that do not run while recording (stop_recording bodies, uncalled defs)
        self.excluded: Set[cst.CSTNode] = set()
        self.tape_names: Set[str] = set()
        #: the function that holds each tape body
        self.owner_of_block: Dict[cst.CSTNode, Function] = {}
        #: ``self.<attr> = <expr>`` in each class: what ``self.loss_fn(...)`` may call
        self.self_attributes: Dict[str, Dict[str, List[cst.BaseExpression]]] = {}
        #: the values passed as ``loss=`` to a ``.compile(...)`` call (Keras runs them under its tape)
        self.compiled_losses: List[cst.BaseExpression] = []
        #: how many times each name is read anywhere in the module (for "is every use a recorded call?")
        self.name_reads: Dict[str, int] = {}
        #: names each function (None: the module) tests for zero and leaves on: ``if n == 0: return ...``
        self.zero_checked: Dict[Optional[cst.FunctionDef], Set[str]] = {}
        #: ``_targets`` of each (name, result): the functions are known once the module is collected
        self._target_memo: Dict[Tuple[str, bool], List[Function]] = {}
        #: by node id, what ``qualify`` and ``resolve_callee`` answered: both are final once the module is
        #: collected (None until then), and the fixed point asks them again on every pass
        #: (each entry keeps its node: an id is unique only while its node lives)
        self._qualified: Optional[Dict[int, Tuple[cst.CSTNode, Optional[str]]]] = None
        self._callees: Dict[Tuple[int, int], Tuple[cst.CSTNode, List[Function]]] = {}
        #: the fixed point's clock: it ticks at every change, and ``_versions`` holds when each thing last did
        self._clock = 0
        self._versions: Dict[object, int] = {}
        #: while the fixed point runs a stretch of code: the keys its evaluation reads, each with the clock
        #: when it was first read there (else None)
        self._reading: Optional[Dict[object, int]] = None
        # One walk collects the module and records the fixed point's calls (``_infer`` replays them).
        self._recording: Optional[Recording] = Recording(module, _Binder, walking=_Collector(self))
        self._qualified = {}
        self._seed_entry_points()
        self._inferred = infer
        if infer:
            self._infer()
        self._find_regions()

    # ----------------------------------------------------------------- questions rules ask
    def qualify(self, node: cst.BaseExpression) -> Optional[str]:
        memo = self._qualified
        if memo is None:
            return self.imports.qualify(node)
        entry = memo.get(id(node))
        if entry is not None and entry[0] is node:
            return entry[1]
        found = self.imports.qualify(node)
        memo[id(node)] = (node, found)
        return found

    def is_numpy_call(self, call: cst.Call) -> Optional[str]:
        """The function name (``floor``) when ``call`` calls NumPy, else None."""
        name = self.qualify(call.func)
        if name is not None and name.startswith(NP + "."):
            return name[len(NP) + 1 :]
        return None

    def is_tf_call(self, call: cst.Call) -> Optional[str]:
        """The name under ``tensorflow.`` (``math.floor``) when ``call`` calls TensorFlow, else None."""
        name = self.qualify(call.func)
        if name is not None and name.startswith(TF + "."):
            return name[len(TF) + 1 :]
        return None

    def value(self, expr: cst.BaseExpression, function: Optional[Function]) -> Value:
        return _settled(_Evaluator(self, function).value(expr))

    def is_model(self, func: cst.BaseExpression, function: Optional[Function]) -> bool:
        """Whether ``func`` names a Keras model or layer (``model``, ``self.encoder``)."""
        return _Evaluator(self, function)._is_model(func)

    @property
    def tf_alias(self) -> Optional[str]:
        return self.imports.alias_for(TF)

    # ----------------------------------------------------------------- inference
    def env_chain(self, function: Optional[Function]) -> Iterator[Dict[str, Value]]:
        while function is not None:
            yield function.env
            function = function.parent
        yield self.module_env

    def _infer(self) -> None:
        # Flow-insensitive fixed point: bindings only ever gain taint, so this terminates; the cap
        # bounds pathological modules.
        # The tree does not change between passes: walk it once, replay the binder's calls after, and
        # on a later pass replay only the stretches of code whose inputs changed since they last ran.
        recording = self._recording or Recording(self.module, _Binder)
        self._recording = None  # replayed below, never again
        plan = _Plan(recording)
        for _ in range(6):
            changed = _Binder(self).bind_all(recording, plan)
            if not changed:
                break
        self._reading = None

    def _changed(self, key: object) -> None:
        """Note that what ``key`` names changed: ``(id(env), name)`` a name's value in an environment,
        ``(("class", class), attribute)`` a ``self`` attribute, ``("returns", id(function))``, ``("keras",
        name)`` whether a name holds a Keras object. The same keys are recorded as read (``_reading``)."""
        self._clock += 1
        self._versions[key] = self._clock

    def _seed_entry_points(self) -> None:
        """Functions that run under a tape without a tape block of this module: entry points given by the
        project, and losses passed to ``.compile(loss=...)`` here; their parameters take the given tensor-ness."""
        entries = list(self.entry_points)
        for expr in self.compiled_losses:
            local = self._local_loss(expr)
            if local is not None:
                entries.append(local)
        #: the functions entered from outside any tape block of this module
        self.entry_functions: List[Function] = []
        # A Keras model's own train_step calls compute_loss(x, y, y_pred, sample_weight) while its tape
        # records: an override runs there, with the model's output y_pred on the gradient path.
        for function in self.functions.values():
            if function.class_name and function.node.name.value == "compute_loss" and "y_pred" in function.params:
                self.entry_functions.append(function)
                function.env["y_pred"] = Value(True)
        for entry in entries:
            for function in self._targets(entry.function, entry.result):
                self.entry_functions.append(function)
                params = function.params[1:] if function.class_name else function.params
                on_path = {p for p, flag in zip(params, entry.positional) if flag}
                on_path.update(k for k in entry.keywords if k in params)
                for param in on_path:
                    old = function.env.get(param)
                    function.env[param] = Value(True) if old is None else old.join(Value(True))

    def _local_loss(self, expr: cst.BaseExpression) -> Optional[EntryPoint]:
        """The entry point for a ``loss=`` value naming a function or class of this module, else None."""
        result = isinstance(expr, cst.Call)
        name = expr.func if isinstance(expr, cst.Call) else expr
        if isinstance(name, cst.Name) and self._targets(name.value, result):
            return EntryPoint(name.value, KERAS_LOSS_ARGUMENTS, result=result)
        return None

    def _targets(self, name: str, result: bool) -> List[Function]:
        """The module-level function ``name``; with ``result``, what calling the value ``name(...)`` runs:
        the defs the function returns, or the ``call`` / ``__call__`` of the class ``name``."""
        key = (name, result)
        found = self._target_memo.get(key)
        if found is None:
            found = self._target_memo[key] = self._find_targets(name, result)
        return found

    def _find_targets(self, name: str, result: bool) -> List[Function]:
        top = [f for f in self.by_name.get(name, []) if f.parent is None and f.class_name is None]
        if not result:
            return top
        found = [
            f
            for f in self.functions.values()
            if f.class_name == name and f.node.name.value in ("call", "__call__") and f.parent is None
        ]
        for factory in top:
            returned = {
                node.value.value
                for node in _walk(factory.node.body)
                if isinstance(node, cst.Return) and isinstance(node.value, cst.Name)
            }
            found.extend(f for f in self.functions.values() if f.parent is factory and f.node.name.value in returned)
        return found

    def _find_regions(self) -> None:
        for with_node, names in self.tape_blocks:
            self.regions[with_node.body] = Scope.DIRECT
            self.tape_names.update(names)
        for entered in self.entry_functions:
            if entered.node.body not in self.excluded:
                self.regions.setdefault(entered.node.body, Scope.THROUGH_CALL)
        # Functions called from recorded code, transitively.
        work: List[Tuple[cst.CSTNode, Scope]] = list(self.regions.items())
        seen: Set[cst.CSTNode] = set()
        #: for each function body reached through a call: the calls that reach it and the region each is in
        reached_by: Dict[cst.CSTNode, List[Tuple[cst.Call, cst.CSTNode]]] = {}
        while work:
            root, scope = work.pop()
            if root in seen:
                continue
            seen.add(root)
            for node, function in _recorded_calls(self, root):
                for callee in self.resolve_callee(node, function):
                    body = callee.node.body
                    if body in self.excluded:
                        continue
                    reached_by.setdefault(body, []).append((node, root))
                    # A def nested in the recording code runs only there: it is as direct as its caller.
                    nested = function is not None and callee.parent is function and scope is Scope.DIRECT
                    new_scope = Scope.DIRECT if nested else Scope.THROUGH_CALL
                    if self.regions.get(body) is Scope.DIRECT:
                        continue
                    self.regions[body] = new_scope
                    work.append((body, new_scope))
        self._promote_private_functions(reached_by)

    def _promote_private_functions(self, reached_by: Dict[cst.CSTNode, List[Tuple[cst.Call, cst.CSTNode]]]) -> None:
        """A private function (``_name``) whose every use in the module is a call from a tape block runs only
        while a tape records: a fix there is as safe as one in the block. Any other use (a call outside a
        tape, a reference passed around, an entry from another module) keeps it THROUGH_CALL."""
        entered = {f.node.body for f in self.entry_functions}
        changed = True
        while changed:
            changed = False
            for body, calls in reached_by.items():
                if self.regions.get(body) is not Scope.THROUGH_CALL or body in entered:
                    continue
                function = next((f for f in self.functions.values() if f.node.body is body), None)
                if function is None or function.class_name is not None:
                    continue
                name = function.node.name.value
                if not name.startswith("_") or name.startswith("__") or len(self.by_name.get(name, [])) != 1:
                    continue
                by_name = [c for c, _ in calls if isinstance(c.func, cst.Name) and c.func.value == name]
                # Each def reads its own name once (the def statement's name node).
                uses = self.name_reads.get(name, 0) - 1
                if len(by_name) == len(calls) == uses and all(self.regions.get(r) is Scope.DIRECT for _, r in calls):
                    self.regions[body] = Scope.DIRECT
                    changed = True

    def external_calls(self, wanted: Optional[Callable[[str], bool]] = None) -> List[EntryPoint]:
        """Calls from recorded code (and ``compile(loss=...)`` values) whose callee this module does not
        define, named as written, with the tensor-ness of their arguments: the project index resolves them
        to functions of other modules. ``wanted`` keeps only callees the caller can follow."""
        found: List[EntryPoint] = []
        for expr in self.compiled_losses:
            if self._local_loss(expr) is None:
                result = isinstance(expr, cst.Call)
                name = dotted(expr.func if isinstance(expr, cst.Call) else expr)
                if name is not None and (wanted is None or wanted(name)):
                    found.append(EntryPoint(name, KERAS_LOSS_ARGUMENTS, result=result))
        calls: List[Tuple[cst.Call, Optional[Function], str, bool]] = []
        for root in self.regions:
            for call, function in _recorded_calls(self, root):
                if self.resolve_callee(call, function):
                    continue
                for name, result in self._external_callee(call, function):
                    if is_under(self.imports.bindings.get(name.split(".")[0]), (TF, NP) + KERAS):
                        continue
                    if wanted is None or wanted(name):
                        calls.append((call, function, name, result))
        if calls and not self._inferred:
            self._inferred = True
            self._infer()
        for call, function, name, result in calls:
            positional: List[bool] = []
            for arg in call.args:
                if arg.star or arg.keyword is not None:
                    break
                positional.append(self.value(arg.value, function).on_path)
            keywords = tuple(
                arg.keyword.value
                for arg in call.args
                if arg.keyword is not None and self.value(arg.value, function).on_path
            )
            found.append(EntryPoint(name, tuple(positional), keywords, result))
        return list(dict.fromkeys(found))

    def _external_callee(self, call: cst.Call, function: Optional[Function]) -> List[Tuple[str, bool]]:
        """The dotted callee of ``call`` as written (``losses.focal_loss``), or what ``self.loss_fn`` was
        assigned from (``focal_loss``, or ``FocalLoss`` with result=True for ``FocalLoss()``)."""
        func = call.func
        name = dotted(func)
        if name is None:
            return []
        head, _, attr = name.partition(".")
        if head != "self":
            scope = function
            while scope is not None:
                if head in scope.params:
                    return []  # a parameter (``loss_fn(y, p)``), not the module's import
                if head in scope.defs:
                    # ``quantizer = DoReFa(k_bit=2)`` then ``quantizer(x)``: what the value was made from
                    return [] if attr else _made_from(scope.defs[head])
                scope = scope.parent
            if head in self.module_defs and not attr:
                return _made_from(self.module_defs[head])
            return [(name, False)]
        owner = _class_of(function)
        if owner is not None and attr and "." not in attr:
            return _made_from(self.self_attributes.get(owner, {}).get(attr, []))
        return []

    def resolve_callee(self, call: cst.Call, caller: Optional[Function]) -> List[Function]:
        """Functions of this module that ``call`` may run."""
        if self._qualified is None:
            return self._resolve_callee(call, caller)
        key = (id(call), id(caller))
        entry = self._callees.get(key)
        if entry is not None and entry[0] is call:
            return entry[1]
        found = self._resolve_callee(call, caller)
        self._callees[key] = (call, found)
        return found

    def _resolve_callee(self, call: cst.Call, caller: Optional[Function]) -> List[Function]:
        func = call.func
        if isinstance(func, cst.Name):
            found = self.by_name.get(func.value, [])
            # Prefer a def visible from the caller (nested), then a module-level one.
            visible = [f for f in found if f.parent is None or encloses(f.parent, caller)]
            defs = [f for f in visible if f.class_name is None]
            if defs:
                return defs
            # ``loss_object = FocalLoss()`` (or ``= focal_loss``) then ``loss_object(y, p)``
            made: List[Function] = []
            for source, result in _made_from(self.definitions(func.value, caller)):
                if "." not in source:
                    made.extend(self._targets(source, result))
            return made
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            owner = caller.class_name if caller is not None else None
            while caller is not None and owner is None:
                caller = caller.parent
                owner = caller.class_name if caller is not None else None
            if owner is None:
                return []
            methods = [f for f in self.by_name.get(func.attr.value, []) if f.class_name == owner]
            if methods:
                return methods
            # ``self.loss_fn = focal_loss`` (or ``= FocalLoss()``) then ``self.loss_fn(y, p)``
            assigned: List[Function] = []
            for expr in self.self_attributes.get(owner, {}).get(func.attr.value, []):
                result = isinstance(expr, cst.Call)
                name = expr.func if isinstance(expr, cst.Call) else expr
                if isinstance(name, cst.Name):
                    assigned.extend(self._targets(name.value, result))
            return assigned
        return []

    def function_of(self, node: cst.FunctionDef) -> Optional[Function]:
        return self.functions.get(node)

    def definitions(self, name: str, function: Optional[Function]) -> List[cst.BaseExpression]:
        """The expressions assigned to ``name`` in the nearest scope that assigns it."""
        while function is not None:
            if name in function.defs:
                return function.defs[name]
            if name in function.params:
                return []
            function = function.parent
        return self.module_defs.get(name, [])


def _made_from(values: Sequence[cst.BaseExpression]) -> List[Tuple[str, bool]]:
    """What calling a value assigned from ``values`` runs, as (dotted name, result): ``focal_loss`` for
    ``= focal_loss``, (``FocalLoss``, True) for ``= FocalLoss()``."""
    out: List[Tuple[str, bool]] = []
    for expr in values:
        result = isinstance(expr, cst.Call)
        assigned = dotted(expr.func if isinstance(expr, cst.Call) else expr)
        if assigned is not None and not assigned.startswith("self."):
            out.append((assigned, result))
    return out


def _class_of(function: Optional[Function]) -> Optional[str]:
    while function is not None:
        if function.class_name is not None:
            return function.class_name
        function = function.parent
    return None


def _walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Every node under ``node``, not entering nested defs, lambdas or classes."""
    for child in children(node):
        yield child
        if not isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            yield from _walk(child)


def encloses(parent: Function, caller: Optional[Function]) -> bool:
    """Whether ``parent`` is ``caller`` or a function around it."""
    while caller is not None:
        if caller is parent:
            return True
        caller = caller.parent
    return False


def _recorded_calls(analysis: ModuleAnalysis, root: cst.CSTNode) -> List[Tuple[cst.Call, Optional[Function]]]:
    """Calls that run while a tape records inside ``root`` (not in excluded subtrees or uncalled defs)."""
    collector = _RecordedCalls(analysis, root)
    walk(root, collector)
    return collector.calls


class _RecordedCalls(cst.CSTVisitor):
    """The calls below one region root. A module-level class: walk.py caches method tables per
    visitor class, so a class made per call would keep every analysis alive."""

    def __init__(self, analysis: ModuleAnalysis, root: cst.CSTNode) -> None:
        super().__init__()
        self.analysis = analysis
        self.root = root
        self.owner = _owner_function(analysis, root)
        self.calls: List[Tuple[cst.Call, Optional[Function]]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if node in self.analysis.excluded:
            return False
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node is not self.root:
            return False
        if isinstance(node, cst.Call):
            self.calls.append((node, self.owner))
        return True


def _owner_function(analysis: ModuleAnalysis, root: cst.CSTNode) -> Optional[Function]:
    for function in analysis.functions.values():
        if function.node.body is root:
            return function
    return analysis.owner_of_block.get(root)


class _Collector(cst.CSTVisitor):
    """One walk: imports, functions, tape blocks, stop_recording bodies."""

    def __init__(self, analysis: ModuleAnalysis) -> None:
        super().__init__()
        self.a = analysis
        self.function_stack: List[Function] = []
        self.class_stack: List[str] = []
        #: "def" or "class" for each enclosing scope, innermost last
        self.scope_kinds: List[str] = []
        self.tape_vars: Set[str] = set()

    def _current(self) -> Optional[Function]:
        return self.function_stack[-1] if self.function_stack else None

    def visit_Import(self, node: cst.Import) -> None:
        self.a.imports.add_import(node, not self.function_stack)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.a.imports.add_import(node, not self.function_stack)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if not self.class_stack and not self.function_stack:
            self.a.class_names.add(node.name.value)
        self.class_stack.append(node.name.value)
        self.scope_kinds.append("class")

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.class_stack.pop()
        self.scope_kinds.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        parent = self._current()
        # A method is a def whose innermost enclosing scope is a class body.
        class_name = self.class_stack[-1] if self._in_class_body() else None
        params = [p.name.value for p in _all_params(node.params)]
        qual = f"{class_name}.{node.name.value}" if class_name else node.name.value
        function = Function(node, qual, params, class_name, parent, {})
        self.a.functions[node] = function
        self.a.by_name.setdefault(node.name.value, []).append(function)
        self.function_stack.append(function)
        self.scope_kinds.append("def")
        # A tf.custom_gradient function gives its own gradient: the tape records it as one op and never
        # differentiates the ops of its body (a rounding there is the point of a straight-through estimator).
        if any(self.a.qualify(_decorator_name(d.decorator)) in CUSTOM_GRADIENT for d in node.decorators):
            self.a.excluded.add(node.body)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_stack.pop()
        self.scope_kinds.pop()

    def _in_class_body(self) -> bool:
        return bool(self.scope_kinds) and self.scope_kinds[-1] == "class"

    def visit_Name(self, node: cst.Name) -> None:
        self.a.name_reads[node.value] = self.a.name_reads.get(node.value, 0) + 1

    def visit_Assign(self, node: cst.Assign) -> None:
        current = self._current()
        defs = current.defs if current is not None else self.a.module_defs
        # ``keras = tf.keras``, ``K = tf.keras.backend``: a module-level alias of a module is an import.
        if current is None and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            aliased = self.a.qualify(node.value) if isinstance(node.value, (cst.Name, cst.Attribute)) else None
            if aliased is not None and is_under(aliased, (TF, NP) + KERAS):
                self.a.imports.add(node.targets[0].target.value, aliased, True)
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                defs.setdefault(target.target.value, []).append(node.value)
            elif (
                isinstance(target.target, cst.Attribute)
                and isinstance(target.target.value, cst.Name)
                and target.target.value.value == "self"
                and self.class_stack
                and current is not None
            ):
                attrs = self.a.self_attributes.setdefault(self.class_stack[-1], {})
                attrs.setdefault(target.target.attr.value, []).append(node.value)
        # ``tape = tf.GradientTape()`` then ``with tape:``
        if isinstance(node.value, cst.Call) and self.a.qualify(node.value.func) in GRADIENT_TAPES:
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.tape_vars.add(target.target.value)

    def visit_Call(self, node: cst.Call) -> None:
        # What tf.stop_gradient computes is not recorded for the gradient.
        if self.a.qualify(node.func) in STOP_GRADIENT:
            self.a.excluded.update(arg for arg in node.args)
        # Keras's train step calls the loss given to compile() while its tape records.
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "compile":
            for arg in node.args:
                if arg.keyword is not None and arg.keyword.value == "loss":
                    self.a.compiled_losses.extend(_loss_values(arg.value))

    def visit_If(self, node: cst.If) -> None:
        # ``if normalizer == 0: return ...``: the author handled the zero case before dividing.
        name = _zero_tested(node.test)
        body = node.body.body if isinstance(node.body, cst.IndentedBlock) else ()
        last = body[-1] if body else None
        if isinstance(last, cst.SimpleStatementLine):
            leaves = any(isinstance(s, (cst.Return, cst.Raise)) for s in last.body)
        else:
            leaves = False
        if name is not None and leaves:
            current = self._current()
            self.a.zero_checked.setdefault(current.node if current else None, set()).add(name)

    def visit_With(self, node: cst.With) -> None:
        names: List[str] = []
        is_tape = False
        for item in node.items:
            expr = item.item
            opens_tape = (isinstance(expr, cst.Call) and self.a.qualify(expr.func) in GRADIENT_TAPES) or (
                isinstance(expr, cst.Name) and expr.value in self.tape_vars
            )
            if opens_tape:
                is_tape = True
                if item.asname is not None and isinstance(item.asname.name, cst.Name):
                    names.append(item.asname.name.value)
                elif isinstance(expr, cst.Name):
                    names.append(expr.value)
            elif (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value == "stop_recording"
            ):
                self.a.excluded.add(node.body)
        if is_tape:
            self.a.tape_blocks.append((node, tuple(names)))
            # ``with tape:`` later resumes recording on the same tape (a loss scaled after the first block).
            self.tape_vars.update(names)
            current = self._current()
            if current is not None:
                self.a.owner_of_block[node.body] = current


def _zero_tested(test: cst.BaseExpression) -> Optional[str]:
    """``n`` for the tests ``n == 0``, ``0 == n``, ``n <= 0``, ``not n``; else None."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return test.expression.value if isinstance(test.expression, cst.Name) else None
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        left, target = test.left, test.comparisons[0]
        right, operator = target.comparator, target.operator
        zero = (cst.Integer, cst.Float)
        if isinstance(left, cst.Name) and isinstance(right, zero) and float(right.evaluated_value) == 0:
            return left.value if isinstance(operator, (cst.Equal, cst.LessThanEqual)) else None
        if isinstance(right, cst.Name) and isinstance(left, zero) and float(left.evaluated_value) == 0:
            return right.value if isinstance(operator, (cst.Equal, cst.GreaterThanEqual)) else None
    return None


def _decorator_name(decorator: cst.BaseExpression) -> cst.BaseExpression:
    """``tf.custom_gradient`` for ``@tf.custom_gradient`` and ``@tf.custom_gradient(...)``."""
    return decorator.func if isinstance(decorator, cst.Call) else decorator


def _loss_values(expr: cst.BaseExpression) -> List[cst.BaseExpression]:
    """The losses in a ``loss=`` value: a name, a call (``focal_loss(gamma=2)``), or a list or dict of them."""
    if isinstance(expr, (cst.List, cst.Tuple)):
        return [v for e in expr.elements for v in _loss_values(e.value)]
    if isinstance(expr, cst.Dict):
        return [v for e in expr.elements if isinstance(e, cst.DictElement) for v in _loss_values(e.value)]
    if isinstance(expr, (cst.Name, cst.Attribute)) or (
        isinstance(expr, cst.Call) and isinstance(expr.func, (cst.Name, cst.Attribute))
    ):
        return [expr]
    return []


def _all_params(params: cst.Parameters) -> List[cst.Param]:
    out = list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
    if isinstance(params.star_arg, cst.Param):
        out.append(params.star_arg)
    if params.star_kwarg is not None:
        out.append(params.star_kwarg)
    return out


class _Binder(cst.CSTVisitor):
    """One pass of the fixed point: bind names to Values in every function and the module."""

    def __init__(self, analysis: ModuleAnalysis) -> None:
        super().__init__()
        self.a = analysis
        self.stack: List[Function] = []
        self.classes: List[str] = []
        self.changed = False

    def bind_all(self, recording: Optional[Recording] = None, plan: Optional[_Plan] = None) -> bool:
        if recording is None:
            walk(self.a.module, self)
        elif plan is None:
            recording.replay(self)
        else:
            analysis = self.a
            versions = analysis._versions
            boundary, reads = plan.boundary, plan.reads
            for index, (handler, node, _) in enumerate(recording.calls):
                if not boundary[index]:
                    read = reads[index]
                    if read is not None and all(versions.get(key, 0) <= when for key, when in read.items()):
                        continue  # nothing it read has changed since: it would bind nothing new
                    analysis._reading = reads[index] = {}
                handler(self, node)
                analysis._reading = None
        return self.changed

    def _function(self) -> Optional[Function]:
        return self.stack[-1] if self.stack else None

    def _env(self) -> Dict[str, Value]:
        function = self._function()
        return function.env if function is not None else self.a.module_env

    def _bind(
        self, name: str, value: Value, env: Optional[Dict[str, Value]] = None, key: Optional[object] = None
    ) -> None:
        env = self._env() if env is None else env
        old = env.get(name)
        new = value if old is None else old.join(value)
        if old != new:
            env[name] = new
            self.changed = True
            self.a._changed((key if key is not None else id(env), name))

    def _value(self, expr: cst.BaseExpression) -> Value:
        return _Evaluator(self.a, self._function()).value(expr)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.classes.append(node.name.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.classes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.stack.append(self.a.functions[node])

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.stack.pop()

    def _bind_target(self, target: cst.BaseExpression, value: Value) -> None:
        if isinstance(target, cst.Name):
            self._bind(target.value, value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            # ``loss, weights = f(...)`` where f returns a tuple: each name takes its own element.
            exact = len(value.elements) == len(target.elements) and not any(
                isinstance(e, cst.StarredElement) for e in target.elements
            )
            for index, element in enumerate(target.elements):
                part = value.elements[index] if exact else Value(value.on_path, Shape.UNKNOWN, value.numpy)
                self._bind_target(element.value, part)
        elif isinstance(target, cst.StarredElement):
            self._bind_target(target.value, value)
        elif (
            isinstance(target, cst.Attribute)
            and isinstance(target.value, cst.Name)
            and target.value.value == "self"
            and self.classes
        ):
            attrs = self.a.class_attrs.setdefault(self.classes[-1], {})
            self._bind(target.attr.value, value, attrs, ("class", self.classes[-1]))

    def visit_Assign(self, node: cst.Assign) -> None:
        value = self._value(node.value)
        keras = self._is_keras_object(node.value)
        for target in node.targets:
            self._bind_target(target.target, value)
            if keras:
                name = dotted(target.target)
                if name is not None and name not in self.a.keras_objects:
                    self.a.keras_objects.add(name)
                    self.changed = True
                    self.a._changed(("keras", name))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind_target(node.target, self._value(node.value))

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        value = self._value(node.value)
        if isinstance(node.target, cst.Name):
            self._bind(node.target.value, Value(value.on_path, value.shape))

    def visit_For(self, node: cst.For) -> None:
        value = self._value(node.iter)
        # Iterating a tensor yields its slices; iterating range() or a list of Python values does not.
        self._bind_target(node.target, Value(value.on_path, Shape.UNKNOWN))

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "watch" and node.args:
            receiver = dotted(func.value)
            if receiver is not None:
                self._mark_source(node.args[0].value)
        if isinstance(func, cst.Attribute) and func.attr.value in GRADIENT_METHODS and len(node.args) >= 2:
            self._mark_source(node.args[1].value)
        # ``losses.append(loss)``: a list that collects tensors on the path holds them (tensorflow#30190).
        if isinstance(func, cst.Attribute) and func.attr.value in _COLLECT_METHODS and isinstance(func.value, cst.Name):
            collected = [self._value(arg.value) for arg in node.args if arg.keyword is None and not arg.star]
            if any(v.on_path for v in collected):
                name = func.value.value
                env = next((e for e in self.a.env_chain(self._function()) if _has(self.a, e, name)), None)
                self._bind(name, Value(True, Shape.UNKNOWN), env)
        # Parameters of the module's own functions take the values they are called with.
        for callee in self.a.resolve_callee(node, self._function()):
            params = callee.params[1:] if callee.class_name else callee.params
            for param, arg in zip(params, node.args):
                if arg.star or arg.keyword is not None:
                    continue
                self._bind(param, self._value(arg.value), callee.env)
            for arg in node.args:
                if arg.keyword is not None and arg.keyword.value in callee.params:
                    self._bind(arg.keyword.value, self._value(arg.value), callee.env)

    def visit_Return(self, node: cst.Return) -> None:
        function = self._function()
        if function is not None and node.value is not None:
            value = self._value(node.value)
            # The first return sets the value and later ones join it. (Testing ``returns != NOTHING``
            # instead flip-flopped when a function returns both NOTHING and something else, so every
            # such module ran the full six passes.)
            new = function.returns.join(value) if function.returned else value
            function.returned = True
            if new != function.returns:
                function.returns = new
                self.changed = True
                self.a._changed(("returns", id(function)))

    def _mark_source(self, expr: cst.BaseExpression) -> None:
        elements: Sequence[cst.BaseExpression]
        if isinstance(expr, (cst.List, cst.Tuple)):
            elements = [e.value for e in expr.elements]
        else:
            elements = [expr]
        for element in elements:
            if isinstance(element, cst.Name):
                current = self._lookup(element.value)
                shape = current.shape if current is not None else Shape.UNKNOWN
                self._bind(element.value, Value(True, shape), self._scope_of(element.value))

    def _scope_of(self, name: str) -> Dict[str, Value]:
        """The environment ``name`` belongs to where it is used: the nearest function that binds it (a
        parameter, an assignment), else the module. (A watched parameter is that function's own.)"""
        function = self._function()
        while function is not None:
            if _has(self.a, function.env, name) or name in function.params or name in function.defs:
                return function.env
            function = function.parent
        return self.a.module_env

    def _lookup(self, name: str) -> Optional[Value]:
        return _lookup(self.a, self._function(), name)

    def _is_keras_object(self, expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Call):
            return False
        name = self.a.qualify(expr.func)
        if not is_under(name, KERAS) or name is None:
            return False
        last = name.rsplit(".", 1)[-1]
        return last[:1].isupper()


class _Plan:
    """How the fixed point replays the binder's recorded calls: a call is replayed on a later pass only
    when something it read last time has changed since it read it. Every read of the evaluator goes
    through ``_lookup``, ``_has``, ``_returned`` or notes its key itself, and what a call binds is a join
    of what it read, so with the same reads it would bind nothing new. The def and class boundaries
    always run: they keep the binder's stacks."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        boundaries = {getattr(_Binder, name) for name in _BOUNDARIES}
        #: per recorded call: None for a boundary, else whether it has run
        self.boundary = [handler in boundaries for handler, _, _ in recording.calls]
        #: per recorded call, the keys it read when it last ran (as ``ModuleAnalysis._changed`` takes them),
        #: each with the clock when it first read it (None: it has not run)
        self.reads: List[Optional[Dict[object, int]]] = [None] * len(recording.calls)


_BOUNDARIES = ("visit_FunctionDef", "leave_FunctionDef", "visit_ClassDef", "leave_ClassDef")


class _Evaluator:
    def __init__(self, analysis: ModuleAnalysis, function: Optional[Function]) -> None:
        self.a = analysis
        self.function = function

    def lookup(self, name: str) -> Optional[Value]:
        return _lookup(self.a, self.function, name)

    def _bound_somewhere(self, name: str) -> bool:
        """Whether the module binds ``name`` where this code reads it (a parameter or an assignment of an
        enclosing function, or of the module): unbound so far means not yet, not never."""
        function = self.function
        while function is not None:
            if name in function.params or name in function.defs:
                return True
            function = function.parent
        return name in self.a.module_defs

    def value(self, expr: cst.BaseExpression) -> Value:
        # By class, not isinstance: libcst's classes are ABCs, and isinstance pays for each miss.
        kind = type(expr)
        if kind is cst.Integer or kind is cst.Float:
            return Value(False, Shape.SCALAR)
        if kind is cst.Name:
            found = self.lookup(expr.value)
            if found is not None:
                return found
            return PENDING if self._bound_somewhere(expr.value) else NOTHING
        if kind is cst.Attribute:
            if expr.attr.value in _NO_PATH_ATTRIBUTES:
                return NOTHING
            if isinstance(expr.value, cst.Name) and expr.value.value == "self":
                owner = self._class_name()
                if owner is not None:
                    if self.a._reading is not None:
                        self.a._reading.setdefault((("class", owner), expr.attr.value), self.a._clock)
                    return self.a.class_attrs.get(owner, {}).get(expr.attr.value, NOTHING)
                return NOTHING
            if self.a.qualify(expr) is not None:
                return NOTHING  # a module attribute such as np.pi
            inner = self.value(expr.value)
            return Value(inner.on_path, Shape.UNKNOWN)
        if kind is cst.Subscript:
            inner = self.value(expr.value)
            return Value(inner.on_path, Shape.UNKNOWN, inner.numpy)
        if kind is cst.BinaryOperation:
            left, right = self.value(expr.left), self.value(expr.right)
            return Value(left.on_path or right.on_path, _broadcast(left.shape, right.shape), left.numpy or right.numpy)
        if kind is cst.UnaryOperation:
            if isinstance(expr.operator, cst.Not):
                return NOTHING
            return self.value(expr.expression)
        if kind is cst.IfExp:
            return self.value(expr.body).join(self.value(expr.orelse))
        if kind is cst.Tuple or kind is cst.List:
            values = [self.value(e.value) for e in expr.elements]
            known = not any(isinstance(e, cst.StarredElement) for e in expr.elements)
            return Value(any(v.on_path for v in values), Shape.UNKNOWN, elements=tuple(values) if known else ())
        if kind is cst.Call:
            return self.call(expr)
        return NOTHING

    def _class_name(self) -> Optional[str]:
        function = self.function
        while function is not None:
            if function.class_name is not None:
                return function.class_name
            function = function.parent
        return None

    def _args(self, call: cst.Call) -> List[Value]:
        return [self.value(arg.value) for arg in call.args]

    def call(self, call: cst.Call) -> Value:
        name = self.a.qualify(call.func)
        args = self._args(call)
        any_path = any(v.on_path for v in args)
        first = args[0] if args else NOTHING
        if name is not None and name.startswith(TF + "."):
            short = name[len(TF) + 1 :]
            if short == "Variable":
                return Value(True, _literal_shape(call))
            if short in ("constant", "convert_to_tensor"):
                return Value(any_path, _literal_shape(call) if not any_path else first.shape)
            if short.startswith("reduce_") or short.startswith("math.reduce_") or short in ("norm", "linalg.norm"):
                has_axis = len(call.args) > 1 or any(
                    a.keyword is not None and a.keyword.value == "axis" for a in call.args
                )
                return Value(any_path, Shape.UNKNOWN if has_axis else Shape.SCALAR)
            if short in _TF_NO_PATH or short.split(".")[0] in _TF_NO_PATH:
                return NOTHING
            if is_under(name, KERAS):
                return NOTHING  # a Keras constructor or function: an object, not a tensor on the path
            if short in _TF_AT_LEAST_2D:
                return Value(any_path, Shape.NONSCALAR)
            shape = first.shape if short.startswith(_TF_ELEMENTWISE_HINT) else Shape.UNKNOWN
            return Value(any_path, shape)
        if name is not None and name.startswith(NP + "."):
            short = name[len(NP) + 1 :]
            shape = first.shape if not short.startswith(("sum", "mean", "max", "min", "prod", "std")) else Shape.UNKNOWN
            return Value(any_path, shape, numpy=True)
        if name is not None and is_under(name, KERAS):
            return Value(any_path, first.shape)  # keras.ops.* and friends
        func = call.func
        callees = self.a.resolve_callee(call, self.function)
        called = dotted(func)
        if callees and called is not None and all(f.node.name.value == called.rsplit(".", 1)[-1] for f in callees):
            # A def of this module is what it returns, whatever its name: ``self._build_model()`` returns a
            # model, not a model's output.
            return _returned(callees, self.a)
        if isinstance(func, cst.Attribute):
            receiver = self.value(func.value)
            method = func.attr.value
            if method in _NUMPY_VALUE_METHODS:
                return Value(receiver.on_path, receiver.shape, numpy=True)
            if method in _NO_PATH_METHODS:
                return NOTHING
            if self._is_model(func):
                return Value(True, Shape.NONSCALAR)
            if receiver.on_path and method not in GRADIENT_METHODS:
                return Value(True, Shape.UNKNOWN)
        if self._is_model(func):
            return Value(True, Shape.NONSCALAR)
        if callees:
            return _returned(callees, self.a)
        return NOTHING

    def _is_model(self, func: cst.BaseExpression) -> bool:
        """A call of a Keras model or layer: ``model(x)``, ``self(x)``, ``self.dense(x)``, ``self.model(x)``."""
        name = dotted(func)
        if name is None:
            return False
        if name == "self":
            return True
        reading = self.a._reading
        if reading is not None:
            reading.setdefault(("keras", name), self.a._clock)
        if name in self.a.keras_objects:
            return True
        last = name.rsplit(".", 1)[-1].lower()
        if name.startswith("self.") and name.count(".") == 1:
            owner = self._class_name()
            attr = name.split(".", 1)[1]
            if reading is not None:
                reading.setdefault(("keras", f"self.{attr}"), self.a._clock)
            if owner is not None and f"self.{attr}" in self.a.keras_objects:
                return True
        if self.a.qualify(func) is not None:
            return False
        if self.lookup(name.split(".")[0]) is not None and "." not in name:
            return False  # a local value with a known binding that is not a model
        return any(word in last for word in _MODEL_WORDS)


def _lookup(analysis: ModuleAnalysis, function: Optional[Function], name: str) -> Optional[Value]:
    """``name``'s value in the nearest environment of ``function`` (or the module) that binds it."""
    reading = analysis._reading
    for env in analysis.env_chain(function):
        if reading is not None:
            reading.setdefault((id(env), name), analysis._clock)
        if name in env:
            return env[name]
    return None


def _has(analysis: ModuleAnalysis, env: Dict[str, Value], name: str) -> bool:
    """``name in env``, noted as read while the fixed point runs a stretch of code."""
    if analysis._reading is not None:
        analysis._reading.setdefault((id(env), name), analysis._clock)
    return name in env


def _returned(callees: Sequence[Function], analysis: Optional[ModuleAnalysis] = None) -> Value:
    """What a call of one of ``callees`` returns."""
    if analysis is not None and analysis._reading is not None:
        for callee in callees:
            analysis._reading.setdefault(("returns", id(callee)), analysis._clock)
    result = NOTHING
    for callee in callees:
        result = result.join(callee.returns) if result != NOTHING else callee.returns
    return Value(result.on_path, result.shape, result.numpy, result.elements)


def _broadcast(a: Shape, b: Shape) -> Shape:
    if Shape.NONSCALAR in (a, b):
        return Shape.NONSCALAR
    if a is Shape.SCALAR and b is Shape.SCALAR:
        return Shape.SCALAR
    if Shape.PENDING in (a, b):
        return Shape.PENDING
    return Shape.UNKNOWN


def _settled(value: Value) -> Value:
    """``value`` as the model answers it: a shape still pending is unknown."""
    if value.shape is not Shape.PENDING and not any(e.shape is Shape.PENDING for e in value.elements):
        return value
    shape = Shape.UNKNOWN if value.shape is Shape.PENDING else value.shape
    return Value(value.on_path, shape, value.numpy, tuple(_settled(e) for e in value.elements))


def _literal_shape(call: cst.Call) -> Shape:
    if not call.args:
        return Shape.UNKNOWN
    arg = call.args[0].value
    while isinstance(arg, cst.UnaryOperation):
        arg = arg.expression
    if isinstance(arg, (cst.Integer, cst.Float)):
        return Shape.SCALAR
    if isinstance(arg, (cst.List, cst.Tuple)):
        return Shape.NONSCALAR
    return Shape.UNKNOWN
