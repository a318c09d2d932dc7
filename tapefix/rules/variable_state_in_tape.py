"""TF115: a variable assigned from, or created from, a tensor on the gradient path while a tape records."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.scope import ModuleAnalysis
from tapefix.analysis.syntax import argument, walk
from tapefix.analysis.tfops import VARIABLE_ASSIGN_METHODS
from tapefix.analysis.uses import state_use
from tapefix.rule import Invalid, RuleContext, TapeBlock, TapeBlockRule, Valid
from tapefix.types import Edit, Forward, Safety


class VariableStateInTape(TapeBlockRule):
    """
    ## What it does
    Finds, inside a tape block:

    - `v.assign(expr)` / `v.assign_add(expr)` / `v.assign_sub(expr)` where `expr` is a tensor on the
      gradient path, and `v` is then read in the block or is the target of the tape's `gradient` call
      (a loss accumulated in a variable);
    - `tf.Variable(expr)` created from a tensor on the gradient path.

    ## Why is this bad?
    A tape does not record assignments. After `v.assign(x * 2)`, the gradient of anything computed
    from `v` with respect to `x` is `None`; with respect to `v` itself it is fine (TF 2.21). A
    variable created from `expr` starts as a copy, cut from `expr`'s inputs; inside `tf.function`
    creating it on every call raises `ValueError: tf.function only supports singleton tf.Variables
    created on the first call`.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        state.assign(x * 2.0)
        loss = tf.reduce_sum(state * 3.0)
    tape.gradient(loss, x)  # None
    ```

    ## Use instead
    Keep the value as a tensor while the tape records; assign afterwards if the state must persist:
    ```python
    with tf.GradientTape() as tape:
        new_state = x * 2.0
        loss = tf.reduce_sum(new_state * 3.0)
    state.assign(new_state)
    ```

    ## Fix safety
    An assignment is reported without a fix: whether the variable's state must change (and when) is
    the program's business; the rule reports with the name and the cut.

    `v = tf.Variable(expr)` is fixed, unsafely, to `v = expr` (`v = tf.identity(expr)` when `expr` is
    not an op's result, such as another variable, so that `v` stays a tensor rather than the same
    variable). The forward values are identical (TF 2.21: same values and dtype); the gradient now
    flows through `v` to `expr`'s inputs instead of being `None`; `v` is no longer a variable. The fix
    is offered only when `tf.Variable` is given the value alone (no `dtype=`, `trainable=`, `name=`),
    `v` is bound nowhere else, and every read of `v` takes only its value: arithmetic, a comparison,
    an index, an argument of a TensorFlow op, a return value, a gradient target, or another name
    bound once to `v` (`total = v`) whose reads are all of those kinds. A `v` that is
    assigned (`v.assign*`), asked for `.trainable` or another variable attribute, passed to an
    optimizer or any non-TensorFlow call, watched, or given as a gradient source keeps the report
    without a fix. In a `tf.function` the fix also removes the `ValueError` that creating the
    variable raised there.

    ## References
    - research/idioms.md, idioms 16, 23 and 24 (C5-*, C6, C15, F4)
    """

    CODE = "TF115"
    NAME = "variable-state-in-tape"
    MESSAGE = "a variable assigned from a tensor on the gradient path: the tape does not record assignments"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
step = tf.Variable(0)
ema = tf.Variable(0.0)
with tf.GradientTape() as tape:
    step.assign_add(1)
    loss = x * x
    ema.assign(0.9 * ema + 0.1 * loss)
g = tape.gradient(loss, x)
""",
            note="a counter; a running average nothing in the block reads afterwards",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    loss = x * x
scale = tf.Variable(loss)
g = tape.gradient(loss, x)
""",
            note="a variable made after the block",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
state = tf.Variable(0.0)
with tf.GradientTape() as tape:
    state.assign(x * 2.0)
    loss = state * 3.0
g = tape.gradient(loss, x)
""",
            None,
            note="assigned, then read in the block",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
total = tf.Variable(0.0)
with tf.GradientTape() as tape:
    for k in range(2):
        total.assign_add(tf.reduce_sum(w * float(k)))
g = tape.gradient(total, w)
""",
            None,
            note="a loss accumulated in a variable",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = tf.Variable(x * x)
    loss = y + 1.0
g = tape.gradient(loss, x)
""",
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = x * x
    loss = y + 1.0
g = tape.gradient(loss, x)
""",
            note="a variable created inside the tape and only read as a value: the tensor itself",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    h = tf.Variable(w)
    loss = tf.reduce_sum(h * h)
g = tape.gradient(loss, w)
""",
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    h = tf.identity(w)
    loss = tf.reduce_sum(h * h)
g = tape.gradient(loss, w)
""",
            note="a copy of a variable: `tf.identity`, so that `h` is a tensor, not the same variable",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = tf.Variable(x * x)
    y.assign_add(1.0)
    loss = y * 2.0
g, dy = tape.gradient(loss, [x, y])
""",
            None,
            note="a variable that is assigned later and is a gradient source: it stays a variable",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(3.0)
with tf.GradientTape() as tape:
    y = tf.Variable(x * x)
    loss = y * 2.0
g, dy = tape.gradient(loss, [x, y])
""",
            None,
            note="a gradient source: the caller wants the gradient with respect to the variable itself",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        #: assignments seen in each block, by variable name, waiting for the tape's gradient call
        self._pending: Dict[Tuple[cst.With, str], List[Tuple[str, cst.Call]]] = {}
        self._reported: Set[cst.CSTNode] = set()

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        found = self.tape_call(node)
        if found is not None:
            block, _ = found
            target = argument(node, 0, "target")
            if isinstance(target, cst.Name):
                for name, call in self._pending.get((block.node, block.name), []):
                    if name == target.value:
                        self._report_assign(call, name, "it is the gradient target")
            return
        if not context.recording:
            return
        short = context.analysis.is_tf_call(node)
        if short == "Variable":
            value = argument(node, 0, "initial_value")
            if value is not None and context.on_path(value) and self._block() is not None:
                message = (
                    "tf.Variable created inside the tape from a tensor on the gradient path: the variable is a copy, "
                    "so gradients with respect to that tensor's inputs are None"
                )
                edits = self._tensor_edits(node, value)
                if edits is None:
                    self.report(node, message, no_fix_reason="use the tensor itself while the tape records")
                else:
                    self.report(
                        node, message, edits=edits, description="the tensor itself: the gradient flows to its inputs"
                    )
            return
        func = node.func
        if not (
            isinstance(func, cst.Attribute)
            and func.attr.value in VARIABLE_ASSIGN_METHODS
            and isinstance(func.value, cst.Name)
            and node.args
            and context.on_path(node.args[0].value)
            and self._is_variable(func.value.value)
        ):
            return
        enclosing = self._block()
        if enclosing is None:
            return
        name = func.value.value
        if _read_after(enclosing.node.body, node, name):
            self._report_assign(node, name, "it is read afterwards in the block")
        else:
            self._pending.setdefault((enclosing.node, enclosing.name), []).append((name, node))

    def _report_assign(self, call: cst.Call, name: str, why: str) -> None:
        if call in self._reported:
            return
        self._reported.add(call)
        method = call.func.attr.value if isinstance(call.func, cst.Attribute) else "assign"
        self.report(
            call,
            f"`{name}.{method}(...)` inside the tape and {why}: the tape does not record assignments, so gradients "
            "through the assigned value are None",
            no_fix_reason="keep the value as a tensor while the tape records; assign after the block",
        )

    def _tensor_edits(self, node: cst.Call, value: cst.BaseExpression) -> Optional[List[Edit]]:
        """``v = tf.Variable(expr)`` -> ``v = expr`` when ``v`` is bound only here and every read of it
        takes only its value (never ``.assign``, ``.trainable``, an optimizer, a gradient source)."""
        context = self.context
        analysis = context.analysis
        if len(node.args) != 1 or node.args[0].star:
            return None  # a dtype, a name, trainable=...: what the variable was made with matters
        statement = context.ancestors[-2] if len(context.ancestors) >= 2 else None
        if not (
            isinstance(statement, cst.Assign)
            and statement.value is node
            and len(statement.targets) == 1
            and isinstance(statement.targets[0].target, cst.Name)
        ):
            return None
        name = statement.targets[0].target.value
        definitions = analysis.definitions(name, context.function)
        if len(definitions) != 1 or definitions[0] is not node:
            return None  # rebound elsewhere (as a variable, perhaps)
        if state_use(analysis, name, context.function) is not None:
            return None
        text = context.text(value)
        if not _fresh_tensor(analysis, value):
            # ``tf.Variable(w)`` copies; ``w`` alone would be the same variable, not a tensor of its value.
            tf, import_edits = context.tf()
            return [context.replace(node, f"{tf}.identity({text})"), *import_edits]
        return [context.replace(node, text)]

    def _is_variable(self, name: str) -> bool:
        analysis = self.context.analysis
        definitions = analysis.definitions(name, self.context.function)
        return bool(definitions) and all(
            isinstance(d, cst.Call) and analysis.is_tf_call(d) == "Variable" for d in definitions
        )

    def _block(self) -> Optional[TapeBlock]:
        """The innermost tape block around the node being visited, in the same function."""
        for ancestor in reversed(self.context.ancestors):
            if isinstance(ancestor, cst.FunctionDef):
                return None
            if isinstance(ancestor, cst.With):
                for (function_id, _), block in self._latest.items():
                    if block.node is ancestor and function_id == id(self.context.function):
                        return block
        return None


def _fresh_tensor(analysis: ModuleAnalysis, value: cst.BaseExpression) -> bool:
    """An op's result: a new tensor, never a variable (``x * 2.0``, ``tf.matmul(a, b)``)."""
    if isinstance(value, (cst.BinaryOperation, cst.UnaryOperation)):
        return True
    if isinstance(value, cst.Call):
        short = analysis.is_tf_call(value)
        return short is not None and not short.startswith("Variable") and not short.startswith("keras")
    return False


def _read_after(body: cst.CSTNode, call: cst.Call, name: str) -> bool:
    """True when ``name`` is read in ``body`` after ``call`` (source order, the call's own arguments
    left out)."""
    seen = False
    inside_call: Set[cst.CSTNode] = set(walk(call)) | {call}
    for node in walk(body):
        if node is call:
            seen = True
            continue
        if seen and node not in inside_call and isinstance(node, cst.Name) and node.value == name:
            return True
    return False
