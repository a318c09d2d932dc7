"""TF120: a variable that is a gradient source rebound to a tensor in the training loop."""

from __future__ import annotations

from typing import Callable, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.syntax import argument, source_names, walk
from tapefix.rule import Invalid, RuleContext, TapeBlockRule, Valid
from tapefix.types import Forward, Safety

_LOOPS = (cst.For, cst.While)


class VariableReplaced(TapeBlockRule):
    """
    ## What it does
    Finds a name bound to `tf.Variable(...)` that is a source of `tape.gradient` in a `for` or
    `while` loop and that the same loop rebinds to a tensor: `x = x + 1`, `x = x - lr * g`,
    `x -= lr * g`, `x = expr`.

    ## Why is this bad?
    After `x = x - lr * g`, `x` is a plain tensor, not the variable: the tape does not watch it, and on
    the next turn of the loop `tape.gradient(y, x)` returns `None` without a warning (TF 2.21: the
    first turn gives `1.0`, the second `None`). `x -= lr * g` on a variable raises
    `RuntimeError: variable -= value with tf.Variables is not supported` (TF 2.21).

    ## Example
    ```python
    x = tf.Variable(2.0)
    for step in range(3):
        with tf.GradientTape() as tape:
            y = x * x
        g = tape.gradient(y, x)
        x = x - 0.1 * g
    ```

    ## Use instead
    ```python
    x = tf.Variable(2.0)
    for step in range(3):
        with tf.GradientTape() as tape:
            y = x * x
        g = tape.gradient(y, x)
        x.assign_sub(0.1 * g)
    ```

    ## Fix safety
    Unsafe: `x = x + e` becomes `x.assign_add(e)`, `x = x - e` and `x -= e` become `x.assign_sub(e)`,
    any other `x = expr` becomes `x.assign(expr)`. The values are the same, but the update now changes
    the variable in place: another name that holds the same variable (a list of parameters, a
    checkpoint) sees the new value, and `assign` raises when `expr` has another dtype or shape.
    Only a rebinding in the loop body that also opens the tape and calls `gradient` is flagged;
    a rebinding inside the tape block, or to a new `tf.Variable(...)`, is left alone.

    `--verify` runs a tape probe of the block, not the loop around it: the fix is outside the tape
    block, so it stays unverified.

    ## References
    - research/idioms.md, idioms 15-17 (C4-variable-replaced, X-C4-fix); TF guide "Replaced a
      variable with a tensor"
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF120"
    NAME = "variable-replaced"
    MESSAGE = "a variable used as a gradient source is replaced by a tensor: the next gradient is None"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
for step in range(3):
    with tf.GradientTape() as tape:
        y = x * x
    g = tape.gradient(y, x)
    x.assign_sub(0.1 * g)
""",
            note="assign_sub already",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.constant(2.0)
for step in range(3):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x * x
    g = tape.gradient(y, x)
    x = x - 0.1 * g
""",
            note="a plain tensor, watched on every turn: rebinding it is fine",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape() as tape:
    y = x * x
g = tape.gradient(y, x)
x = x - 0.1 * g
""",
            note="no loop: no later gradient of the rebound name",
        ),
        Valid(
            """\
import tensorflow as tf

for step in range(3):
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = x * x
    g = tape.gradient(y, x)
    x = x - 0.1 * g
""",
            note="a new variable on every turn of the loop",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
for step in range(2):
    with tf.GradientTape() as tape:
        y = x + 1
    dy_dx = tape.gradient(y, x)
    x = x + 1
""",
            """\
import tensorflow as tf

x = tf.Variable(2.0)
for step in range(2):
    with tf.GradientTape() as tape:
        y = x + 1
    dy_dx = tape.gradient(y, x)
    x.assign_add(1)
""",
            note="the TF guide's example; unverified: the fix is outside the tape block the verifier runs",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
b = tf.Variable(0.5)
lr = 0.1
step = 0
while step < 3:
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w * w) + b * b
    gw, gb = tape.gradient(loss, [w, b])
    w -= lr * gw
    b = b * 0.5 - lr * gb
    step += 1
""",
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
b = tf.Variable(0.5)
lr = 0.1
step = 0
while step < 3:
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w * w) + b * b
    gw, gb = tape.gradient(loss, [w, b])
    w.assign_sub(lr * gw)
    b.assign(b * 0.5 - lr * gb)
    step += 1
