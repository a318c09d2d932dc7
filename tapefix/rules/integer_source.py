"""TF111: an integer tensor or variable passed to ``tape.gradient`` as a source."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.intent import asserts_none_gradient
from tapefix.analysis.reaching import reaching
from tapefix.analysis.scope import Function
from tapefix.analysis.syntax import argument, integer_tensor, is_integer_dtype, keyword, source_names
from tapefix.analysis.uses import dtype_uses, integer_valued
from tapefix.analysis.walk import children
from tapefix.rule import Invalid, RuleContext, TapeBlockRule, Valid
from tapefix.types import Edit, Forward, Safety

_DECIMAL = re.compile(r"[0-9][0-9_]*\Z")
_MADE_BY = ("Variable", "constant", "convert_to_tensor")


class IntegerSource(TapeBlockRule):
    """
    ## What it does
    Finds a gradient source, a name in `tape.gradient(target, sources)`, bound to an integer tensor:
    `tf.Variable(3)`, `tf.constant(10)`, `tf.Variable([1, 2])`, `tf.constant(5, dtype=tf.int32)`.

    ## Why is this bad?
    TensorFlow differentiates only floating-point (and complex) tensors. For `tf.Variable(3)` the
    gradient is a silent `None`; for a watched `tf.constant(10)` it is `None` plus a log line
    `The dtype of the watched tensor must be floating (e.g. tf.float32), got tf.int32` (TF 2.21).

    ## Example
    ```python
    x = tf.Variable(3)
    with tf.GradientTape() as tape:
        y = x * x
    dy_dx = tape.gradient(y, x)
    ```

    ## Use instead
    ```python
    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = x * x
    dy_dx = tape.gradient(y, x)
    ```

    ## Fix safety
    Unsafe: the values stay the same but the dtype becomes `float32`, so integer division, overflow
    and any op that mixes the tensor with other integer tensors behave differently. It is offered
    only for a name passed to `tape.gradient` as a source, whose every definition is a literal
    (integer literals are written as floats; an integer `dtype=` becomes `float32`). A tensor built
    from a non-literal value is reported without a fix. A `tf.constant` also needs `tape.watch`
    (TF110) once it is a float.

    No fix either where a float would make the program raise (TF 2.21, measured): when the value is
    used where TensorFlow takes only integers (an index of `tf.gather`, `tf.gather_nd`,
    `tf.nn.embedding_lookup`, `tf.one_hot`, `tf.scatter_nd` or `tf.tensor_scatter_nd_*`, a subscript
    `x[i]`, a `depth` or a shape, Python's `range`: `InvalidArgumentError: Value for attr 'Tindices' of
    float is not in the list of allowed values`, or `TypeError`), directly, through the names it is
    assigned to, or in the module's own functions it is passed to (`tf.function` and
    `tf.custom_gradient` ones included); and when it meets, in arithmetic, an integer tensor the fix
    leaves an integer (`float32 + int32` raises `InvalidArgumentError` in `AddV2`). The finding then
    says why. `tf.range` and `tf.zeros_like(x, dtype=...)` take a float as well: they do not stop the
    fix.

    `--verify` checks this fix with a tape probe: the definitions the block reads, the `with` block
    and its gradient calls, run as written and fixed (docs/verification.md). The forward values
    are compared as numbers: they must be equal after the cast (`int32` to `float32`), and the
    verdict names the dtype change. It stays unverified when that slice needs code the verifier
    cannot copy (a model, a function of another module); without a `tape.watch`, the fix of a
    `tf.constant` fails verification: a float constant still needs watching (TF110).

    ## References
    - research/idioms.md, idiom 13 (C2-*, C2-fix-float)
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF111"
    NAME = "integer-source"
    MESSAGE = "integer tensor used as a gradient source: its gradient is None (only floats are differentiated)"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

step = tf.Variable(0)
x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = x * x
step.assign_add(1)
dy_dx = tape.gradient(y, x)
""",
            note="an integer counter that is not a gradient source",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(3, dtype=tf.float32)
with tf.GradientTape() as tape:
    y = x * x
dy_dx = tape.gradient(y, x)
""",
            note="a float dtype given explicitly",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3)
with tf.GradientTape() as tape:
    y = x * x
dy_dx = tape.gradient(y, x)
""",
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = x * x
dy_dx = tape.gradient(y, x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1, -2], dtype=tf.int32)
b = tf.Variable([0, 1])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(w * b)
grads = tape.gradient(y, [w, b])
""",
            """\
import tensorflow as tf

w = tf.Variable([1, -2], dtype=tf.float32)
b = tf.Variable([0.0, 1.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(w * b)
grads = tape.gradient(y, [w, b])
""",
            note="an integer dtype, and a list of integer literals",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = tf.Variable(np.arange(3))
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x * x)
g = tape.gradient(y, x)
""",
            None,
            note="not a literal: np.arange gives int64, but tapefix does not rewrite the value",
        ),
        Invalid(
            """\
import tensorflow as tf

table = tf.Variable([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
rows = tf.Variable([2, 0])
with tf.GradientTape() as tape:
    picked = tf.gather(table, rows)
    loss = tf.reduce_sum(picked)
grads = tape.gradient(loss, [table, rows])
""",
            None,
            note="used as an index: `tf.gather` takes only integer indices (a float32 one raises), so no float fix",
        ),
        Invalid(
            """\
import tensorflow as tf


@tf.custom_gradient
def lookup(table, positions):
    def grad(upstream):
        return tf.ones_like(table), None

    return tf.nn.embedding_lookup(table, positions), grad


table = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
ids = tf.Variable([1, 0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(lookup(table, ids))
grads = tape.gradient(loss, [table, ids])
""",
            None,
            note="used as an index inside the module's own function it is passed to",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3)
offset = tf.constant(2)
with tf.GradientTape() as tape:
    y = x * x + offset
g = tape.gradient(y, x)
""",
            None,
            note="combined with an integer tensor that is not a source: float32 + int32 would raise",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        self._reported: Set[cst.Call] = set()

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        sources = argument(node, 1, "sources")
        if sources is None:
            return
        analysis = self.context.analysis
        context = self.context
        elements = [e.value for e in sources.elements] if isinstance(sources, (cst.List, cst.Tuple)) else None
        statement = next((n for n in reversed(context.ancestors) if isinstance(n, cst.SimpleStatementLine)), node)
        scope = context.function.node if context.function is not None else context.module
        candidates: List[Tuple[cst.Name, List[cst.BaseExpression]]] = []
        for source in source_names(sources):
            definitions = analysis.definitions(source.value, context.function)
            if not any(self._integer(d) for d in definitions):
                continue
            if not all(self._integer(d) for d in definitions):
                # The assignment the gradient call sees: a notebook rebinds ``x`` in every cell.
                seen = reaching(source.value, context.ancestors)
                if seen is None or seen.definition is None or seen.definition.index:
                    continue
                if not self._integer(seen.definition.value):
                    continue
                definitions = [seen.definition.value]
            position = next((i for i, e in enumerate(elements) if e is source), None) if elements else None
            if asserts_none_gradient(scope, node, position, len(elements or ()), statement):
                continue  # a test that checks this very gradient is None means it
            candidates.append((source, definitions))
        declined = self._declined(candidates)
        for source, definitions in candidates:
            for definition in definitions:
                assert isinstance(definition, cst.Call)
                if definition in self._reported:
                    continue
                self._reported.add(definition)
                edits = self._float_edits(definition)
                if source.value in declined:
                    self.report(definition, no_fix_reason=declined[source.value])
                elif edits is None:
                    self.report(definition, no_fix_reason="the value is not a literal: give it a float dtype by hand")
                else:
                    self.report(definition, edits=edits, description="a float32 tensor with the same values")

    def _declined(self, found: List[Tuple[cst.Name, List[cst.BaseExpression]]]) -> Dict[str, str]:
        """The sources whose float fix would make the program raise, and why: the value is used where
        TensorFlow takes only integers (an index, a shape), or it meets an integer tensor the fix leaves
        an integer (int32 + float32 raises). A source whose fix is declined stays an integer itself, so
        its partners are looked at again."""
        context = self.context
        analysis = context.analysis
        integers = {source.value for source, _ in found}
        floated = {
            source.value
            for source, definitions in found
            if all(isinstance(d, cst.Call) and self._float_edits(d) is not None for d in definitions)
        }
        declined: Dict[str, str] = {}
        changed = True
        while changed:
            changed = False
            for name in sorted(floated):
                for use in dtype_uses(analysis, name, context.function):
                    if use.kind == "index":
                        reason = (
                            f"the value is used as an index (`{_short(context.text(use.node))}`): TensorFlow takes "
                            "only integers there, so the float fix would raise"
                        )
                    elif use.other is not None and self._stays_integer(use.other, use.function, integers, floated):
                        reason = (
                            f"the value is combined with the integer tensor `{_short(context.text(use.other))}`, "
                            "which would stay an integer: the float fix would raise a dtype error"
                        )
                    else:
                        continue
                    floated.discard(name)
                    declined[name] = reason
                    changed = True
                    break
        return declined

    def _stays_integer(
        self, other: cst.BaseExpression, function: Optional[Function], integers: Set[str], floated: Set[str]
    ) -> bool:
        """Whether ``other`` is an integer tensor that this gradient call's fixes leave an integer."""
        analysis = self.context.analysis
        if isinstance(other, cst.Name) and other.value in integers:
            here = analysis.definitions(other.value, function)
            if here is analysis.definitions(other.value, self.context.function):
                return other.value not in floated  # a source of this call: a float only if its fix stands
        return integer_valued(analysis, other, function)

    def _integer(self, definition: cst.BaseExpression) -> bool:
        if not isinstance(definition, cst.Call):
            return False
        short = self.context.analysis.is_tf_call(definition)
        if short not in _MADE_BY:
            return False
        if integer_tensor(definition, short):
            return True
        # tf.Variable(np.arange(3)): an integer NumPy array.
        value = argument(definition, 0, "initial_value" if short == "Variable" else "value")
        return (
            keyword(definition, "dtype") is None
            and isinstance(value, cst.Call)
            and self.context.analysis.is_numpy_call(value) in ("arange", "int32", "int64")
        )

    def _float_edits(self, definition: cst.Call) -> Optional[List[Edit]]:
        context = self.context
        short = context.analysis.is_tf_call(definition) or ""
        value = argument(definition, 0, "initial_value" if short == "Variable" else "value")
        dtype = keyword(definition, "dtype")
        if dtype is not None and is_integer_dtype(dtype):
            if value is None or not _literal(value):
                return None
            tf, import_edits = context.tf()
            return [context.replace(dtype, f"{tf}.float32"), *import_edits]
        if value is None or not _literal(value):
            return None
        edits = []
        for integer in _integers(value):
            text = context.text(integer)
            if not _DECIMAL.match(text):
                return None
            edits.append(context.replace(integer, text + ".0"))
        return edits or None


def _literal(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, (cst.List, cst.Tuple)):
        return all(_literal(e.value) for e in expr.elements)
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        expr = expr.expression
    return isinstance(expr, (cst.Integer, cst.Float))


def _short(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 60 and line == text else line[:57] + "..."


def _integers(expr: cst.CSTNode) -> List[cst.Integer]:
    if isinstance(expr, cst.Integer):
        return [expr]
    return [i for child in children(expr) for i in _integers(child)]
