"""TF115: a variable assigned from, or created from, a tensor on the gradient path while a tape records."""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.syntax import argument, walk
from tapefix.rule import Invalid, RuleContext, TapeBlock, TapeBlockRule, Valid
from tapefix.types import Safety

_ASSIGN = ("assign", "assign_add", "assign_sub")


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
    No fix: whether the variable's state must change (and when) is the program's business; the rule
    reports with the name and the cut.

    ## References
    - research/idioms.md, idioms 16, 23 and 24 (C5-*, C6, C15, F4)
    """

    CODE = "TF115"
    NAME = "variable-state-in-tape"
    MESSAGE = "a variable assigned from a tensor on the gradient path: the tape does not record assignments"
    SAFETY = Safety.DISPLAY_ONLY

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
            None,
            note="a variable created inside the tape",
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
                self.report(
                    node,
                    "tf.Variable created inside the tape from a tensor on the gradient path: the variable is a copy, "
                    "so gradients with respect to that tensor's inputs are None",
                    no_fix_reason="use the tensor itself while the tape records",
                )
            return
        func = node.func
        if not (
            isinstance(func, cst.Attribute)
            and func.attr.value in _ASSIGN
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