""",
            note="an augmented assignment (RuntimeError) and a general one; unverified: outside the tape block",
            verdict="unverified",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        self._reported: Set[int] = set()

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, _ = found
        sources = argument(node, 1, "sources")
        if sources is None:
            return
        loop = next((a for a in reversed(self.context.ancestors[:-1]) if isinstance(a, _LOOPS)), None)
        if loop is None or loop not in block.ancestors:
            return  # the tape is not opened anew in the loop that asks for gradients (TF112's case)
        for source in source_names(sources):
            name = source.value
            if not self._is_variable(name):
                continue
            if isinstance(loop, cst.For) and _binds(loop.target, name):
                continue
            rebinds = _rebindings(loop, name, block.node.body, self.context.text)
            if rebinds is None:
                continue
            for statement, text in rebinds:
                if id(statement) in self._reported:
                    continue
                self._reported.add(id(statement))
                message = f"variable `{name}` is replaced by a tensor here: the next `gradient` of it is None"
                if isinstance(statement, cst.AugAssign):
                    message = f"augmented assignment to the variable `{name}` raises RuntimeError: update it in place"
                self.report(
                    statement,
                    message,
                    edits=(self.context.replace(statement, text),),
                    description=f"update the variable `{name}` in place",
                )

    def _is_variable(self, name: str) -> bool:
        analysis = self.context.analysis
        definitions = analysis.definitions(name, self.context.function)
        return any(isinstance(d, cst.Call) and analysis.is_tf_call(d) == "Variable" for d in definitions)


def _rebindings(
    loop: cst.For | cst.While, name: str, tape_body: cst.CSTNode, text: Callable[[cst.CSTNode], str]
) -> Optional[List[Tuple[cst.CSTNode, str]]]:
    """The statements of ``loop`` that rebind ``name`` to a tensor, with their in-place replacement;
    None when the loop makes ``name`` anything tapefix cannot rewrite (a new variable, a loop target,
    a tuple unpacking)."""
    found: List[Tuple[cst.CSTNode, str]] = []
    inside_tape = set(walk(tape_body))
    body = loop.body
    for node in walk(body):
        if isinstance(node, cst.Assign):
            names = [t.target for t in node.targets]
            if not any(_binds(t, name) for t in names):
                continue
            if len(names) != 1 or not isinstance(names[0], cst.Name) or node in inside_tape:
                return None
            value = node.value
            if isinstance(value, cst.Call) and _is_variable_call(value):
                return None
            found.append((node, _in_place(name, value, text)))
        elif isinstance(node, cst.AugAssign) and _binds(node.target, name):
            if not isinstance(node.target, cst.Name) or node in inside_tape:
                return None
            method = {cst.AddAssign: "assign_add", cst.SubtractAssign: "assign_sub"}.get(type(node.operator))
            if method is None:
                return None
            found.append((node, f"{name}.{method}({text(node.value)})"))
        elif isinstance(node, (cst.For, cst.AnnAssign, cst.NamedExpr)) and _binds(node.target, name):
            return None
    return found or None


def _binds(target: cst.BaseExpression, name: str) -> bool:
    if isinstance(target, cst.Name):
        return target.value == name
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(_binds(e.value, name) for e in target.elements)
    if isinstance(target, cst.StarredElement):
        return _binds(target.value, name)
    return False


def _is_variable_call(call: cst.Call) -> bool:
    func = call.func
    return (isinstance(func, cst.Attribute) and func.attr.value == "Variable") or (
        isinstance(func, cst.Name) and func.value == "Variable"
    )


def _in_place(name: str, value: cst.BaseExpression, text: Callable[[cst.CSTNode], str]) -> str:
    """``x + e`` -> ``x.assign_add(e)``, ``x - e`` -> ``x.assign_sub(e)``, else ``x.assign(value)``."""
    if (
        isinstance(value, cst.BinaryOperation)
        and isinstance(value.left, cst.Name)
        and value.left.value == name
        and not value.lpar
        and isinstance(value.operator, (cst.Add, cst.Subtract))
    ):
        method = "assign_add" if isinstance(value.operator, cst.Add) else "assign_sub"
        return f"{name}.{method}({text(value.right)})"
    return f"{name}.assign({text(value)})"
