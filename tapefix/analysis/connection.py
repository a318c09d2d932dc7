"""Whether a gradient call's target is connected to its sources through what the tape recorded.

A tape records only the operations that run inside its ``with`` block. ``tape.gradient(target,
sources)`` is ``None`` for a source when no recorded operation leads from it to the target: the
forward pass ran before the block (``y = w * x`` above ``with``, a model output computed first, a loss
passed into the function that opens the tape), or the only way from the source to the target is cut
(``tf.stop_gradient``, ``argmax``, a comparison, ``.numpy()``), or the target does not use the source
at all.

``target_connection`` follows the target backwards through what the block assigns, into the module's
own functions and lambdas it calls (arguments into parameters, closures), and stops at the names the
block reads but does not assign: the values that existed before the block. Such a value is connected
only when it *is* a source (or may be one); a tensor computed before the block is a constant to the
tape. Whatever tapefix cannot see through (a model or layer call, a method of an object, a function
of another module, ``self.attr``) counts as connected, so the answer "disconnected" is a proof up to
the module's own code, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, Union

import libcst as cst

from tapefix.analysis.expressions import call_sites
from tapefix.analysis.names import is_under
from tapefix.analysis.reaching import reaching
from tapefix.analysis.scope import KERAS, NP, STOP_GRADIENT, TF, Function, ModuleAnalysis
from tapefix.analysis.syntax import assigned_in, bind_arguments, is_integer_dtype, keyword, walk
from tapefix.analysis.tfops import CUT_OPS, WEIGHTLESS_LAYERS

# Builtins that give a plain Python value with no tensor in it.
_BUILTIN_CUT = {"len", "range", "isinstance", "type", "id", "str", "repr", "bool", "int", "float", "print", "hash"}
# Builtins that pass their arguments' values on.
_BUILTIN_PASS = {"list", "tuple", "sum", "min", "max", "abs", "zip", "sorted", "reversed", "dict", "enumerate", "pow"}
_NO_VALUE_ATTRIBUTES = {"shape", "dtype", "name", "device", "ndim"}
_VALUE_METHODS = {"numpy", "item", "tolist"}
_CONSTANT_NAMES = {"True", "False", "None"}
_MAX_DEPTH = 4
_GLOBAL_STATEMENT = re.compile(r"^[ \t]*(global|nonlocal)[ \t]", re.MULTILINE)

Scope = Optional[Function]


@dataclass
class _Deps:
    """What an expression's value is made of, seen from the tape."""

    #: names read but not assigned in the region followed (with the scope that reads them)
    leaves: Set[Tuple[str, int]] = field(default_factory=set)
    #: something tapefix cannot see through: may be connected
    unknown: bool = False
    #: cuts met on the way (``tf.stop_gradient``, a comparison, ``.numpy()``)
    cuts: Set[str] = field(default_factory=set)

    def add(self, other: _Deps) -> None:
        self.leaves |= other.leaves
        self.unknown = self.unknown or other.unknown
        self.cuts |= other.cuts


@dataclass(frozen=True)
class Disconnected:
    """The proof that a target does not reach a source through the tape."""

    #: names of tensors computed before the block that the target reads (the forward pass outside the tape)
    before: Tuple[str, ...]
    #: the cuts on the way from the sources (``tf.stop_gradient``, ``argmax``, a comparison)
    cuts: Tuple[str, ...]


