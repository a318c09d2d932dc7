"""TF112: a non-persistent tape asked for gradients more than once."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import libcst as cst

from tapefix.analysis.expressions import names_in
from tapefix.analysis.syntax import argument, target_names
from tapefix.rule import Invalid, RuleContext, TapeBlock, TapeBlockRule, Valid
from tapefix.types import Forward, Safety

_LOOPS = (cst.For, cst.While, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


class SecondGradientCall(TapeBlockRule):
    """
    ## What it does
    Finds a tape opened without `persistent=True` whose `gradient` / `jacobian` is called twice on one
    run of the code: two calls one after the other (not in exclusive branches of an `if`), or one call
    in a loop (or comprehension) that does not also open the tape.

    ## Why is this bad?
    A non-persistent tape frees its recording after the first call; the second raises
    `RuntimeError: A non-persistent GradientTape can only be used to compute one set of gradients (or
    jacobians)` (TF 2.21).

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss_a = f(x)
        loss_b = g(x)
    grad_a = tape.gradient(loss_a, x)
    grad_b = tape.gradient(loss_b, x)
    ```

    ## Use instead
    ```python
    with tf.GradientTape(persistent=True) as tape:
        loss_a = f(x)
        loss_b = g(x)
    grad_a = tape.gradient(loss_a, x)
    grad_b = tape.gradient(loss_b, x)
    ```

    ## Fix safety
    Safe: a persistent tape computes the same gradients; it only keeps its recording until it is
    garbage-collected (`del tape` frees it sooner). The fix adds `persistent=True` to the
    `tf.GradientTape(...)` call. A tape whose `persistent=` is not a literal, or whose constructor
    tapefix cannot see, is left alone.

    `--verify` checks this fix with a tape probe: the definitions the block reads, the `with` block
    and its gradient calls, run as written and fixed (docs/verification.md).
    It stays unverified when that slice needs code the verifier cannot copy (a model, a function
    of another module).

    ## References
    - research/idioms.md, idiom 21 (C10, X-C10-fix)
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF112"
    NAME = "second-gradient-call"
    MESSAGE = "second gradient call on a non-persistent tape: RuntimeError"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape(persistent=True) as tape:
    a = x * x
    b = x * 3.0
ga = tape.gradient(a, x)
gb = tape.gradient(b, x)
""",
            note="a persistent tape",
        ),
        Valid(
            """\
import tensorflow as tf

def step(x, first):
    with tf.GradientTape() as tape:
        y = x * x
    if first:
        g = tape.gradient(y, x)
    else:
        g = tape.jacobian(y, x)
    return g
""",
            note="exclusive branches",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
grads = []
for k in range(3):
    with tf.GradientTape() as tape:
        y = x * k
    grads.append(tape.gradient(y, x))
""",
            note="a new tape on every turn of the loop",
        ),
        Valid(
            """\
import tensorflow as tf

def step(x, persistent):
    with tf.GradientTape(persistent=persistent) as tape:
        y = x * x
    return tape.gradient(y, x), tape.gradient(y * 2.0, x)
""",
            note="persistent= is not a literal: tapefix cannot tell, so it says nothing",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape() as tape:
    a = x * x
    b = x * 3.0
ga = tape.gradient(a, x)
gb = tape.gradient(b, x)
""",
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape(persistent=True) as tape:
    a = x * x
    b = x * 3.0
ga = tape.gradient(a, x)
gb = tape.gradient(b, x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape(watch_accessed_variables=True) as tape:
    losses = [tf.reduce_sum(w * k) for k in (1.0, 2.0)]
grads = [tape.gradient(loss, w) for loss in losses]
""",
            """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0])
with tf.GradientTape(watch_accessed_variables=True, persistent=True) as tape:
    losses = [tf.reduce_sum(w * k) for k in (1.0, 2.0)]
grads = [tape.gradient(loss, w) for loss in losses]
""",
            note="one call in a comprehension, run once per loss",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
w = tf.Variable(3.0)
tape = tf.GradientTape()
with tape:
    y = x * w
for v in (x, w):
    g = tape.gradient(y, v)
""",
            """\
import tensorflow as tf

x = tf.Variable(2.0)
w = tf.Variable(3.0)
tape = tf.GradientTape(persistent=True)
with tape:
    y = x * w
for v in (x, w):
    g = tape.gradient(y, v)
""",
            note="a tape made before the with statement; a call in a loop",
        ),
        Invalid(
            """\
import tensorflow as tf

def step(x):
    with tf.GradientTape(False) as tape:
        y = x * x
    return tape.gradient(y, x), tape.jacobian(y, x)
""",
            """\
import tensorflow as tf

def step(x):
    with tf.GradientTape(True) as tape:
        y = x * x
    return tape.gradient(y, x), tape.jacobian(y, x)
""",
            note="two calls in one return statement; persistent given by position",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(1.5)
with tf.GradientTape() as tape:
    y = x**3
dy = tape.gradient(y, x)
d2y = tape.gradient(dy, x)
""",
            None,
            note="no fix: the second target is a gradient computed after the block, None on a persistent tape too",
        ),
    )

    def __init__(self, context: RuleContext) -> None:
        super().__init__(context)
        #: the gradient calls seen so far for each tape block, with the nodes above each
        self._calls: Dict[Tuple[cst.With, str], List[Tuple[cst.Call, Tuple[cst.CSTNode, ...]]]] = {}

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, method = found
        persistent = block.persistent
        if persistent is True:
            return
        ancestors = tuple(self.context.ancestors[:-1])
        earlier = self._calls.setdefault((block.node, block.name), [])
        earlier.append((node, ancestors))
        repeated = _loop_repeats(ancestors, block) or any(_both_run(a, ancestors) for _, a in earlier[:-1])
        if not repeated:
            return
        if persistent is None or block.constructor is None:
            return  # persistence unknown: the tape may well be persistent
        message = f"{method} called again on a non-persistent tape: RuntimeError"
        if self._unrecorded_target(node, block):
            # Persistence would only turn the RuntimeError into a None gradient, silently.
            self.report(node, message, no_fix_reason=_UNRECORDED)
            return
        self.report(
            node,
            message,
            edits=(self.context.persistent_edit(block.constructor),),
            description="make the tape persistent",
        )

    def _unrecorded_target(self, node: cst.Call, block: TapeBlock) -> bool:
        """Whether the repeated call's target is a name the block never computes: assigned after the block
        (a gradient differentiated again) or bound by a comprehension or loop around the call."""
        target = argument(node, 0, "target")
        if not isinstance(target, cst.Name) or target.value in self.recorded(block):
            return False
        if self.assigned_after(block, target.value):
            return True
        for ancestor in self.context.ancestors:
            if ancestor in block.ancestors:
                continue
            loops: List[Union[cst.For, cst.CompFor]] = [ancestor] if isinstance(ancestor, cst.For) else []
            fors = ancestor.for_in if isinstance(ancestor, _COMPREHENSIONS) else None
            while fors is not None:
                loops.append(fors)
                fors = fors.inner_for_in
            for loop in loops:
                if target.value in target_names(loop.target):
                    # Iterating what was computed after the block (gradients), not what the block computed.
                    read = set(names_in(loop.iter))
                    recorded = self.recorded(block)
                    return not (read & set(recorded)) and any(self.assigned_after(block, n) for n in read)
        return False


_UNRECORDED = (
    "the target is not computed in the with block, so its gradient is None: compute it inside the block "
    "first (a persistent tape would turn the RuntimeError into a silent None)"
)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)


def _loop_repeats(ancestors: Sequence[cst.CSTNode], block: TapeBlock) -> bool:
    """True when a loop around the call does not also open the tape on every turn, and no ``return``
    ends the loop at the call."""
    for index, node in enumerate(ancestors):
        if isinstance(node, _LOOPS) and node not in block.ancestors:
            return not any(isinstance(n, cst.Return) for n in ancestors[index:])
    return False


def _both_run(first: Sequence[cst.CSTNode], second: Sequence[cst.CSTNode]) -> bool:
    """Can two calls, at ``first`` and then ``second`` in source order, both run in one pass?"""
    returns = [n for n in first if isinstance(n, cst.Return)]
    if returns and not any(r is n for r in returns for n in second):
        return False  # the first call returns (unless both sit in one return statement)
    for index, (a, b) in enumerate(zip(first, second)):
        if a is not b:
            parent = first[index - 1] if index else None
            return not _exclusive(parent, a, b)
    return True


def _exclusive(parent: Optional[cst.CSTNode], a: cst.CSTNode, b: cst.CSTNode) -> bool:
    if isinstance(parent, (cst.If, cst.IfExp)):
        branches = (parent.body, parent.orelse)
        return any(a is x for x in branches) and any(b is x for x in branches)
    return False
