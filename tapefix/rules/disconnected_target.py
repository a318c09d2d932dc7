"""TF125: a gradient target that the tape's recorded operations do not connect to a source."""

from __future__ import annotations

from typing import List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.connection import Connection, Disconnected, source_parts
from tapefix.analysis.scope import ModuleAnalysis
from tapefix.analysis.syntax import argument, keyword, walk
from tapefix.analysis.tfops import CUT_OPS, TENSOR_CONSTRUCTORS
from tapefix.rule import Invalid, TapeBlock, TapeBlockRule, Valid
from tapefix.types import Edit, Forward, Safety


class DisconnectedTarget(TapeBlockRule):
    """
    ## What it does
    Finds a `tape.gradient(target, sources)` (or `jacobian`) call whose target, assigned in the tape's
    `with` block, reaches a source only through values computed *before* the block (a forward pass, a
    model output or a loss computed first, directly, through a lambda or closure, or through the
    module's own functions), or only through a cut (`tf.stop_gradient`, `argmax`, a comparison,
    `.numpy()`, a cast to an integer type), or not at all.

    ## Why is this bad?
    A tape records only the operations that run inside its `with` block. A tensor computed before
    the block is a constant to the tape, so the target does not depend on the sources as far as the
    tape knows, and `tape.gradient` returns `None` for them, without a warning (TF 2.21). With
    `optimizer.apply_gradients`, that becomes "No gradients provided for any variable".

    ## Example
    ```python
    w = tf.Variable(1.0)
    y = w * x
    with tf.GradientTape() as tape:
        loss = y ** 2
    grad = tape.gradient(loss, w)
    ```

    ## Use instead
    ```python
    w = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = w * x
        loss = y ** 2
    grad = tape.gradient(loss, w)
    ```

    ## Fix safety
    Unsafe, and offered only when the assignments that compute the values are the plain assignment
    lines right above the `with` (nothing else between), and what they read is a source, a variable,
    a constant or a literal: those lines move into the block, after its opening `tape.watch` calls.
    The same statements run in the same order with the same values; only the tape now records them
    (and holds their intermediates). Anything else is reported without a fix: which computation
    belongs in the block, and whether it must also run before it, is the author's decision.

    tapefix follows the target back through the block's assignments and the module's own functions
    and lambdas; a model or layer call, a method of an object, `self.attr` or code of another module
    in the block counts as connected, so the rule reports only what it can prove.

    ## References
    - research/idioms.md, idiom 5 (C3-forward-outside)
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF125"
    NAME = "disconnected-target"
    MESSAGE = "the gradient target does not depend on the sources through the tape: its gradient is None"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

w = tf.Variable(1.0)
x = tf.constant(2.0)
with tf.GradientTape() as tape:
    y = w * x
    loss = y ** 2
g = tape.gradient(loss, w)
""",
            note="the forward pass runs in the block",
        ),
        Valid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
features = tf.ones((4, 3))
scaled = features * 2.0
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(scaled))
g = tape.gradient(loss, model.trainable_variables)
""",
            note="an input prepared before the block is fine: the model call in the block reads the variables",
        ),
        Valid(
            """\
import tensorflow as tf

w = tf.Variable(2.0)

def loss_fn():
    return w * w

with tf.GradientTape() as tape:
    loss = loss_fn()
g = tape.gradient(loss, w)
""",
            note="a function that reads the variable itself",
        ),
        Valid(
            """\
import tensorflow as tf

