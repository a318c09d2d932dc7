"""TF109: ``model.predict(x)`` inside a gradient tape."""

from __future__ import annotations

from typing import List, Optional

import libcst as cst

from tapefix.analysis.branches import untaken_under_tape
from tapefix.analysis.names import dotted, is_under
from tapefix.analysis.scope import KERAS
from tapefix.analysis.syntax import has_star, keywords, positional
from tapefix.analysis.uses import UseFinder, decide, forward_after
from tapefix.rule import Invalid, Rule, Valid, report_fix
from tapefix.types import Forward, Safety

# predict() arguments that do not change the values it returns.
_DROPPABLE = {"batch_size", "verbose"}


class ModelPredictInTape(Rule):
    """
    ## What it does
    Finds `model.predict(x)` on a Keras model while a tape records, when the prediction flows into
    the computation the tape differentiates.

    ## Why is this bad?
    `predict` runs the model outside the tape and returns NumPy arrays: every gradient is `None`,
    and `optimizer.apply_gradients` raises `ValueError: No gradients provided for any variable`
    (TF 2.21). A prediction that is only printed, logged or compared (an accuracy) is left alone.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        pred = model.predict(x, verbose=0)
        loss = loss_fn(y, pred)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        pred = model(x, training=False)
        loss = loss_fn(y, pred)
    ```
    `training=False` is what `predict` uses: dropout off, batch normalisation on its moving
    statistics (a bare `model(x)` with `training=True` would differ).

    ## Fix safety
    Forward values are identical to `predict`'s, also with `batch_size=` and with batch
    normalisation (research idiom 9). `batch_size=` and `verbose=` are dropped since they do not
    change the values; any other argument (`steps=`, `callbacks=`, a generator) leaves the call
    reported without a fix. The fix is **safe** when the receiver is bound to a Keras constructor or
    `load_model` in this module, and **unsafe** when tapefix only infers from its name that it is a
    Keras model (a scikit-learn estimator also has `predict`), when the prediction meets a tensor that
    keeps its own gradient (the original gradient was partial, not missing), or when NumPy arithmetic that rounds
    differently from TensorFlow's (`**`, a NumPy function) ran on the prediction before it re-entered
    TensorFlow (forward values then agree within ulp). The results become tensors instead of
    arrays, and the whole input runs as one batch: memory use grows with the input.

    ## References
    - research/idioms.md, idiom 9 (G1, G5)
    - tensorflow/tensorflow#20630
    """

    CODE = "TF109"
    NAME = "model-predict-in-tape"
    MESSAGE = "model.predict inside the tape returns NumPy arrays: every gradient is None"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(3)])
x = np.ones((4, 2), np.float32)
labels = np.array([0, 1, 2, 1])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x) ** 2)
    accuracy = np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == labels)
    print("predicted", model.predict(x, verbose=0))
grads = tape.gradient(loss, model.trainable_variables)
after = model.predict(x)
""",
            note="a metric, a printout and a prediction after the tape",
        ),
        Valid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    features = w * 2.0
    labels = classifier.predict(features)
    loss = tf.reduce_sum(features * labels)
grads = tape.gradient(loss, w)
""",
            note="a receiver that is not known or named as a Keras model",
        ),
        Valid(
            """\
import tensorflow as tf
from tensorflow import keras

def lipschitz_estimate(model: "ProbabilisticModel", points):
    with tf.GradientTape() as g:
        g.watch(points)
        mean, _ = model.predict(points)
    return g.gradient(mean, points)
""",
            note="a parameter annotated with another model type, whose predict returns tensors (trieste)",
        ),
        Valid(
            """\
import tensorflow as tf

def lipschitz_estimate(model, points):
    with tf.GradientTape() as g:
        g.watch(points)
        mean, _ = model.predict(points)
    return g.gradient(mean, points)
""",
            note="a module that never mentions Keras: a model known only by its name is not taken for one",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
x = tf.ones((3, 4))
with tf.GradientTape() as tape:
    pred = model.predict(x, verbose=0)
    loss = tf.reduce_mean(tf.square(pred))
grads = tape.gradient(loss, model.trainable_variables)
""",
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
x = tf.ones((3, 4))
with tf.GradientTape() as tape:
    pred = model(x, training=False)
    loss = tf.reduce_mean(tf.square(pred))
grads = tape.gradient(loss, model.trainable_variables)
""",
            note="a model built by a Keras constructor in this module: safe (the verifier does not run models)",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf


def build_generator():
    return tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])


