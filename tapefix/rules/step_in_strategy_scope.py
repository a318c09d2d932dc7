"""TF129: a training step called directly inside ``with strategy.scope():`` instead of ``strategy.run``."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from tapefix.analysis.scope import GRADIENT_TAPES
from tapefix.analysis.syntax import walk
from tapefix.analysis.tfops import GRADIENT_METHODS, MIRRORED_STRATEGIES
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Forward, Safety


class StepInStrategyScope(Rule):
    """
    ## What it does
    Finds a call, inside `with strategy.scope():` of a `tf.distribute.MirroredStrategy`, of a
    function of the module that opens a gradient tape and asks it for gradients (a training step),
    when the call does not go through `strategy.run`.

    ## Why is this bad?
    `strategy.scope()` only places the variables; the step itself must run in a replica context.
    Called directly inside the scope, the step reads the mirrored variables in the cross-replica
    context and `tape.gradient` raises `ValueError: DistributedVariable.handle is not available
    outside the replica context or a tf.distribute.Strategy.update() call` (TF 2.21, eager or in a
    `tf.function`, on one device as on many).

    ## Example
    ```python
    with strategy.scope():
        ...
        for batch in batches:
            loss = train_step(batch)
    ```

    ## Use instead
    ```python
    with strategy.scope():
        ...
        for batch in batches:
            loss = strategy.run(train_step, args=(batch,))
    ```

    ## Fix safety
    Unsafe: the call becomes `strategy.run(step, args=(...))`. On one replica it returns what the
    step returns; on several it returns per-replica values, which code after the call may have to
    reduce (`strategy.reduce`).
    """

    CODE = "TF129"
    NAME = "step-in-strategy-scope"
    MESSAGE = "a training step called in the strategy's scope, not through strategy.run: tape.gradient raises"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT
    EVERYWHERE = True

    VALID = (
        Valid(
            """\
import tensorflow as tf

strategy = tf.distribute.MirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])

    def grads_of(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x))
        return tape.gradient(loss, model.trainable_variables)

    def replica_step(x):
        return grads_of(x)

strategy.run(replica_step, args=(tf.ones((2, 3)),))
""",
            note="a step defined in the scope runs where it is called",
        ),
        Valid(
            """\
import tensorflow as tf

strategy = tf.distribute.MirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])

def step(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x))
    return tape.gradient(loss, model.trainable_variables)

with strategy.scope():
    grads = strategy.run(step, args=(tf.ones((2, 3)),))
step(tf.ones((2, 3)))
""",
            note="through strategy.run, and outside the scope",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

strategy = tf.distribute.MirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x))
        return tape.gradient(loss, model.trainable_variables)

    grads = step(tf.ones((2, 3)))
""",
            """\
import tensorflow as tf

strategy = tf.distribute.MirroredStrategy()
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x))
        return tape.gradient(loss, model.trainable_variables)

    grads = strategy.run(step, args=(tf.ones((2, 3)),))
""",
            note="a call outside any tape block: the verifier has no probe for it",
            verdict="unverified",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        if not isinstance(node.func, cst.Name):
            return
        strategy = self._strategy_scope()
        if strategy is None:
            return
        callees = context.analysis.resolve_callee(node, context.function)
        if len(callees) != 1 or not self._is_step(callees[0].node):
            return
        parent = context.parent
        if isinstance(parent, cst.Arg):
            return  # strategy.run(step, ...) passes it, or another call does something with it
        if any(arg.star or arg.keyword is not None for arg in node.args):
            self.report(node, no_fix_reason=f"call it as {strategy}.run(step, args=..., kwargs=...)")
            return
        args = ", ".join(context.text(arg.value) for arg in node.args)
        packed = f"({args},)" if len(node.args) == 1 else f"({args})"
        self.report(
            node,
            edits=(context.replace(node, f"{strategy}.run({node.func.value}, args={packed})"),),
            description="run the step in the replica context",
        )

    def _strategy_scope(self) -> Optional[str]:
        """The strategy's name when the node being visited is inside ``with <strategy>.scope():``."""
        analysis = self.context.analysis
        for ancestor in reversed(self.context.ancestors):
            if isinstance(ancestor, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
                return None  # the scope around a def is not where the def runs
            if not isinstance(ancestor, cst.With):
                continue
            for item in ancestor.items:
                expr = item.item
                if not (
                    isinstance(expr, cst.Call)
                    and isinstance(expr.func, cst.Attribute)
                    and expr.func.attr.value == "scope"
                    and isinstance(expr.func.value, cst.Name)
                ):
                    continue
                name = expr.func.value.value
                definitions = analysis.definitions(name, self.context.function)
                if definitions and all(
                    isinstance(d, cst.Call) and analysis.is_tf_call(d) in MIRRORED_STRATEGIES for d in definitions
                ):
                    return name
        return None

    def _is_step(self, node: cst.FunctionDef) -> bool:
        analysis = self.context.analysis
        tape = gradient = False
        for inner in walk(node.body):
            if isinstance(inner, cst.Call):
                if analysis.qualify(inner.func) in GRADIENT_TAPES:
                    tape = True
                elif isinstance(inner.func, cst.Attribute) and inner.func.attr.value in GRADIENT_METHODS:
                    gradient = True
        return tape and gradient
