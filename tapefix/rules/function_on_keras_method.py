"""TF127: ``@tf.function`` on a method of a Keras model or layer that calls its sub-layers."""

from __future__ import annotations

from typing import List, Optional, Set

import libcst as cst

from tapefix.analysis.names import is_under
from tapefix.analysis.scope import GRADIENT_TAPES, KERAS
from tapefix.analysis.syntax import walk
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Edit, Forward, Safety

_KERAS_BASES = ("Model", "Layer", "Sequential")


class FunctionOnKerasMethod(Rule):
    """
    ## What it does
    Finds `@tf.function` on a method of a Keras `Model` or `Layer` subclass (`call`, or a helper it
    calls) whose body runs the object's sub-layers (`self.dense(x)`, `for layer in self.blocks:
    x = layer(x)`) and opens no tape of its own.

    ## Why is this bad?
    Under Keras 3 with TF 2.21, a tape outside such a method gets `None` for every variable of the
    sub-layers: `tape.gradient(loss, model.trainable_variables)` is all `None`, and
    `optimizer.apply_gradients` raises "No gradients provided for any variable". The same method
    without the decorator, a free `@tf.function` that calls a layer, and a decorated `call` that uses
    only the layer's own weights all give the gradients.

    ## Example
    ```python
    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(4)

        @tf.function
        def call(self, x):
            return self.dense(x)
    ```

    ## Use instead
    Leave `call` undecorated and compile the training step instead (`@tf.function` on the function
    that holds the tape, or `model.compile(jit_compile=...)`).

    ## Fix safety
    Unsafe: the decorator line is removed. Forward values are the same; the method now runs eagerly
    where it was traced, which is slower and runs its Python side effects on every call.
    """

    CODE = "TF127"
    NAME = "function-on-keras-method"
    MESSAGE = "@tf.function on a Keras method that calls its sub-layers: a tape outside gets None for their variables"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT
    EVERYWHERE = True

    VALID = (
        Valid(
            """\
import tensorflow as tf

class Net(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(4)

    def call(self, x):
        return self.dense(x)

    @tf.function
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(x) - y))
        grads = tape.gradient(loss, self.trainable_variables)
        return loss
""",
            note="the decorated method holds its own tape",
        ),
        Valid(
            """\
import tensorflow as tf

class Scale(tf.keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],))

    @tf.function
    def call(self, x):
        return x * self.w

with tf.GradientTape() as tape:
    pass
""",
            note="only the layer's own weight: the gradient flows",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

class Net(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(4)

    @tf.function
    def call(self, x):
        return self.dense(x)

net = Net()
with tf.GradientTape() as tape:
    out = tf.reduce_sum(net(tf.ones((2, 3))))
grads = tape.gradient(out, net.trainable_variables)
""",
            """\
import tensorflow as tf

class Net(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(4)

    def call(self, x):
        return self.dense(x)

net = Net()
with tf.GradientTape() as tape:
    out = tf.reduce_sum(net(tf.ones((2, 3))))
grads = tape.gradient(out, net.trainable_variables)
""",
            note="a decorator line the verifier cannot isolate: the fix is outside the tape block",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf
from tensorflow import keras

class Stack(keras.Model):
    def __init__(self, widths):
        super().__init__()
        self.blocks = [keras.layers.Dense(w) for w in widths]

    @tf.function(reduce_retracing=True)
    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x

stack = Stack([4, 2])
with tf.GradientTape() as tape:
    out = tf.reduce_sum(stack(tf.ones((1, 3))))
""",
            """\
import tensorflow as tf
from tensorflow import keras

class Stack(keras.Model):
    def __init__(self, widths):
        super().__init__()
        self.blocks = [keras.layers.Dense(w) for w in widths]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x

stack = Stack([4, 2])
with tf.GradientTape() as tape:
    out = tf.reduce_sum(stack(tf.ones((1, 3))))
""",
            note="sub-layers in a list",
            verdict="unverified",
        ),
    )

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        analysis = self.context.analysis
        keras_class = False
        for base in node.bases:
            name = analysis.qualify(base.value)
            if name is not None and is_under(name, KERAS) and name.rsplit(".", 1)[-1] in _KERAS_BASES:
                keras_class = True
        if not keras_class or not isinstance(node.body, cst.IndentedBlock):
            return
        methods = {s.name.value for s in node.body.body if isinstance(s, cst.FunctionDef)}
        for statement in node.body.body:
            if not isinstance(statement, cst.FunctionDef):
                continue
            decorator = self._tf_function(statement)
            if decorator is None or self._opens_tape(statement):
                continue
            if not self._calls_sublayer(statement, methods) or not self._trained_with_tape(node):
                continue
            start, _ = self.context.span(decorator)
            line_start = self.context.source.rfind("\n", 0, start) + 1
            line_end = self.context.source.find("\n", start)
            line_end = len(self.context.source) if line_end < 0 else line_end + 1
            if self.context.source[line_start:start].strip() or "#" in self.context.source[start:line_end]:
                self.report(decorator, no_fix_reason="remove the decorator by hand")
                continue
            self.report(
                decorator,
                edits=(Edit(line_start, line_end, ""),),
                description="remove @tf.function from the Keras method",
            )

    def _trained_with_tape(self, node: cst.ClassDef) -> bool:
        """Whether a tape records a call of this class's objects: ``self(...)`` in a method of the class
        that opens a tape, or ``net(...)`` in a tape block of the module, with ``net = Class(...)``."""
        analysis = self.context.analysis
        instances = {
            name
            for name, values in analysis.module_defs.items()
            if any(
                isinstance(v, cst.Call) and isinstance(v.func, cst.Name) and v.func.value == node.name.value
                for v in values
            )
        }
        for with_node, _ in analysis.tape_blocks:
            for inner in walk(with_node.body):
                if not isinstance(inner, cst.Call) or not isinstance(inner.func, cst.Name):
                    continue
                if inner.func.value in instances:
                    return True
                if inner.func.value == "self" and any(a is node for a in _enclosing_classes(node, with_node)):
                    return True
        return False

    def _tf_function(self, node: cst.FunctionDef) -> Optional[cst.Decorator]:
        for decorator in node.decorators:
            expr = decorator.decorator
            func = expr.func if isinstance(expr, cst.Call) else expr
            if self.context.analysis.qualify(func) == "tensorflow.function":
                return decorator
        return None

    def _opens_tape(self, node: cst.FunctionDef) -> bool:
        for inner in walk(node.body):
            if isinstance(inner, cst.Call) and self.context.analysis.qualify(inner.func) in GRADIENT_TAPES:
                return True
        return False

    def _calls_sublayer(self, node: cst.FunctionDef, methods: Set[str]) -> bool:
        """``self.attr(...)`` for an attribute that is not a method, or ``for l in self.attr: l(...)``."""
        loop_names: Set[str] = set()
        for inner in walk(node.body):
            if isinstance(inner, cst.For) and _self_attribute(inner.iter) is not None:
                if isinstance(inner.target, cst.Name):
                    loop_names.add(inner.target.value)
        for inner in walk(node.body):
            if not isinstance(inner, cst.Call):
                continue
            attr = _self_attribute(inner.func)
            if attr is not None and attr not in methods and not attr.startswith("add_"):
                return True
            if isinstance(inner.func, cst.Name) and inner.func.value in loop_names:
                return True
        return False


def _self_attribute(expr: cst.BaseExpression) -> Optional[str]:
    if isinstance(expr, cst.Attribute) and isinstance(expr.value, cst.Name) and expr.value.value == "self":
        return expr.attr.value
    return None


def _enclosing_classes(node: cst.ClassDef, inner: cst.CSTNode) -> List[cst.ClassDef]:
    """``[node]`` when ``inner`` lies in one of the class's methods, else ``[]``."""
    if not isinstance(node.body, cst.IndentedBlock):
        return []
    for statement in node.body.body:
        if isinstance(statement, cst.FunctionDef) and any(n is inner for n in walk(statement.body)):
            return [node]
    return []
