"""TF117: the target of ``tape.gradient`` computed after the ``with`` block, where the tape no longer records."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from tapefix.analysis.expressions import names_in
from tapefix.analysis.syntax import argument
from tapefix.rule import Invalid, TapeBlock, TapeBlockRule, Valid
from tapefix.types import Forward, Safety

_SUM = {"reduce_sum", "math.reduce_sum"}


class OutsideTape(TapeBlockRule):
    """
    ## What it does
    Finds a `tape.gradient(target, sources)` call after the tape's `with` block whose target is
    computed outside the block: a call such as `tf.reduce_sum(y)` written into the gradient call
    itself, or a target name assigned before or after the block (and not in it).

    ## Why is this bad?
    A tape records only while its `with` block runs. An operation after the block is not on the
    tape, so the target is not connected to the sources and `tape.gradient` returns `None`
    (TF 2.21). It looks like a bug in whatever op the block used: TensorFlow issue #115116, filed as
    "tf.where returns None", is exactly this.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = tf.where(x > 0, x, x * x)
    g = tape.gradient(tf.reduce_sum(y), x)
    ```

    ## Use instead
    `tape.gradient` sums a non-scalar target itself, so the reduction can go:
    ```python
    with tf.GradientTape() as tape:
        y = tf.where(x > 0, x, x * x)
    g = tape.gradient(y, x)
    ```

    ## Fix safety
    Safe, and offered only for `tf.reduce_sum(y)` without other arguments where `y` is assigned in
    the block: the gradient of a non-scalar target is the gradient of its sum, so the result is the
    gradient the code meant, where it was `None`. Any other target computed outside the block
    (`tf.reduce_mean(y)` differs by a factor, a loss function, a model call, arithmetic, a name
    assigned before or after the block) is reported without a fix: move that computation into the block.

    `--verify` checks this fix with a tape probe: the definitions the block reads, the `with` block
    and its gradient calls, run as written and fixed (docs/verification.md).
    It stays unverified when that slice needs code the verifier cannot copy (a model, a function
    of another module).

    ## References
    - research/idioms.md, idiom 5 (C3-target-in-gradient-call, C3-forward-outside, C3-fix-target)
    """

    CODE = "TF117"
    NAME = "outside-tape"
    MESSAGE = "the gradient target is computed after the with block, where the tape does not record: None"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, x, x * x)
    loss = tf.reduce_sum(y)
g = tape.gradient(loss, x)
h = tf.reduce_sum(g)
""",
            note="the target is computed in the block; work on the gradient afterwards is fine",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0])
with tf.GradientTape(persistent=True) as tape:
    y = x * x
    g = tape.gradient(tf.reduce_sum(y), x)
losses = [y]
h = tape.gradient(losses[0], x)
""",
            note="a gradient call inside the block; a Python list element",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0, 3.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, x, x * x)
g = tape.gradient(tf.reduce_sum(y), x)
""",
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0, 3.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0, x, x * x)
g = tape.gradient(y, x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0, 3.0])
with tf.GradientTape() as tape:
    y = x * x
g = tape.gradient(tf.reduce_mean(y), x)
""",
            None,
            note="reduce_mean: passing y instead would scale the gradient by the element count",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    pred = w * 3.0
loss = tf.reduce_sum(tf.square(pred - 1.0))
g = tape.gradient(loss, w)
""",
            None,
            note="the loss computed after the block",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
y = x * x
with tf.GradientTape() as tape:
    z = x * 2.0
g = tape.gradient(y, x)
""",
            None,
            note="the target computed before the block",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape(persistent=True) as tape:
    loss = tf.reduce_sum(w ** 3)
first = tape.gradient(loss, w)
g = tape.jacobian(first, w)
""",
            None,
            note="a second derivative of a gradient computed after the block",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, _ = found
        if self.inside(block):
            return
        target = argument(node, 0, "target")
        if target is None:
            return
        if isinstance(target, cst.Name):
            if not self.context.on_path(target) and not self._computed_after(block, target):
                return
            if self.assigned_after(block, target.value):
                where = "after"
            elif self.assigned_before(block, target.value) and target.value not in self.recorded(block):
                # ``loss = 0`` before the block and ``loss += ...`` in it: the block computes the target.
                where = "before"
            else:
                return
            self.report(
                target,
                f"the gradient target `{target.value}` is computed {where} the with block, where the tape does "
                "not record: its gradient is None",
                no_fix_reason="move the computation of the target into the with block",
            )
            return
        if not isinstance(target, (cst.Call, cst.BinaryOperation, cst.UnaryOperation)):
            return
        recorded = self.recorded(block)
        if not (set(names_in(target)) & set(recorded)) and not self.context.on_path(target):
            return
        summed = self._summed_name(target, block)
        if summed is not None:
            self.report(
                target,
                edits=(self.context.replace(target, summed),),
                description="pass the recorded tensor: tape.gradient sums a non-scalar target",
            )
            return
        reason = "move this computation into the with block"
        if isinstance(target, cst.Call) and self.context.analysis.is_tf_call(target) in (
            "reduce_mean",
            "math.reduce_mean",
        ):
            reason = "passing the tensor itself would sum, not average: move the reduction into the with block"
        self.report(target, no_fix_reason=reason)

    def _computed_after(self, block: TapeBlock, target: cst.Name) -> bool:
        """A target assigned after the block that tensor-ness does not follow: a gradient the tape
        computed there (a Hessian asked of a first gradient computed outside the block), or a value
        the block built by a method (``ta = ta.write(i, x * x)`` then ``ta = ta.stack()``)."""
        if not self.assigned_after(block, target.value):
            return False
        analysis = self.context.analysis
        for definition in analysis.definitions(target.value, self.context.function):
            if (
                isinstance(definition, cst.Call)
                and isinstance(definition.func, cst.Attribute)
                and definition.func.attr.value == "gradient"
                and isinstance(definition.func.value, cst.Name)
                and definition.func.value.value == block.name
            ):
                return True
        for value in self.recorded(block).get(target.value, ()):
            if isinstance(value, cst.Call) and any(self.context.on_path(arg.value) for arg in value.args):
                return True
        return False

    def _summed_name(self, target: cst.BaseExpression, block: TapeBlock) -> Optional[str]:
        """``y`` when ``target`` is ``tf.reduce_sum(y)`` (no other arguments) and the block assigns ``y``
        and nothing reassigns it since."""
        if not isinstance(target, cst.Call) or self.context.analysis.is_tf_call(target) not in _SUM:
            return None
        if len(target.args) != 1 or target.args[0].keyword is not None or target.args[0].star:
            return None
        value = target.args[0].value
        if not isinstance(value, cst.Name) or value.value not in self.recorded(block):
            return None
        if self.assigned_after(block, value.value):
            return None
        return value.value
