"""TF117: the target of ``tape.gradient`` computed after the ``with`` block, where the tape no longer records."""

from __future__ import annotations

from typing import Optional, Tuple

import libcst as cst

from tapefix.analysis.expressions import is_pure, names_in
from tapefix.analysis.syntax import argument, target_names, walk
from tapefix.analysis.tfops import REDUCE_SUM, SINGLE_TENSOR_OPS
from tapefix.rule import Invalid, TapeBlock, TapeBlockRule, Valid, report_fix
from tapefix.types import Edit, Forward, Safety

# Where a new statement cannot go: the call sits in an expression of its own scope.
_EXPRESSION_SCOPES = (cst.Lambda, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


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
    `tape.gradient` sums a non-scalar target itself, so the reduction can go (any other expression
    is computed inside the block):
    ```python
    with tf.GradientTape() as tape:
        y = tf.where(x > 0, x, x * x)
    g = tape.gradient(y, x)
    ```

    ## Fix safety
    Safe for `tf.reduce_sum(y)` without other arguments where `y` is assigned in the block: the
    gradient of a non-scalar target is the gradient of its sum, so `y` itself is passed and the result
    is the gradient the code meant, where it was `None`.

    Any other target written into the call that is pure (names, slices, arithmetic, deterministic
    TensorFlow ops: `-loss`, `tf.reduce_mean(y)`, `y[:, 0]`) is computed while the tape records and
    passed by a fresh name. When every name it reads holds the same value at the end of the block, the
    fix is safe: a new last line of the block computes it (same values, same dtype and shape, now
    recorded). When it reads a loop variable of a loop after the block (a Jacobian built row by row,
    `tape.gradient(y[:, i], x)`), the fix is unsafe: `with tape:` right above the call resumes
    recording for that one line (TensorFlow 2.21 records on a tape entered again, eager or in a
    `tf.function`), and the tape becomes persistent when the loop asks it more than once (as TF112
    would). A target with a model or function call, a random op, or a name assigned before or after
    the block is reported without a fix: move that computation into the block.

    `--verify` checks this fix with a tape probe: the definitions the block reads, the `with` block
    and its gradient calls, run as written and fixed (docs/verification.md).
    It stays unverified when that slice needs code the verifier cannot copy (a model, a function
    of another module).

    ## References
    - research/idioms.md, idiom 5 (C3-target-in-gradient-call, C3-forward-outside, C3-fix-target)
    """

    TAPE_CALLS_ONLY = True
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
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0])
with tf.GradientTape(persistent=True) as tape:
    losses = {"total": tf.reduce_sum(x * x)}
    states = (x * 2.0, x * 3.0)
g = tape.gradient(losses["total"], x)
h = tape.gradient(states[0], x)
k = tape.gradient(states[0:1], x)
""",
            note="an element of a dict or tuple the block built is the tensor it computed: nothing to record",
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
            """\
import tensorflow as tf

x = tf.Variable([1.0, -2.0, 3.0])
with tf.GradientTape() as tape:
    y = x * x
    target = tf.reduce_mean(y)
g = tape.gradient(target, x)
""",
            note="reduce_mean: passing y would scale the gradient by the element count, so the mean moves in",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([[1.0, 2.0]])
w = tf.constant([[1.0, 0.5], [2.0, 1.0]])
with tf.GradientTape() as tape:
    y = tf.matmul(x, w)
    target = 1.0
for i in range(2):
    row = tape.gradient(y[:, i], x)
""",
            """\
import tensorflow as tf

x = tf.Variable([[1.0, 2.0]])
w = tf.constant([[1.0, 0.5], [2.0, 1.0]])
with tf.GradientTape(persistent=True) as tape:
    y = tf.matmul(x, w)
    target = 1.0
for i in range(2):
    with tape:
        target_2 = y[:, i]
    row = tape.gradient(target_2, x)
""",
            note="a slice by a loop variable: the tape records again for it, and keeps its recording for the loop",
        ),
        Invalid(
            """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
head = tf.keras.Sequential([tf.keras.layers.Dense(1)])
x = tf.ones((1, 3))
with tf.GradientTape() as tape:
    y = model(x)
g = tape.gradient(tf.reduce_sum(head(y)), model.trainable_variables)
""",
            None,
            note="a model call in the target is not moved: where it runs is the author's decision",
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
        if not isinstance(target, (cst.Call, cst.BinaryOperation, cst.UnaryOperation, cst.Subscript)):
            return
        recorded = self.recorded(block)
        if not (set(names_in(target)) & set(recorded)) and not self.context.on_path(target):
            return
        if isinstance(target, cst.Subscript) and not self._tensor_slice(target, block):
            # An element of a list, tuple or dict (``losses["total"]``, ``states[0]``) is the tensor the
            # block computed: indexing a Python container records nothing and needs nothing recorded.
            return
        summed = self._summed_name(target, block)
        if summed is not None:
            self.report(
                target,
                edits=(self.context.replace(target, summed),),
                description="pass the recorded tensor: tape.gradient sums a non-scalar target",
            )
            return
        inside = self._compute_inside(target, block)
        if inside is not None:
            edits, safety, description = inside
            report_fix(self, target, edits, description, safety, Forward.EXACT)
            return
        reason = "move this computation into the with block"
        if isinstance(target, cst.Call) and self.context.analysis.is_tf_call(target) in (
            "reduce_mean",
            "math.reduce_mean",
        ):
            reason = "passing the tensor itself would sum, not average: move the reduction into the with block"
        self.report(target, no_fix_reason=reason)

    def _tensor_slice(self, target: cst.Subscript, block: TapeBlock) -> bool:
        """Whether ``target`` slices a tensor the block computed: the base is assigned in the block (and
        not after it) and the index is one only a tensor takes (``y[:, i]``), or every value the block
        gives the base is a TensorFlow op's or arithmetic's result (``y[0]``, ``y[1:]`` of a ``tf.matmul``)."""
        base = target.value
        if not isinstance(base, cst.Name) or self.assigned_after(block, base.value):
            return False
        values = self.recorded(block).get(base.value)
        if not values:
            return False
        if len(target.slice) > 1:
            return True  # ``y[:, i]``: a list or a dict takes no tuple of indices and slices
        analysis = self.context.analysis
        return all(
            isinstance(v, (cst.BinaryOperation, cst.UnaryOperation))
            or (isinstance(v, cst.Call) and (analysis.is_tf_call(v) or "").split(".")[-1] in SINGLE_TENSOR_OPS)
            for v in values
        )

    def _compute_inside(
        self, target: cst.BaseExpression, block: TapeBlock
    ) -> Optional[Tuple[Tuple[Edit, ...], Safety, str]]:
        """Edits that compute a pure target expression while the tape records, and pass its name: at the
        end of the block when every name it reads holds there the value it holds at the call; else (a
        loop variable of a loop after the block) in a ``with tape:`` that resumes recording right above
        the statement of the call, the tape made persistent when the loop asks it more than once."""
        context = self.context
        analysis = context.analysis
        if not is_pure(target, analysis) or any(
            isinstance(n, cst.Call) and (analysis.qualify(n.func) or "").startswith("numpy.") for n in walk(target)
        ):
            return None
        keywords = {id(n.keyword) for n in walk(target) if isinstance(n, cst.Arg) and n.keyword is not None}
        read = {
            n.value
            for n in (target, *walk(target))
            if isinstance(n, cst.Name) and id(n) not in keywords and analysis.qualify(n) is None
        }
        if any(self.assigned_after(block, name) for name in read):
            return None
        ancestors = context.ancestors
        # Loops that run the call but not the block, and the names they bind.
        loops = [a for a in ancestors if isinstance(a, (cst.For, cst.While)) and a not in block.ancestors]
        if any(isinstance(a, _EXPRESSION_SCOPES) for a in ancestors):
            return None
        bound_by_loops = {name for loop in loops if isinstance(loop, cst.For) for name in target_names(loop.target)}
        name = context.fresh_name("target")
        text = context.text(target)
        if "\n" in text or "\r" in text:
            return None
        replace = context.replace(target, name)
        if not read & bound_by_loops:
            body = block.node.body
            if not isinstance(body, cst.IndentedBlock) or not body.body:
                return None
            indent = context.line_indent(body.body[0])
            _, end = context.span(body.body[-1])
            line_end = context.source.find("\n", end)
            if line_end < 0 or not indent.strip(" \t") == "" or not indent:
                return None
            # Before the line break that ends the block's last line (a comment there stays on it): the
            # new line is then inside the with statement's own text.
            at = line_end - 1 if context.source[line_end - 1 : line_end] == "\r" else line_end
            insert = Edit(at, at, f"{context.newline}{indent}{name} = {text}")
            return (insert, replace), Safety.SAFE, "compute the target inside the with block"
        if len(block.node.items) != 1 or block.constructor is None:
            return None
        persistent = block.persistent
        if persistent is None:
            return None
        statement = next((a for a in reversed(ancestors) if isinstance(a, cst.SimpleStatementLine)), None)
        if statement is None or len(statement.body) != 1:
            return None
        index = ancestors.index(statement)
        if not isinstance(ancestors[index - 1], (cst.IndentedBlock, cst.Module)):
            return None
        start, _ = context.span(statement.body[0])
        indent = context.line_indent(statement.body[0])
        line_start = context.source.rfind("\n", 0, start) + 1
        if context.source[line_start:start] != indent:
            return None
        unit = context.module.default_indent
        resume = f"{indent}with {block.name}:{context.newline}{indent}{unit}{name} = {text}{context.newline}"
        edits: Tuple[Edit, ...] = (Edit(line_start, line_start, resume), replace)
        if not persistent and loops:
            edits += (context.persistent_edit(block.constructor),)
        return edits, Safety.UNSAFE, "compute the target while the tape records again (with tape:)"

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
        if not isinstance(target, cst.Call) or self.context.analysis.is_tf_call(target) not in REDUCE_SUM:
            return None
        if len(target.args) != 1 or target.args[0].keyword is not None or target.args[0].star:
            return None
        value = target.args[0].value
        if not isinstance(value, cst.Name) or value.value not in self.recorded(block):
            return None
        if self.assigned_after(block, value.value):
            return None
        return value.value