class _Frame:
    """One region being followed: a tape block or a function body, with its own assignments."""

    def __init__(
        self,
        scope: Scope,
        assigned: Dict[str, List[cst.BaseExpression]],
        params: Dict[str, _Deps],
        body: Optional[cst.CSTNode] = None,
    ) -> None:
        self.scope = scope
        self.assigned = assigned
        self.params = params
        self.body = body
        self._mutated: Optional[Dict[str, List[cst.BaseExpression]]] = None
        self._first: Optional[Dict[str, Tuple[cst.CSTNode, List[cst.Name]]]] = None

    def first_mentions(self) -> Dict[str, Tuple[cst.CSTNode, List[cst.Name]]]:
        """For each name, the first statement of the body that mentions it, and its mentions there."""
        if self._first is None:
            found: Dict[str, Tuple[cst.CSTNode, List[cst.Name]]] = {}
            if isinstance(self.body, cst.IndentedBlock):
                for statement in self.body.body:
                    here: Dict[str, List[cst.Name]] = {}
                    for node in walk(statement):
                        if isinstance(node, cst.Name) and node.value not in found:
                            here.setdefault(node.value, []).append(node)
                    for name, mentions in here.items():
                        found[name] = (statement, mentions)
            self._first = found
        return self._first

    def mutated(self, root: Optional[cst.CSTNode]) -> Dict[str, List[cst.BaseExpression]]:
        """What flows into each name by mutation in the region: ``name.append(v)``, any method call on it
        (its arguments), ``name[i] = v``."""
        if self._mutated is None:
            found: Dict[str, List[cst.BaseExpression]] = {}
            if root is not None:
                for node in walk(root):
                    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
                        receiver = node.func.value
                        if isinstance(receiver, cst.Name) and receiver.value != "self":
                            found.setdefault(receiver.value, []).extend(a.value for a in node.args)
                    elif isinstance(node, cst.Assign):
                        for target in node.targets:
                            base: cst.BaseExpression = target.target
                            while isinstance(base, (cst.Subscript, cst.Attribute)):
                                base = base.value
                            if isinstance(base, cst.Name) and base is not target.target:
                                found.setdefault(base.value, []).append(node.value)
            self._mutated = found
        return self._mutated


def _assigned_first(frame: _Frame, name: str) -> bool:
    """Whether the first statement of the frame's body that mentions ``name`` is a plain assignment to
    it that does not read it: then no read in the body sees a value from before it."""
    first = frame.first_mentions().get(name)
    if first is None:
        return False
    statement, mentions = first
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    if not isinstance(small, cst.Assign):
        return False
    stored = {id(t.target) for t in small.targets if isinstance(t.target, cst.Name) and t.target.value == name}
    return bool(stored) and all(id(n) in stored for n in mentions)


