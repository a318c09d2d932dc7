"""TF119: gradients taken for every variable of a Keras model, not its trainable ones."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.names import dotted
from tapefix.analysis.syntax import argument, assigned_name
from tapefix.rule import Invalid, RuleContext, TapeBlockRule, Valid
from tapefix.types import Edit, Forward, Safety

#: model attributes that hold variables the optimizer must not (or cannot) train
WRONG_ATTRIBUTES = ("variables", "weights", "non_trainable_variables")
TRAINABLE = "trainable_variables"


class WrongSources(TapeBlockRule):
    """
    ## What it does
    Finds `tape.gradient(loss, model.variables)` (or `model.weights`, `model.non_trainable_variables`)
    on a Keras model whose gradients go to `optimizer.apply_gradients(zip(grads, model.variables))`.

    ## Why is this bad?
    `model.variables` holds the non-trainable variables too, such as a `BatchNormalization` layer's
    `moving_mean` and `moving_variance`. Their gradients are `None`, and `apply_gradients` warns
    `Gradients do not exist for variables [...] when minimizing the loss` on every step (TF 2.21);
    the warnings hide a real missing gradient, and with `non_trainable_variables` nothing trains.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.variables)
    optimizer.apply_gradients(zip(grads, model.variables))
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    ```

    ## Fix safety
    Safe: the trainable variables get the same gradients and the same updates as before; only the
    `None` gradients of the non-trainable ones (which `apply_gradients` skipped) are gone. The fix
    changes both places together, one fix with two edits, so that gradients and variables stay paired
    in `zip`. A `.variables` that is not a Keras model tapefix can see being built
    (`keras.Sequential(...)`, `keras.Model(...)`, a Keras layer), and gradients that do not go to
    `apply_gradients` (logged, checked), are left alone.

    `--verify` runs a tape probe of the block and its gradient call; this fix also edits the
    `apply_gradients` call outside it, so it stays unverified.

    ## References
    - research/idioms.md, idiom 10 (G3, G4, G8, X-G4-fix); tensorflow#26404, tensorflow/models#11134
    """

    CODE = "TF119"
    NAME = "wrong-sources"
    MESSAGE = "gradients of model.variables include non-trainable variables: use model.trainable_variables"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2), tf.keras.layers.BatchNormalization()])
optimizer = tf.keras.optimizers.SGD(0.1)
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.trainable_variables)
optimizer.apply_gradients(zip(grads, model.trainable_variables))
""",
            note="trainable_variables already",
        ),
        Valid(
            """\
import tensorflow as tf

class Params:
    def __init__(self):
        self.variables = [tf.Variable(1.0), tf.Variable(2.0)]

params = Params()
optimizer = tf.keras.optimizers.SGD(0.1)
with tf.GradientTape() as tape:
    loss = params.variables[0] * params.variables[1]
grads = tape.gradient(loss, params.variables)
optimizer.apply_gradients(zip(grads, params.variables))
""",
            note="not a Keras object: its .variables are what it trains",
        ),
        Valid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
optimizer = tf.keras.optimizers.SGD(0.1)
checkpoint = tf.train.Checkpoint(variables=model.variables)
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x))
grads = tape.gradient(loss, model.trainable_variables)
optimizer.apply_gradients(zip(grads, model.trainable_variables))
for v in model.variables:
    print(v.name)
""",
            note="model.variables for checkpointing and logging",
        ),
        Valid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x))
grads = tape.gradient(loss, model.variables)
norms = [tf.norm(g) for g in grads if g is not None]
""",
            note="gradients inspected, not applied: tapefix cannot tell they are wrong",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2), tf.keras.layers.BatchNormalization()])
optimizer = tf.keras.optimizers.SGD(0.1)
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.variables)
optimizer.apply_gradients(zip(grads, model.variables))
""",
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2), tf.keras.layers.BatchNormalization()])
optimizer = tf.keras.optimizers.SGD(0.1)
x = tf.ones((4, 3))
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.trainable_variables)
optimizer.apply_gradients(zip(grads, model.trainable_variables))
""",
            note="unverified: the fix also edits apply_gradients, outside the unit the verifier runs",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf
from tensorflow import keras

def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, net(x, training=True))
    gradients = tape.gradient(loss, net.weights)
    opt.apply_gradients(zip(gradients, net.weights))
    return loss

net = keras.Sequential([keras.layers.Dense(1)])
opt = keras.optimizers.Adam()
loss_fn = keras.losses.MeanSquaredError()
""",
            """\
import tensorflow as tf
from tensorflow import keras

def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, net(x, training=True))
    gradients = tape.gradient(loss, net.trainable_variables)
    opt.apply_gradients(zip(gradients, net.trainable_variables))
    return loss

net = keras.Sequential([keras.layers.Dense(1)])
opt = keras.optimizers.Adam()
loss_fn = keras.losses.MeanSquaredError()
""",
            note="model.weights, in a train step; unverified: the verifier cannot run loss_fn or apply_gradients",
            verdict="unverified",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        #: gradients of a model's variables bound to a name, per function: (the source attribute, model)
        self._pending: Dict[Tuple[int, str], Tuple[cst.Attribute, str]] = {}
        self._reported: Set[int] = set()

    def visit_Call(self, node: cst.Call) -> None:
        if self.tape_call(node) is not None:
            self._note_gradient(node)
            return
        self._check_apply(node)

    def _note_gradient(self, node: cst.Call) -> None:
        sources = argument(node, 1, "sources")
        if not (isinstance(sources, cst.Attribute) and sources.attr.value in WRONG_ATTRIBUTES):
            return
        model = dotted(sources.value)
        if model is None or model not in self.context.analysis.keras_objects:
            return
        target = self._bound_to(node)
        if target is not None:
            self._pending[(id(self.context.function), target)] = (sources, model)

    def _bound_to(self, node: cst.Call) -> Optional[str]:
        """The plain name the gradient call is assigned to (``grads = tape.gradient(...)``)."""
        parent = self.context.ancestors[-2] if len(self.context.ancestors) > 1 else None
        return assigned_name(node, parent)

    def _check_apply(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "apply_gradients" and node.args):
            return
        pairs = node.args[0].value
        if not (
            isinstance(pairs, cst.Call)
            and isinstance(pairs.func, cst.Name)
            and pairs.func.value == "zip"
            and len(pairs.args) == 2
            and isinstance(pairs.args[0].value, cst.Name)
        ):
            return
        grads, variables = pairs.args[0].value, pairs.args[1].value
        found = self._pending.get((id(self.context.function), grads.value))
        if found is None:
            return
        source, model = found
        if not (
            isinstance(variables, cst.Attribute)
            and dotted(variables.value) == model
            and variables.attr.value in WRONG_ATTRIBUTES + (TRAINABLE,)
        ):
            return
        if id(source) in self._reported:
            return
        self._reported.add(id(source))
        edits: List[Edit] = [self.context.replace(source.attr, TRAINABLE)]
        if variables.attr.value != TRAINABLE:
            edits.append(self.context.replace(variables.attr, TRAINABLE))
        self.report(
            source,
            f"gradients of `{model}.{source.attr.value}` include its non-trainable variables (None gradients): "
            f"use `{model}.{TRAINABLE}`",
            edits=edits,
            description=f"take and apply gradients of {model}.{TRAINABLE}",
        )