def step(params, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(params[0] * x)
    return tape.gradient(loss, params)
""",
            note="parameters may hold the sources",
        ),
        Valid(
            """\
import tensorflow as tf

def grad_of(fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x)

def apply_twice(x, w):
    with tf.GradientTape() as tape:
        out = x * w
    return tape.gradient(out, w)

v = tf.Variable(1.0)
grad_of(tf.sin, tf.constant(0.5))
apply_twice(tf.constant(2.0), v)
""",
            note="a function passed in runs in the block; a variable passed in is the source",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(1.0)
c = tf.constant(3.0)
with tf.GradientTape() as tape:
    y = c * 2.0
g = tape.gradient(y, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
""",
            note="asking for zeros instead of None is a choice",
        ),
        Valid(
            """\
import tensorflow as tf

class Net(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = tf.keras.layers.Dense(4)
        self.head = tf.keras.layers.Dense(1)

    def call(self, inputs):
        return self.head(self.hidden(inputs))

net = Net()
x = tf.ones((2, 3))
with tf.GradientTape() as tape:
    features = net.hidden(x)
    loss = tf.reduce_sum(features * features)
g = tape.gradient(loss, net.trainable_variables)
""",
            note="a model the module's own class constructs is an object, not an output computed before the block",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable(1.0)
x = tf.constant(2.0)
y = w * x
with tf.GradientTape() as tape:
    loss = y ** 2
g = tape.gradient(loss, w)
""",
            """\
import tensorflow as tf

w = tf.Variable(1.0)
x = tf.constant(2.0)
with tf.GradientTape() as tape:
    y = w * x
    loss = y ** 2
g = tape.gradient(loss, w)
""",
            note="the forward pass before the block",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
inputs = tf.ones((4, 3))
labels = tf.zeros((4, 1))
predictions = model(inputs)
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.square(labels - predictions))
g = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="a model output computed before the block",
        ),
        Invalid(
            """\
import tensorflow as tf

v = tf.Variable(tf.ones((2, 2)))
out = tf.matmul(v, v)
objective = lambda: tf.reduce_sum(out * out)
with tf.GradientTape() as tape:
    value = objective()
g = tape.gradient(value, [v])
""",
            """\
import tensorflow as tf

v = tf.Variable(tf.ones((2, 2)))
with tf.GradientTape() as tape:
    out = tf.matmul(v, v)
    objective = lambda: tf.reduce_sum(out * out)
    value = objective()
g = tape.gradient(value, [v])
""",
            note="through a lambda that reads a tensor computed before the block",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

def total(values):
    return tf.reduce_sum(values)

x = tf.constant([1.0, 2.0])
s = total(x * 3.0)
with tf.GradientTape() as tape:
    tape.watch(x)
    out = s * 2.0
g = tape.gradient(out, x)
""",
            None,
            note="a watched tensor whose use came before the block",
        ),
        Invalid(
            """\
import tensorflow as tf

def first(a, b):
    return a

p = tf.Variable([[1.0, 2.0]])
q = tf.Variable([[3.0], [4.0]])
r = tf.matmul(p, q)
with tf.GradientTape() as tape:
    total = tf.reduce_sum(r)
g = tape.gradient(total, [p, q])
r = first(p, q)
""",
            """\
import tensorflow as tf

def first(a, b):
    return a

p = tf.Variable([[1.0, 2.0]])
q = tf.Variable([[3.0], [4.0]])
with tf.GradientTape() as tape:
    r = tf.matmul(p, q)
    total = tf.reduce_sum(r)
g = tape.gradient(total, [p, q])
r = first(p, q)
""",
            note="a name rebound after the tape: the value the block reads is the one before it",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

def curvature(objective, params):
    with tf.GradientTape() as tape:
        tape.watch(params)
        value = objective
    return tape.gradient(value, params)

theta = tf.Variable([0.5, 1.5])
objective = tf.reduce_sum(theta ** 2)
g = curvature(objective, [theta])
""",
            None,
            note="a loss passed into the function that opens the tape: computed by the caller, before the block",
        ),
        Invalid(
            """\
import tensorflow as tf
from tensorflow import keras

class Frozen(keras.layers.Layer):
    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs):
        return tf.stop_gradient(self.inner(inputs))

inputs = keras.Input(shape=(3,))
features = Frozen(keras.layers.Dense(2))(inputs)
outputs = keras.layers.Flatten()(features)
model = keras.Model(inputs=inputs, outputs=outputs)
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(x))
g = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="every weight of the functional model sits behind a layer that returns tf.stop_gradient",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss=lambda t, p: tf.reduce_mean(tf.cast(tf.abs(t - p) > 0.5, tf.float32)))
x = tf.ones((3, 2))
y = tf.zeros((3, 1))
with tf.GradientTape() as tape:
    pred = model(x)
    loss = model.compiled_loss(y, pred)
g = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="the loss given to compile() counts a comparison: no gradient",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
y = tf.stop_gradient(x ** 2)
with tf.GradientTape() as tape:
    z = y + 3.0
g = tape.gradient(z, x)
""",
            None,
            note="no fix: moving a tf.stop_gradient into the block would not repair the gradient",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    frozen = tf.stop_gradient(w)
    loss = tf.reduce_sum(frozen * 3.0)
g = tape.gradient(loss, w)
""",
            None,
            note="the only path is cut",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
x = tf.ones((2, 3))
target = tf.ones((2, 1))
with tf.GradientTape() as tape:
    out = model(x)
    loss = tf.reduce_sum(target)
g = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="the loss does not use the model's output",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.5, 2.5])
with tf.GradientTape() as tape:
    bins = tf.cast(tf.round(x * 2.0), tf.int32)
    hits = tf.math.count_nonzero(tf.floor(x))
    loss = tf.reduce_sum(tf.cast(bins, tf.float32)) + tf.cast(hits, tf.float32)