class Connection:
    """Answers, for one module, which gradient targets cannot reach their sources."""

    def __init__(self, analysis: ModuleAnalysis, code: Optional[str] = None) -> None:
        """``code``, the module's text when the caller has it, spares the walk for ``global`` statements
        in the (usual) module that has none."""
        self.a = analysis
        self._scopes: Dict[int, Scope] = {0: None}
        self._top: Optional[_Frame] = None
        self._top_sources: Set[str] = set()
        self._globals: Set[str] = set()
        if code is None or _GLOBAL_STATEMENT.search(code):
            for node in walk(analysis.module):
                if isinstance(node, cst.Global):
                    self._globals.update(n.name.value for n in node.names)
            for function in analysis.functions.values():
                for node in walk(function.node.body):
                    if isinstance(node, (cst.Global, cst.Nonlocal)):
                        self._globals.update(n.name.value for n in node.names)

    def _key(self, scope: Scope) -> int:
        key = id(scope) if scope is not None else 0
        self._scopes[key] = scope
        return key

    # ------------------------------------------------------------------ the question
    def target_connection(
        self,
        body: cst.CSTNode,
        function: Scope,
        target: cst.BaseExpression,
        sources: Sequence[str],
        opaque_sources: bool,
        at: Sequence[cst.CSTNode] = (),
    ) -> Optional[Disconnected]:
        """``Disconnected`` when the value of ``target`` (read right after the block ``body`` of a tape,
        in ``function``) provably does not reach any of ``sources`` through operations that ran in the
        block; None when it may. ``sources`` are the plain names the sources are made of;
        ``opaque_sources`` says some source is something else (``model.trainable_variables``); ``at``
        is the nodes from the module down to the ``with`` statement, where the names read in the block
        get their values."""
        frame = _Frame(function, assigned_in(body), {}, body)
        self._top, self._top_sources = frame, set(sources)
        deps = self._expr(target, frame, 0, set())
        if deps.unknown:
            return None
        source_set = set(sources)
        before: List[str] = []
        for name, key in sorted(deps.leaves):
            scope = self._scopes[key]
            where = at if scope is function else ()
            if scope is function and function is not None and self._plain_parameter(name, function):
                verdict = self._parameter(name, function, sources)
            else:
                verdict = self._leaf(name, scope, source_set, opaque_sources, 0, set(), where)
            if verdict == "connected":
                return None
            if verdict == "computed":
                before.append(name)
        return Disconnected(tuple(dict.fromkeys(before)), tuple(sorted(deps.cuts)))

    # ------------------------------------------------------------------ expressions
    def _expr(self, expr: cst.BaseExpression, frame: _Frame, depth: int, busy: Set[Tuple[int, str]]) -> _Deps:
        out = _Deps()
        if isinstance(expr, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString)):
            return out
        if isinstance(expr, cst.FormattedString):
            return out
        if isinstance(expr, cst.Ellipsis):
            out.unknown = True  # a placeholder (``loss = ...``): code left out
            return out
        if isinstance(expr, cst.Name):
            return self._name(expr.value, frame, depth, busy)
        if isinstance(expr, cst.Attribute):
            if expr.attr.value in _NO_VALUE_ATTRIBUTES:
                return out
            if self.a.qualify(expr) is not None:
                return out  # a module attribute: tf.float32, np.pi
            out.unknown = True
            return out
        if isinstance(expr, cst.Subscript):
            # An index selects; only the indexed value carries a gradient.
            return self._expr(expr.value, frame, depth, busy)
        if isinstance(expr, cst.BinaryOperation):
            out.add(self._expr(expr.left, frame, depth, busy))
            out.add(self._expr(expr.right, frame, depth, busy))
            return out
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                out.cuts.add("not")
                return out
            return self._expr(expr.expression, frame, depth, busy)
        if isinstance(expr, cst.BooleanOperation):
            out.add(self._expr(expr.left, frame, depth, busy))
            out.add(self._expr(expr.right, frame, depth, busy))
            return out
        if isinstance(expr, cst.Comparison):
            out.cuts.add("a comparison")
            return out
        if isinstance(expr, cst.IfExp):
            out.add(self._expr(expr.body, frame, depth, busy))
            out.add(self._expr(expr.orelse, frame, depth, busy))
            return out
        if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
            for element in expr.elements:
                out.add(self._expr(element.value, frame, depth, busy))
            return out
        if isinstance(expr, cst.Dict):
            for item in expr.elements:
                out.add(self._expr(item.value, frame, depth, busy))
            return out
        if isinstance(expr, cst.Call):
            return self._call(expr, frame, depth, busy)
        out.unknown = True  # comprehensions, lambdas as values, await, ...
        return out

    def _name(self, name: str, frame: _Frame, depth: int, busy: Set[Tuple[int, str]]) -> _Deps:
        out = _Deps()
        if name in _CONSTANT_NAMES:
            return out
        flowing = frame.mutated(frame.body).get(name, ())
        if flowing:
            key = (id(frame), "mutated:" + name)
            if key not in busy:
                busy.add(key)
                for value in flowing:
                    out.add(self._expr(value, frame, depth, busy))
                busy.discard(key)
        if name in frame.params:
            out.add(frame.params[name])
            return out
        key = (id(frame), name)
        if frame is self._top and name in self._top_sources:
            out.unknown = True  # a source the block itself computes (``tape.gradient(z, y)`` with ``y = x * x``)
            return out
        if name in frame.assigned:
            if key in busy:
                return out
            busy.add(key)
            for value in frame.assigned[name]:
                out.add(self._expr(value, frame, depth, busy))
            busy.discard(key)
            # The value from before the region may still be what is read (a loop, a conditional assignment).
            if self._defined_outside(name, frame) and not _assigned_first(frame, name):
                out.leaves.add((name, self._key(frame.scope)))
            return out
        if self.a.qualify(cst.Name(name)) is not None:
            return out  # an imported module or function used as a value
        out.leaves.add((name, self._key(frame.scope)))
        return out

    def _defined_outside(self, name: str, frame: _Frame) -> bool:
        """Whether ``name`` is also bound outside the region followed (a value from before it)."""
        function = frame.scope
        while function is not None:
            if name in function.params:
                return True
            if name in function.defs:
                break
            function = function.parent
        inside = {id(e) for e in frame.assigned.get(name, ())}
        return any(id(d) not in inside for d in self.a.definitions(name, frame.scope))

    def _args(self, call: cst.Call, frame: _Frame, depth: int, busy: Set[Tuple[int, str]]) -> _Deps:
        out = _Deps()
        for arg in call.args:
            out.add(self._expr(arg.value, frame, depth, busy))
        return out

    def _call(self, call: cst.Call, frame: _Frame, depth: int, busy: Set[Tuple[int, str]]) -> _Deps:
        out = _Deps()
        name = self.a.qualify(call.func)
        if name is not None and name.startswith(TF + "."):
            short = name[len(TF) + 1 :]
            if short in CUT_OPS:
                out.cuts.add(f"tf.{short}")
                return out
            if short in ("cast", "dtypes.cast") and is_integer_dtype(_dtype_argument(call)):
                out.cuts.add("a cast to an integer type")
                return out
            if short == "Variable" or short.startswith(("Variable", "GradientTape")):
                out.unknown = True
                return out
            if is_under(name, KERAS):
                last = short.rsplit(".", 1)[-1]
                if last[:1].isupper() or not short.startswith(("keras.losses.", "keras.metrics.", "keras.ops.")):
                    out.unknown = True  # a constructor, or a Keras function that may read model state
                    return out
            return self._args(call, frame, depth, busy)
        if name is not None and is_under(name, KERAS):
            last = name.rsplit(".", 1)[-1]
            if not last[:1].isupper() and (".losses." in name or ".ops." in name or ".metrics." in name):
                return self._args(call, frame, depth, busy)
            out.unknown = True
            return out
        if name is not None and name.startswith(NP + "."):
            return self._args(call, frame, depth, busy)
        func = call.func
        if isinstance(func, cst.Name):
            if func.value in _BUILTIN_CUT and name is None and not self._bound(func.value, frame):
                out.cuts.add(f"{func.value}()")
                return out
            if func.value in _BUILTIN_PASS and name is None and not self._bound(func.value, frame):
                return self._args(call, frame, depth, busy)
            return self._call_value(func.value, call, frame, depth, busy)
        if isinstance(func, cst.Attribute):
            if func.attr.value in _VALUE_METHODS and not call.args:
                out.cuts.add(f".{func.attr.value}()")
                return out
            receiver = func.value
            if isinstance(receiver, cst.Name) and receiver.value == "self":
                out.unknown = True
                return out
            if func.attr.value == "compiled_loss" and isinstance(receiver, cst.Name):
                loss = self._compiled_loss(receiver.value)
                if loss is not None:
                    # ``model.compiled_loss(y, p)`` runs the loss given to ``model.compile``.
                    return self._follow(loss, None, call, frame, depth, busy)
            # A method of a value: what it returns is made of the receiver and the arguments; the
            # receiver's own verdict (a model, a layer, an object) decides whether it may be connected.
            out.add(self._expr(receiver, frame, depth, busy))
            out.add(self._args(call, frame, depth, busy))
            return out
        if isinstance(func, cst.Call):
            inner = self.a.qualify(func.func)
            if inner is not None and is_under(inner, KERAS) and (".losses." in inner or ".metrics." in inner):
                return self._args(call, frame, depth, busy)
        out.unknown = True
        return out

    def _compiled_loss(self, model: str) -> Optional[cst.Lambda]:
        """The lambda given as ``loss=`` to the one ``model.compile(...)`` call of the module, if any."""
        found: List[cst.Lambda] = []
        compiles = 0
        for node in walk(self.a.module):
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "compile"
                and isinstance(node.func.value, cst.Name)
                and node.func.value.value == model
            ):
                compiles += 1
                loss = keyword(node, "loss")
                if isinstance(loss, cst.Lambda):
                    found.append(loss)
        return found[0] if compiles == 1 and len(found) == 1 else None

    def _bound(self, name: str, frame: _Frame) -> bool:
        return name in frame.params or name in frame.assigned or self._defined_outside(name, frame)

    def _call_value(self, name: str, call: cst.Call, frame: _Frame, depth: int, busy: Set[Tuple[int, str]]) -> _Deps:
        """A call of a plain name: a def or lambda of the module, a Keras loss object, or anything else."""
        out = _Deps()
        if depth >= _MAX_DEPTH or name in self._globals:
            out.unknown = True
            return out
        callees = self.a.resolve_callee(call, frame.scope)
        if callees:
            if any(c.class_name is not None for c in callees) or len(callees) > 1:
                out.unknown = True
                return out
            return self._follow(callees[0].node, callees[0], call, frame, depth, busy)
        if name in frame.assigned:
            definitions: Sequence[cst.BaseExpression] = frame.assigned[name]
        elif name in frame.params:
            out.unknown = True
            return out
        else:
            definitions = self.a.definitions(name, frame.scope)
        if not definitions:
            out.unknown = True
            return out
        for definition in definitions:
            if isinstance(definition, cst.Lambda):
                out.add(self._follow(definition, self._defining_scope(name, frame.scope), call, frame, depth, busy))
            elif isinstance(definition, cst.Call) and _keras_loss(self.a.qualify(definition.func)):
                out.add(self._args(call, frame, depth, busy))
            elif isinstance(definition, cst.Call) and self._cut_model(definition):
                # Every weight of this functional model sits behind a layer that returns tf.stop_gradient.
                out.add(self._args(call, frame, depth, busy))
                out.cuts.add("a layer of the model that returns tf.stop_gradient")
            else:
                out.unknown = True
        return out

    # ------------------------------------------------------------------ functional Keras models
    def _cut_model(self, definition: cst.Call) -> bool:
        """Whether ``keras.Model(inputs=..., outputs=...)`` builds a model whose every path from its output
        back to its inputs either passes a layer whose ``call`` returns only ``tf.stop_gradient(...)`` or
        holds no weights, with at least one such cut: no variable of the model gets a gradient."""
        name = self.a.qualify(definition.func)
        if name is None or not is_under(name, KERAS) or name.rsplit(".", 1)[-1] not in ("Model", "Functional"):
            return False
        outputs = keyword(definition, "outputs")
        if outputs is None:
            positional = [a for a in definition.args if a.keyword is None and not a.star]
            outputs = positional[1].value if len(positional) > 1 else None
        if outputs is None:
            return False
        verdict = self._cut_path(outputs, 0)
        return verdict == "cut"

    def _cut_path(self, expr: cst.BaseExpression, depth: int) -> str:
        """ "cut" (the path meets a stop_gradient layer), "bare" (it reaches the inputs through weightless
        layers only) or "open" (a layer with weights, or anything tapefix cannot follow)."""
        if depth > 12:
            return "open"
        if isinstance(expr, cst.Name):
            definitions = self.a.module_defs.get(expr.value, [])
            if len(definitions) != 1:
                return "open"
            return self._cut_path(definitions[0], depth + 1)
        if not isinstance(expr, cst.Call):
            return "open"
        qualified = self.a.qualify(expr.func)
        if qualified is not None and is_under(qualified, KERAS) and qualified.rsplit(".", 1)[-1] in ("Input",):
            return "bare"
        layer = self._layer_class(expr.func)
        if layer is None:
            return "open"
        if layer == "cut":
            return "cut"
        # A weightless layer: the path goes on through its input(s).
        inputs = [a.value for a in expr.args if a.keyword is None and not a.star]
        if len(inputs) != 1:
            return "open"
        return self._cut_path(inputs[0], depth + 1)

    def _layer_class(self, func: cst.BaseExpression) -> Optional[str]:
        """ "cut" for a layer of the module whose ``call`` returns only ``tf.stop_gradient(...)``, "bare" for
        a Keras layer without weights, None otherwise."""
        made: Optional[cst.Call] = None
        if isinstance(func, cst.Call):
            made = func
        elif isinstance(func, cst.Name):
            definitions = self.a.module_defs.get(func.value, [])
            if len(definitions) == 1 and isinstance(definitions[0], cst.Call):
                made = definitions[0]
        if made is None:
            return None
        qualified = self.a.qualify(made.func)
        if qualified is not None:
            return "bare" if is_under(qualified, KERAS) and qualified.rsplit(".", 1)[-1] in WEIGHTLESS_LAYERS else None
        if not isinstance(made.func, cst.Name):
            return None
        methods = [
            f for f in self.a.functions.values() if f.class_name == made.func.value and f.node.name.value == "call"
        ]
        if len(methods) != 1:
            return None
        returns = [n for n in walk(methods[0].node.body) if isinstance(n, cst.Return)]
        if returns and all(
            isinstance(r.value, cst.Call) and self.a.qualify(r.value.func) in STOP_GRADIENT for r in returns
        ):
            return "cut"
        return None

    def _defining_scope(self, name: str, scope: Scope) -> Scope:
        function = scope
        while function is not None:
            if name in function.defs:
                return function
            function = function.parent
        return None

    def _follow(
        self,
        node: Union[cst.FunctionDef, cst.Lambda],
        scope: Scope,
        call: cst.Call,
        frame: _Frame,
        depth: int,
        busy: Set[Tuple[int, str]],
    ) -> _Deps:
        """What a call of a def or lambda of the module returns: its returned values, with its
        parameters bound to the arguments and the names it reads from outside left as leaves."""
        out = _Deps()
        params = node.params
        if params.star_arg is not None and isinstance(params.star_arg, cst.Param) or params.star_kwarg is not None:
            out.unknown = True
            return out
        if any(arg.star for arg in call.args):
            out.unknown = True
            return out
        names = [p.name.value for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)]
        defaults = {
            p.name.value: p.default
            for p in list(params.posonly_params) + list(params.params) + list(params.kwonly_params)
            if p.default is not None
        }
        bound: Dict[str, _Deps] = {}
        positional = [a for a in call.args if a.keyword is None]
        for param, arg in zip(names, positional):
            bound[param] = self._expr(arg.value, frame, depth, busy)
        for arg in call.args:
            if arg.keyword is not None:
                if arg.keyword.value not in names:
                    out.unknown = True
                    return out
                bound[arg.keyword.value] = self._expr(arg.value, frame, depth, busy)
        for param in names:
            if param not in bound:
                default = defaults.get(param)
                if default is None:
                    out.unknown = True
                    return out
                bound[param] = _Deps()  # a default value is computed when the def runs, not in the tape
        if isinstance(node, cst.Lambda):
            inner = _Frame(scope, {}, bound, node.body)
            return self._expr(node.body, inner, depth + 1, busy)
        inner = _Frame(scope, assigned_in(node.body), bound, node.body)
        returned = False
        for statement in walk(node.body):
            if isinstance(statement, (cst.Yield, cst.Await)):
                out.unknown = True
                return out
            if isinstance(statement, cst.Return) and statement.value is not None:
                returned = True
                out.add(self._expr(statement.value, inner, depth + 1, busy))
            if isinstance(statement, (cst.Global, cst.Nonlocal)):
                out.unknown = True
                return out
        if not returned:
            out.unknown = True
        return out

    # ------------------------------------------------------------------ parameters: what callers pass
    def _plain_parameter(self, name: str, function: Function) -> bool:
        return name in function.params and name not in function.defs and function.class_name is None

    def _parameter(self, name: str, function: Function, sources: Sequence[str]) -> str:
        """A parameter of the function that holds the block, as every call of it in the module binds it:
        a loss computed by the caller before the call is computed before the block. "connected" when
        some call passes a source (or may), or when the function has no call tapefix can see."""
        sites = call_sites(self.a, function)
        if not sites:
            return "connected"
        verdict = "constant"
        for call, caller, _ in sites:
            bound = bind_arguments(function.node, call)
            if bound is None or name not in bound:
                return "connected"
            site_sources: List[str] = []
            site_opaque = False
            for source in sources:
                if source in function.params:
                    if source not in bound:
                        return "connected"
                    parts, opaque = source_parts(self.a, bound[source], caller)
                    site_sources.extend(parts)
                    site_opaque = site_opaque or opaque
                elif source not in function.defs:
                    site_sources.append(source)  # a global: the caller may pass it as well
            kind = self._definition(bound[name], caller, set(site_sources), site_opaque, 1, set())
            if kind == "connected":
                return "connected"
            if kind == "computed":
                verdict = "computed"
        return verdict

    # ------------------------------------------------------------------ names from before the block
    def _leaf(
        self,
        name: str,
        scope: Scope,
        sources: Set[str],
        opaque: bool,
        depth: int,
        busy: Set[Tuple[int, str]],
        at: Sequence[cst.CSTNode] = (),
    ) -> str:
        """ "connected" when the name read before the block is (or may be) a source; "computed" for a
        tensor computed before the block; "constant" for any other value that cannot be a source."""
        if name in sources:
            return "connected"
        if name in self._globals or depth > _MAX_DEPTH:
            return "connected"
        key = (self._key(scope), name)
        if key in busy:
            return "constant"
        function = scope
        while function is not None:
            if name in function.params and name not in function.defs:
                return "connected"  # a parameter may be a source, or hold one
            if name in function.defs:
                break
            function = function.parent
        definitions: List[Tuple[cst.BaseExpression, Sequence[cst.CSTNode]]] = []
        everywhere = self.a.definitions(name, scope)
        # Only a name bound more than once needs the (costlier) assignment that reaches the block.
        seen = reaching(name, at) if at and len(everywhere) > 1 else None
        if seen is not None:
            if seen.definition is None:
                return "connected"  # a parameter
            definitions = [(seen.definition.value, seen.definition.ancestors)]
        else:
            definitions = [(d, ()) for d in everywhere]
        if not definitions:
            return "connected"  # a loop variable, a with-target, a def, a builtin: tapefix cannot tell
        busy.add(key)
        verdict = "constant"
        for definition, where in definitions:
            kind = self._definition(definition, scope, sources, opaque, depth, busy, where)
            if kind == "connected":
                verdict = "connected"
                break
            if kind == "computed":
                verdict = "computed"
        busy.discard(key)
        return verdict

    def _definition(
        self,
        expr: cst.BaseExpression,
        scope: Scope,
        sources: Set[str],
        opaque: bool,
        depth: int,
        busy: Set[Tuple[int, str]],
        at: Sequence[cst.CSTNode] = (),
    ) -> str:
        if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString, cst.ConcatenatedString, cst.Lambda)):
            return "constant"
        if isinstance(expr, cst.UnaryOperation) and isinstance(expr.expression, (cst.Integer, cst.Float)):
            return "constant"
        if isinstance(expr, cst.Name):
            if expr.value in _CONSTANT_NAMES:
                return "constant"
            return self._leaf(expr.value, scope, sources, opaque, depth + 1, busy, at)
        if isinstance(expr, (cst.BinaryOperation, cst.Comparison)):
            # Arithmetic on tensors is a new tensor; on lists (``a + b``) it may hold sources.
            names = [n for n in (expr.left, getattr(expr, "right", None)) if n is not None]
            if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
                if any(isinstance(n, (cst.List, cst.Tuple)) for n in names):
                    return "connected"
                for side in names:
                    if isinstance(side, cst.Name) and self._holds_sources(side.value, scope):
                        return "connected"
            return self._made_of(expr, scope, sources, opaque, depth, busy, at)
        if isinstance(expr, (cst.List, cst.Tuple)):
            for element in expr.elements:
                if self._definition(element.value, scope, sources, opaque, depth + 1, busy, at) == "connected":
                    return "connected"
            return "constant"
        if isinstance(expr, cst.Call):
            name = self.a.qualify(expr.func)
            if name is not None and name.startswith(TF + "."):
                short = name[len(TF) + 1 :]
                if short.startswith("Variable"):
                    # A variable not named among the sources may still be one of them when a source is opaque.
                    return "connected" if opaque else "constant"
                if is_under(name, KERAS):
                    return "connected"
                return self._made_of(expr, scope, sources, opaque, depth, busy, at)
            if name is not None and name.startswith(NP + "."):
                return self._made_of(expr, scope, sources, opaque, depth, busy, at)
            if isinstance(expr.func, cst.Name) and expr.func.value in self.a.class_names:
                return "connected"  # an object the module's own class constructs (a model, a layer)
            if self.a.is_model(expr.func, scope) and not isinstance(expr.func, cst.Call):
                return "computed"  # a model's output, computed when the call ran
            callees = self.a.resolve_callee(expr, scope)
            if callees and all(self._returns_fresh(c) for c in callees):
                return "computed"
            return "connected"
        return "connected"

    def _made_of(
        self,
        expr: cst.BaseExpression,
        scope: Scope,
        sources: Set[str],
        opaque: bool,
        depth: int,
        busy: Set[Tuple[int, str]],
        at: Sequence[cst.CSTNode],
    ) -> str:
        """A tensor computed before the block: "computed" when it was made from a source, a variable or
        a model (the forward pass ran outside the tape), else "constant"."""
        keywords = {id(n.keyword) for n in walk(expr) if isinstance(n, cst.Arg) and n.keyword is not None}
        for node in walk(expr):
            if isinstance(node, cst.Name) and id(node) not in keywords:
                if self.a.qualify(node) is not None or node.value in _CONSTANT_NAMES:
                    continue
                kind = self._leaf(node.value, scope, sources, opaque, depth + 1, busy, at)
                if kind in ("connected", "computed"):
                    return "computed"
                if self._is_variable(node.value, scope):
                    return "computed"
            elif isinstance(node, cst.Call) and self.a.is_model(node.func, scope):
                return "computed"
        return "constant"

    def _is_variable(self, name: str, scope: Scope) -> bool:
        return any(
            isinstance(d, cst.Call) and (self.a.is_tf_call(d) or "").startswith("Variable")
            for d in self.a.definitions(name, scope)
        )

    def _holds_sources(self, name: str, scope: Scope) -> bool:
        """Whether ``name`` may be a list of variables (``a + b`` is then a list that holds them)."""
        definitions = self.a.definitions(name, scope)
        if not definitions:
            return True
        for definition in definitions:
            if isinstance(definition, (cst.List, cst.Tuple, cst.Attribute, cst.Subscript)):
                return True
            if isinstance(definition, cst.Call) and self.a.qualify(definition.func) is None:
                return True
        return False

    def _returns_fresh(self, function: Function) -> bool:
        """Whether every value the function returns is a tensor it computes (an op's result)."""
        found = False
        for node in walk(function.node.body):
            if isinstance(node, (cst.Yield, cst.Await)):
                return False
            if isinstance(node, cst.Return):
                if node.value is None:
                    return False
                value = node.value
                if isinstance(value, cst.BinaryOperation):
                    found = True
                    continue
                if isinstance(value, cst.Call):
                    name = self.a.qualify(value.func)
                    if name is not None and name.startswith(TF + ".") and not is_under(name, KERAS):
                        if not name[len(TF) + 1 :].startswith("Variable"):
                            found = True
                            continue
                return False
        return found


