"""TF110: a gradient source that is a plain tensor the tape never watches."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Set, Tuple

import libcst as cst

from tapefix.analysis.reaching import reaching
from tapefix.analysis.syntax import argument, integer_tensor, keyword, source_names, target_names, walk
from tapefix.analysis.tfops import TENSOR_CONSTRUCTORS
from tapefix.rule import Invalid, TapeBlock, TapeBlockRule, Valid, report_fix
from tapefix.types import Edit, Forward, Safety


def _computed_tensor(short: str) -> bool:
    """A TensorFlow op whose result is a new tensor (never a variable, a model or a Python value)."""
    head = short.split(".")[0]
    if short.startswith(("Variable", "keras", "data", "distribute", "saved_model", "train", "io", "summary")):
        return False
    if head in ("GradientTape", "function", "TensorSpec", "TensorArray", "sparse", "nest", "config", "debugging"):
        return short in ("sparse.to_dense",)
    return head[:1].islower()


def _line_start(source: str, offset: int) -> int:
    return max(source.rfind("\n", 0, offset), source.rfind("\r", 0, offset)) + 1


class UnwatchedSource(TapeBlockRule):
    """
    ## What it does
    Finds a gradient source, a name in `tape.gradient(target, sources)`, that is bound to a plain
    tensor (`tf.constant`, `tf.convert_to_tensor`, `tf.zeros`, ...) and that the tape does not watch,
    or watches only after the block first uses it. Variables are watched automatically, except on a
    tape opened with `watch_accessed_variables=False` and for `tf.Variable(..., trainable=False)`.

    ## Why is this bad?
    A tape records operations only on what it watches. For an unwatched tensor,
    `tape.gradient(y, x)` returns `None`, without a warning (TF 2.21); so it does when `tape.watch(x)`
    comes after the operations that used `x`.

    ## Example
    ```python
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        y = x ** 2
    dy_dx = tape.gradient(y, x)
    ```

    ## Use instead
    ```python
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x ** 2
    dy_dx = tape.gradient(y, x)
    ```

    ## Fix safety
    Safe: watching a tensor changes no value; the gradient becomes the true one instead of `None`.
    Unsafe for a variable made with `trainable=False`: its author may have frozen it on purpose, and an
    optimizer given the gradient the watch brings then updates it.
    The `tape.watch` calls go first in the block; a source the block itself makes (`x =
    tf.constant(...)` in the block, once, on a line of its own, read nowhere before) is watched on a new
    line right after that assignment. No fix is offered for a source assigned in the block otherwise
    (a watch at the top would run before it exists), when it is a NumPy array (`tape.watch`
    raises on one: convert it with `tf.convert_to_tensor` first) or when the block is a one-line
    `with`. Integer tensors are left to TF111: watching one still gives `None`.

    `--verify` checks this fix with a tape probe: the definitions the block reads, the `with` block
    and its gradient calls, run as written and fixed (docs/verification.md).
    It stays unverified when that slice needs code the verifier cannot copy (a model, a function
    of another module).

    ## References
    - research/idioms.md, idioms 4 and 17 (C1-constant-unwatched, C1-watch-after-use, C1-fix-watch,
      A12, C7-fix-watch-var)
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF110"
    NAME = "unwatched-source"
    MESSAGE = "gradient source is a tensor the tape does not watch: its gradient is None"
    SAFETY = Safety.SAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.constant(3.0)
w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    tape.watch(x)
    y = x ** 2 * w
grads = tape.gradient(y, [x, w])
""",
            note="a watched tensor and a variable",
        ),
        Valid(
            """\
import tensorflow as tf

def step(x):
    with tf.GradientTape() as tape:
        y = x ** 2
    return tape.gradient(y, x)