g = tape.gradient(loss, x)
""",
            None,
            note="every path is cut (an integer cast, a count): no rounding inside them is worth a surrogate",
        ),
    )

    def __init__(self, context) -> None:  # type: ignore[no-untyped-def]
        super().__init__(context)
        self._connection: Optional[Connection] = None

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, _ = found
        if keyword(node, "unconnected_gradients") is not None:
            return
        target = argument(node, 0, "target")
        sources = argument(node, 1, "sources")
        if target is None or sources is None:
            return
        if not self._single_block(block):
            return
        recorded = self.recorded(block)
        names = _target_names(target)
        if not names or any(n not in recorded or self.assigned_after(block, n) for n in names):
            return  # a target computed outside the block is TF117's
        if self._connection is None:
            self._connection = Connection(self.context.analysis, self.context.code)
        function = self.context.function
        at = tuple(self.context.ancestors)
        where = (*block.ancestors, block.node)
        parts, opaque = source_parts(self.context.analysis, sources, function, at)
        verdict = self._connection.target_connection(block.node.body, function, target, parts, opaque, where)
        if verdict is not None:
            reason = _REASON if verdict.before or not verdict.cuts else _CUT_REASON
            message = _message(self.context.text(target), verdict)
            edits = self._move_into_block(block, verdict, set(parts), opaque) if not verdict.cuts else None
            if edits:
                self.report(target, message, edits=edits, description="compute the forward pass inside the with block")
            else:
                self.report(target, message, no_fix_reason=reason)
            return
        if opaque or not isinstance(sources, (cst.List, cst.Tuple)):
            return
        # Each named source on its own: the others may be connected.
        for element in sources.elements:
            source = element.value
            if not isinstance(source, cst.Name):
                continue
            single, single_opaque = source_parts(self.context.analysis, source, function, at)
            if single_opaque:
                continue
            verdict = self._connection.target_connection(block.node.body, function, target, single, False, where)
            if verdict is not None:
                self.report(
                    source,
                    _message(self.context.text(target), verdict, source.value),
                    no_fix_reason=_REASON,
                )

    def _move_into_block(
        self, block: TapeBlock, verdict: Disconnected, sources: Set[str], opaque: bool
    ) -> Optional[Tuple[Edit, ...]]:
        """Edits that move the assignments computing ``verdict.before`` into the block, when they are the
        plain assignment lines right above the ``with`` (same block, nothing else between) and what they
        read is a source, a variable or a constant: the same statements then run in the same order, one
        step later, while the tape records. None when that is not so."""
        context = self.context
        with_node = block.node
        body = with_node.body
        if not block.ancestors or not isinstance(body, cst.IndentedBlock) or len(with_node.items) != 1:
            return None
        container = block.ancestors[-1]
        if not isinstance(container, (cst.Module, cst.IndentedBlock)):
            return None
        statements = list(container.body)
        if with_node not in statements:
            return None
        index = statements.index(with_node)
        needed = set(verdict.before)
        run: List[cst.SimpleStatementLine] = []
        assigned: Set[str] = set()
        position = index - 1
        while needed - assigned and position >= 0:
            statement = statements[position]
            if not (
                isinstance(statement, cst.SimpleStatementLine)
                and len(statement.body) == 1
                and isinstance(statement.body[0], cst.Assign)
                and all(isinstance(t.target, cst.Name) for t in statement.body[0].targets)
            ):
                return None
            run.insert(0, statement)
            assigned.update(t.target.value for t in statement.body[0].targets)  # type: ignore[attr-defined]
            position -= 1
        if needed - assigned or not run:
            return None
        header = {n.value for item in with_node.items for n in walk(item) if isinstance(n, cst.Name)}
        if header & assigned or block.name in assigned or sources & assigned:
            return None
        # What the moved lines read from before them must reach the sources through the tape once moved,
        # and nothing in them may cut the path (moving a tf.stop_gradient into the block repairs nothing).
        analysis = context.analysis
        for statement in run:
            value = statement.body[0].value  # type: ignore[attr-defined]
            for inner in (value, *walk(value)):
                if isinstance(inner, cst.Comparison):
                    return None
                if isinstance(inner, cst.Call):
                    short = analysis.is_tf_call(inner)
                    if short in CUT_OPS or (short or "").startswith("sparse"):
                        return None
                    if isinstance(inner.func, cst.Attribute) and inner.func.attr.value in ("numpy", "item"):
                        return None
            for name in (n.value for n in (value, *walk(value)) if isinstance(n, cst.Name)):
                if name in assigned or name in sources or analysis.qualify(cst.Name(name)) is not None:
                    continue
                definitions = analysis.definitions(name, context.function)
                if not definitions or not all(_plain_input(analysis, d) for d in definitions):
                    return None
        if not opaque and not any(
            isinstance(n, cst.Name) and n.value in sources
            for statement in run
            for n in (statement.body[0].value, *walk(statement.body[0].value))  # type: ignore[attr-defined]
        ):
            return None
        source = context.source
        start = self._start(run[0])
        with_start = self._start(with_node)
        if start is None or with_start is None:
            return None
        first_line = source.rfind("\n", 0, start) + 1
        with_line = source.rfind("\n", 0, with_start) + 1
        moved = source[first_line:with_line]
        outer = source[first_line:start]
        if outer.strip() or "\r" in moved:
            return None
        # Into the block, after the tape.watch calls that open it (a watch must come before the use).
        inner_statements = list(body.body)
        insert_before = 0
        while insert_before < len(inner_statements) and _is_watch(inner_statements[insert_before], block.name):
            insert_before += 1
        if insert_before >= len(inner_statements):
            return None
        anchor_start = self._start(inner_statements[insert_before])
        if anchor_start is None:
            return None
        anchor_line = source.rfind("\n", 0, anchor_start) + 1
        inner = source[anchor_line:anchor_start]
        if inner.strip() or not inner.startswith(outer) or inner == outer:
            return None
        lines = moved.splitlines(keepends=True)
        if any(line.strip() and not line.startswith(outer) for line in lines):
            return None
        reindented = "".join(inner + line[len(outer) :] if line.strip() else line for line in lines)
        return (Edit(first_line, with_line, ""), Edit(anchor_line, anchor_line, reindented))

    def _start(self, statement: cst.CSTNode) -> Optional[int]:
        """Where a statement's own text starts (after its indentation)."""
        first: Optional[cst.CSTNode] = None
        if isinstance(statement, cst.SimpleStatementLine) and statement.body:
            first = statement.body[0]
        elif isinstance(statement, cst.With) and not statement.asynchronous and statement.items:
            first = statement.items[0]
        elif isinstance(statement, (cst.If, cst.While)):
            first = statement.test
        elif isinstance(statement, cst.For) and not statement.asynchronous:
            first = statement.target
        if first is None:
            return None
        start, _ = self.context.span(first)
        return start

    def _single_block(self, block: TapeBlock) -> bool:
        """Whether the tape records in this block only: ``with tape:`` on a tape made elsewhere may
        resume recording on a tape an earlier block used."""
        for with_node, names in self.context.analysis.tape_blocks:
            if block.name not in names:
                continue
            for item in with_node.items:
                if isinstance(item.item, cst.Name) and item.item.value == block.name:
                    return False
        return True