def _dtype_argument(call: cst.Call) -> Optional[cst.BaseExpression]:
    dtype = keyword(call, "dtype")
    if dtype is not None:
        return dtype
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[1].value if len(positional) > 1 else None


def _keras_loss(name: Optional[str]) -> bool:
    return name is not None and is_under(name, KERAS) and (".losses." in name or ".metrics." in name)


def source_parts(
    analysis: ModuleAnalysis, sources: cst.BaseExpression, function: Scope, at: Sequence[cst.CSTNode] = ()
) -> Tuple[List[str], bool]:
    """The plain names the sources of a gradient call are made of, and whether some source is something
    else (an attribute, a call, a name tapefix cannot resolve to a list of names). ``at``: the nodes
    from the module down to the gradient call."""
    names: List[str] = []
    opaque = False
    elements: List[cst.BaseExpression]
    if isinstance(sources, (cst.List, cst.Tuple)):
        elements = [e.value for e in sources.elements]
    else:
        elements = [sources]
    for element in elements:
        if isinstance(element, cst.Name):
            names.append(element.value)
            everywhere = analysis.definitions(element.value, function)
            seen = reaching(element.value, at) if at and len(everywhere) != 1 else None
            if seen is not None and seen.definition is None:
                opaque = True  # a parameter
                continue
            if seen is not None and seen.definition is not None and not seen.definition.index:
                definitions: Sequence[cst.BaseExpression] = [seen.definition.value]
            else:
                definitions = everywhere
            for definition in definitions:
                if isinstance(definition, (cst.List, cst.Tuple)):
                    inner, inner_opaque = source_parts(analysis, definition, function, at)
                    names.extend(inner)
                    opaque = opaque or inner_opaque
                elif not isinstance(definition, cst.Call):
                    opaque = True
                elif analysis.is_tf_call(definition) is None:
                    opaque = True
            if not definitions:
                opaque = True
        else:
            opaque = True
    return names, opaque


FrozenNames = FrozenSet[str]