generator = build_generator()
noise = tf.ones((8, 2))
with tf.GradientTape() as tape:
    fake = generator.predict(x=noise, batch_size=4)
    loss = tf.reduce_mean(fake)
grads = tape.gradient(loss, generator.trainable_variables)
""",
            """\
import tensorflow as tf


def build_generator():
    return tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])


generator = build_generator()
noise = tf.ones((8, 2))
with tf.GradientTape() as tape:
    fake = generator(noise, training=False)
    loss = tf.reduce_mean(fake)
grads = tape.gradient(loss, generator.trainable_variables)
""",
            note="a model known by its name only: unsafe; batch_size= dropped",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
x = tf.ones((3, 4))
with tf.GradientTape() as tape:
    pred = model.predict(x, steps=1)
    loss = tf.reduce_mean(pred)
grads = tape.gradient(loss, model.trainable_variables)
""",
            None,
            note="steps= has no counterpart in a model call",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "predict":
            return
        context = self.context
        known = self._known_keras(func.value)
        if known is None:
            return
        if untaken_under_tape(context.analysis, context.ancestors):
            return  # an inference branch (``if train: ... else: model.predict``) no recorded call selects
        finder = UseFinder(context)
        report, fixable, _ = decide(finder.of_node(node))
        if not report:
            return
        kw = keywords(node)
        args = positional(node)
        inputs = (
            args[0].value if len(args) == 1 and "x" not in kw else kw["x"].value if not args and "x" in kw else None
        )
        if inputs is None or has_star(node) or set(kw) - _DROPPABLE - {"x"}:
            self.report(node, no_fix_reason="arguments other than x, batch_size= and verbose= (steps=, callbacks=)")
            return
        if not fixable:
            self.report(node, no_fix_reason="the prediction also feeds non-TensorFlow code")
            return
        text = f"{context.text(func.value)}({context.text(inputs)}, training=False)"
        report_fix(
            self,
            node,
            (context.replace(node, text),),
            "model.predict(x) -> model(x, training=False)",
            Safety.SAFE if known and not finder.rounding_changes and not finder.meets_gradient else Safety.UNSAFE,
            forward_after(finder, Forward.EXACT),
        )

    def _may_be_keras(self, name: str) -> bool:
        """Whether a receiver known only by its name may be a Keras model: not when its parameter is
        annotated with another type (trieste's ``model: ProbabilisticModel``, whose ``predict``
        returns tensors), nor in a module that never mentions Keras."""
        if "keras" not in self.context.source:
            return False
        function = self.context.function
        head = name.split(".")[0]
        while function is not None:
            for param in _params(function.node.params):
                if param.name.value == head and param.annotation is not None:
                    annotation = self.context.text(param.annotation.annotation).strip("'\"")
                    return "keras" in annotation or annotation.rsplit(".", 1)[-1] in ("Model", "Sequential")
            function = function.parent
        return True

    def _known_keras(self, receiver: cst.BaseExpression) -> Optional[bool]:
        """True: bound to a Keras constructor or loader in this module; False: a Keras model by its name
        only; None: not a model."""
        context = self.context
        name = dotted(receiver)
        if name is None:
            return None
        analysis = context.analysis
        if name in analysis.keras_objects:
            return True
        if "." not in name:
            for definition in analysis.definitions(name, context.function):
                if isinstance(definition, cst.Call) and is_under(analysis.qualify(definition.func), KERAS):
                    return True
        if not self._may_be_keras(name):
            return None
        if analysis.is_model(receiver, context.function) or "model" in name.rsplit(".", 1)[-1].lower():
            return False
        if analysis.qualify(receiver) is None and any(
            word in name.rsplit(".", 1)[-1].lower() for word in ("net", "generator", "encoder", "decoder")
        ):
            return False
        return None


def _params(params: cst.Parameters) -> List[cst.Param]:
    return [*params.posonly_params, *params.params, *params.kwonly_params]