_REASON = "compute the forward pass (or the target) inside the with block"
_CUT_REASON = "remove the cut, or differentiate with respect to what lies after it"


def _target_names(target: cst.BaseExpression) -> List[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.List, cst.Tuple)):
        out: List[str] = []
        for element in target.elements:
            if not isinstance(element.value, cst.Name):
                return []
            out.append(element.value.value)
        return out
    return []


def _message(target: str, verdict: Disconnected, source: Optional[str] = None) -> str:
    whom = f"`{source}`" if source is not None else "the sources"
    grad = f"the gradient for `{source}`" if source is not None else "its gradient"
    if verdict.before:
        names = ", ".join(f"`{n}`" for n in verdict.before)
        return (
            f"`{target}` reaches {whom} only through {names}, computed before the with block where the tape "
            f"does not record: {grad} is None"
        )
    if verdict.cuts:
        return f"`{target}` reaches {whom} only through {', '.join(verdict.cuts)}: {grad} is None"
    return f"`{target}` does not depend on {whom}: {grad} is None"


def _plain_input(analysis: ModuleAnalysis, definition: cst.BaseExpression) -> bool:
    """A value the tape can start from: a variable, a constant tensor or a literal (not a tensor
    computed from a variable, which would stay cut)."""
    if isinstance(definition, (cst.Integer, cst.Float, cst.List, cst.Tuple)):
        return True
    if isinstance(definition, cst.Call):
        short = analysis.is_tf_call(definition)
        return short is not None and (short.startswith("Variable") or short in TENSOR_CONSTRUCTORS)
    return False


def _is_watch(statement: cst.BaseStatement, tape: str) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    expr = statement.body[0]
    return (
        isinstance(expr, cst.Expr)
        and isinstance(expr.value, cst.Call)
        and isinstance(expr.value.func, cst.Attribute)
        and expr.value.func.attr.value == "watch"
        and isinstance(expr.value.func.value, cst.Name)
        and expr.value.func.value.value == tape
    )