""",
            note="a parameter may be a variable: not flagged",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.constant(3)
with tf.GradientTape() as tape:
    tape.watch(x)
    y = x * 2
g = tape.gradient(y, x)
""",
            note="an integer tensor: watching does not help (TF111)",
        ),
        Valid(
            """\
import tensorflow as tf

def vanilla_gradients(model, images):
    with tf.GradientTape() as tape:
        inputs = tf.cast(images, tf.float32)
        tape.watch(inputs)
        scores = model(inputs)
    return tape.gradient(scores, inputs)
""",
            note="assigned in the block, then watched before its first read (tf-explain's saliency code)",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.constant(3.0)
with tf.GradientTape() as tape:
    y = x ** 2
dy_dx = tape.gradient(y, x)
""",
            """\
import tensorflow as tf

x = tf.constant(3.0)
with tf.GradientTape() as tape:
    tape.watch(x)
    y = x ** 2
dy_dx = tape.gradient(y, x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

image = tf.zeros((1, 4))
scale = tf.constant([1.0, 2.0, 3.0, 4.0])
with tf.GradientTape() as g:
    # saliency of the input
    score = tf.reduce_sum(image * scale)
    g.watch(scale)
saliency, dscale = g.gradient(score, [image, scale])
""",
            """\
import tensorflow as tf

image = tf.zeros((1, 4))
scale = tf.constant([1.0, 2.0, 3.0, 4.0])
with tf.GradientTape() as g:
    # saliency of the input
    g.watch(image)
    g.watch(scale)
    score = tf.reduce_sum(image * scale)
    g.watch(scale)
saliency, dscale = g.gradient(score, [image, scale])
""",
            note="two sources, one watched only after its use",
        ),
        Invalid(
            """\
import tensorflow as tf

bias = tf.Variable(0.5, trainable=False)
with tf.GradientTape() as tape:
    y = 3.0 * bias
g = tape.gradient(y, bias)
""",
            """\
import tensorflow as tf

bias = tf.Variable(0.5, trainable=False)
with tf.GradientTape() as tape:
    tape.watch(bias)
    y = 3.0 * bias
g = tape.gradient(y, bias)
""",
            note="a non-trainable variable is not watched automatically",
        ),
        Invalid(
            """\
import tensorflow as tf

a = tf.constant(3.0)
with tf.GradientTape() as tape:
    b = a * 2.0
g = tape.gradient(b, a)
a = tf.Variable(3.0)
""",
            """\
import tensorflow as tf

a = tf.constant(3.0)
with tf.GradientTape() as tape:
    tape.watch(a)
    b = a * 2.0
g = tape.gradient(b, a)
a = tf.Variable(3.0)
""",
            note="rebound to a variable only after the tape: the tensor is what the tape sees",
        ),
        Invalid(
            """\
import tensorflow as tf

v = tf.Variable(2.0)
with tf.GradientTape() as first:
    h = v ** 2
with tf.GradientTape() as second:
    out = tf.sin(h)
dh = second.gradient(out, h)
""",
            """\
import tensorflow as tf

v = tf.Variable(2.0)
with tf.GradientTape() as first:
    h = v ** 2
with tf.GradientTape() as second:
    second.watch(h)
    out = tf.sin(h)
dh = second.gradient(out, h)
""",
            note="a tensor computed under another tape: this tape does not watch it",
            verdict="unverified",
        ),
        Invalid(
            """\
import numpy as np
import tensorflow as tf

x = np.array([1.0, 2.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(tf.square(x))
g = tape.gradient(y, x)
""",
            None,
            note="tape.watch raises on a NumPy array: convert it first",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    x = tf.constant(3.0)  # made in the block
    y = x * x * w
g = tape.gradient(y, [x, w])
""",
            """\
import tensorflow as tf

w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    x = tf.constant(3.0)  # made in the block
    tape.watch(x)
    y = x * x * w
g = tape.gradient(y, [x, w])
""",
            note="a tensor made in the block is watched right after it is made",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.constant(1.0)
with tf.GradientTape() as tape:
    z = x * 2.0
    x = tf.constant(3.0)
    y = x * z
g = tape.gradient(y, x)
""",
            None,
            note="no fix: the block reads another x before making this one",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        block, _ = found
        sources = argument(node, 1, "sources")
        if sources is None:
            return
        context = self.context
        body = block.node.body
        assigned = self.recorded(block)
        needing: List[Tuple[cst.Name, str]] = []
        for source in source_names(sources):
            verdict = self._needs_watch(source.value, block, assigned)
            if verdict is not None:
                needing.append((source, verdict))
        if not needing:
            return
        fixable = [s.value for s, verdict in needing if verdict in ("fix", "frozen")]
        # A variable made with trainable=False gets a gradient once watched: an optimizer given it then
        # updates a variable its author froze. The fix is then unsafe.
        frozen = any(verdict == "frozen" for _, verdict in needing)
        edits: Tuple[Edit, ...] = ()
        if fixable and isinstance(body, cst.IndentedBlock) and body.body:
            first = body.body[0]
            start, _ = context.span(first)
            line_start = _line_start(context.source, start)
            indent = context.source[line_start:start]
            if not indent.strip():
                text = "".join(
                    f"{indent}{block.name}.watch({name}){context.newline}" for name in dict.fromkeys(fixable)
                )
                edits = (Edit(line_start, line_start, text),)
        for source, verdict in needing:
            name = source.value
            message = (
                f"gradient source `{name}` is a tensor the tape does not watch before using it: its gradient is None"
                if verdict != "frozen"
                else f"gradient source `{name}` is a variable made with trainable=False, which the tape does not "
                "watch: its gradient is None"
            )
            if verdict == "numpy":
                self.report(
                    source,
                    f"gradient source `{name}` is a NumPy array: the tape cannot watch it, its gradient is None",
                    no_fix_reason="tape.watch raises on a NumPy array: convert it with tf.convert_to_tensor first",
                )
            elif verdict == "inside":
                after = self._watch_after_assignment(block, name)
                if after is None:
                    self.report(
                        source, message, no_fix_reason="it is assigned inside the block: watch it right after that"
                    )
                else:
                    self.report(source, message, edits=(after,), description=f"watch {name} right after it is made")
            elif edits:
                report_fix(
                    self,
                    source,
                    edits,
                    f"watch {', '.join(fixable)} first in the block",
                    Safety.UNSAFE if frozen else self.SAFETY,
                    self.FORWARD,
                    message=message,
                )
            else:
                self.report(source, message, no_fix_reason="a one-line with block: add tape.watch by hand")

    def _needs_watch(self, name: str, block: TapeBlock, assigned: Dict[str, List[cst.BaseExpression]]) -> Optional[str]:
        """None when ``name`` needs no watch (or tapefix cannot tell); else "fix", "inside" or "numpy"."""
        context = self.context
        analysis = context.analysis
        # The assignment the gradient call sees, when straight-line code makes it certain: ``x`` may be
        # rebound to a variable further down, after this tape.
        definitions: List[cst.BaseExpression] = analysis.definitions(name, context.function)
        seen = reaching(name, context.ancestors) if len(definitions) > 1 else None
        if seen is not None and seen.definition is not None and not seen.definition.index:
            definitions = [seen.definition.value]
        if not definitions:
            return None
        watch_variables = True
        if block.constructor is not None:
            flag = keyword(block.constructor, "watch_accessed_variables")
            watch_variables = not (isinstance(flag, cst.Name) and flag.value == "False")
        numpy = False
        for definition in definitions:
            if isinstance(definition, cst.BinaryOperation) and self._tensor_arithmetic(definition):
                continue  # ``y = x ** 2``: a new tensor, computed before (or under another tape)
            if not isinstance(definition, cst.Call):
                return None
            if analysis.is_numpy_call(definition) is not None:
                numpy = True
                continue
            short = analysis.is_tf_call(definition)
            if short == "Variable":
                trainable = keyword(definition, "trainable")
                frozen = isinstance(trainable, cst.Name) and trainable.value == "False"
                if integer_tensor(definition, short) or (watch_variables and not frozen):
                    return None
            elif short is None or integer_tensor(definition, short):
                return None
            elif short not in TENSOR_CONSTRUCTORS and not _computed_tensor(short):
                return None
        if numpy:
            numpy_only = all(isinstance(d, cst.Call) and analysis.is_numpy_call(d) is not None for d in definitions)
            return "numpy" if numpy_only else None
        first_use, first_watch = _first_use_and_watch(block.node.body, block.name, name, self._may_hold)
        if first_use is None:
            return None  # not read in the block: a watch would not connect it
        if first_watch is not None and first_watch < first_use:
            return None
        if name in assigned:
            return "inside"
        frozen = any(
            isinstance(d, cst.Call)
            and analysis.is_tf_call(d) == "Variable"
            and isinstance(keyword(d, "trainable"), cst.Name)
            and keyword(d, "trainable").value == "False"  # type: ignore[union-attr]
            for d in definitions
        )
        return "frozen" if frozen else "fix"

    def _watch_after_assignment(self, block: TapeBlock, name: str) -> Optional[Edit]:
        """``tape.watch(name)`` on a new line right after the one statement of the block that assigns
        ``name`` (a line of its own, in an indented block), when no read of ``name`` comes before it."""
        context = self.context
        statements = [
            node
            for node in walk(block.node.body)
            if isinstance(node, cst.SimpleStatementLine)
            and any(
                name in target_names(t.target)
                for small in node.body
                if isinstance(small, cst.Assign)
                for t in small.targets
            )
        ]
        stores = [
            node
            for node in walk(block.node.body)
            if isinstance(node, (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr, cst.CompFor))
            and name in target_names(node.target)
        ]
        if len(statements) != 1 or len(stores) != 1 or len(statements[0].body) != 1:
            return None
        statement = statements[0]
        start, end = context.span(statement.body[0])
        first_use, _ = _first_use_and_watch(block.node.body, block.name, name, self._may_hold)
        assignment_read = any(isinstance(n, cst.Name) and n.value == name for n in walk(statement.body[0].value))  # type: ignore[attr-defined]
        if assignment_read:
            return None  # ``x = f(x)``: the value read before it is another one
        uses_before = [
            n
            for n in walk(block.node.body)
            if isinstance(n, cst.Name) and n.value == name and context.span(n)[0] < start
        ]
        if uses_before or first_use is None:
            return None
        line_start = context.source.rfind("\n", 0, start) + 1
        indent = context.source[line_start:start]
        line_end = context.source.find("\n", end)
        if indent.strip(" \t") or line_end < 0:
            return None
        at = line_end - 1 if context.source[line_end - 1 : line_end] == "\r" else line_end
        return Edit(at, at, f"{context.newline}{indent}{block.name}.watch({name})")

    def _tensor_arithmetic(self, expr: cst.BinaryOperation) -> bool:
        """Arithmetic whose result is certainly a tensor: one operand is a variable or a TensorFlow op's
        result, and it is not ``+`` on something that may be a list (``vars_a + vars_b``)."""
        analysis = self.context.analysis
        sides = (expr.left, expr.right)
        tensor = False
        for side in sides:
            if isinstance(side, (cst.List, cst.Tuple, cst.ListComp)):
                return False
            if isinstance(side, cst.Call) and analysis.is_tf_call(side) is not None:
                tensor = True
            elif isinstance(side, cst.Name):
                found = analysis.definitions(side.value, self.context.function)
                if found and all(isinstance(d, cst.Call) and analysis.is_tf_call(d) is not None for d in found):
                    tensor = True
                elif isinstance(expr.operator, cst.Add):
                    return False
            elif isinstance(expr.operator, cst.Add) and not isinstance(side, (cst.Integer, cst.Float)):
                return False
        return tensor

    def _may_hold(self, other: cst.Name) -> bool:
        """Could ``tape.watch(other)`` watch another tensor too: is ``other`` anything but a tensor
        tapefix knows (a list of tensors, a parameter, a value from elsewhere)?"""
        analysis = self.context.analysis
        definitions = analysis.definitions(other.value, self.context.function)
        return not definitions or not all(
            isinstance(d, cst.Call) and analysis.is_tf_call(d) in TENSOR_CONSTRUCTORS | {"Variable"}
            for d in definitions
        )


def _first_use_and_watch(
    body: cst.CSTNode, tape: str, name: str, may_hold: Callable[[cst.Name], bool]
) -> Tuple[Optional[int], Optional[int]]:
    """Source-order positions of the first read of ``name`` in ``body`` and of the first
    ``tape.watch`` that may watch it: one that names it, or whose argument tapefix cannot see through
    (``tape.watch(inputs)`` with ``inputs = [x, y]``, ``tape.watch(self.x)``)."""
    first_use: Optional[int] = None
    first_watch: Optional[int] = None
    watch_args: Set[cst.CSTNode] = set()
    # Names written, not read: `inputs = tf.cast(images, tf.float32)` then `tape.watch(inputs)` is
    # correct code, and its assignment target is no use of the source.
    stores: Set[cst.CSTNode] = set()
    for node in walk(body):
        if isinstance(node, cst.AssignTarget):
            stores.update(_stored_names(node.target))
        elif isinstance(node, (cst.AnnAssign, cst.For)):
            stores.update(_stored_names(node.target))
        elif isinstance(node, cst.NamedExpr):
            stores.update(_stored_names(node.target))
    for index, node in enumerate(walk(body)):
        if (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "watch"
            and isinstance(node.func.value, cst.Name)
            and node.func.value.value == tape
            and node.args
        ):
            argument_ = node.args[0].value
            watched = source_names(argument_)
            watch_args.update(watched)
            opaque = not isinstance(argument_, cst.Name) and not (
                isinstance(argument_, (cst.List, cst.Tuple)) and len(watched) == len(argument_.elements)
            )
            maybe = opaque or any(n.value == name or may_hold(n) for n in watched)
            if maybe and first_watch is None:
                first_watch = index
        elif (
            isinstance(node, cst.Name)
            and node.value == name
            and node not in watch_args
            and node not in stores
            and first_use is None
        ):
            first_use = index
    return first_use, first_watch


def _stored_names(target: cst.BaseExpression) -> List[cst.Name]:
    if isinstance(target, cst.Name):
        return [target]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for element in target.elements for n in _stored_names(element.value)]
    if isinstance(target, cst.StarredElement):
        return _stored_names(target.value)
    return []
