"""TF102: a Python ``if`` on a non-scalar tensor."""

from __future__ import annotations

import io
import tokenize
from typing import Dict, List, Optional, Sequence, Set, Tuple

import libcst as cst

from tapefix.analysis.expressions import names_in, numeric_literal, passed_shape
from tapefix.analysis.scope import Shape
from tapefix.analysis.tfops import SINGULAR_OPS
from tapefix.analysis.walk import children
from tapefix.rule import Invalid, Rule, RuleContext, Valid
from tapefix.types import Edit, Forward, Safety

_ELEMENTWISE_COMPARE = (cst.GreaterThan, cst.GreaterThanEqual, cst.LessThan, cst.LessThanEqual, cst.Equal, cst.NotEqual)


class PythonIfOnTensor(Rule):
    """
    ## What it does
    Finds a Python `if` whose condition compares a non-scalar tensor on the gradient path while a
    tape records, also in a helper the tape reaches through a call, when a call of the helper passes
    a non-scalar tensor (a batched model output, or something computed elementwise from one) as the
    parameter the condition compares.

    ## Why is this bad?
    Python needs one truth value. For a tensor with more than one element, eager TensorFlow raises
    `ValueError: The truth value of an array with more than one element is ambiguous`, and inside
    `tf.function` autograph raises `condition of if statement expected to be tf.bool scalar`. A
    provably scalar condition is fine on TF 2.21 (eager Python `if` and autograph's `tf.cond` both
    give the right piecewise gradient), so tapefix leaves it alone, and it says nothing when it cannot
    tell the shape.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        pred = model(x)
        if pred > 0.5:
            loss = pred ** 2
        else:
            loss = 3.0 * pred
    ```

    ## Use instead
    An elementwise choice:
    ```python
    with tf.GradientTape() as tape:
        pred = model(x)
        loss = tf.where(pred > 0.5, pred ** 2, 3.0 * pred)
    ```
    When a branch holds an op that is singular somewhere (log, sqrt, division, fractional powers),
    the rewrite uses the double-where form, `tf.where(c, f(tf.where(c, x, 1.0)), g)`: a plain
    `tf.where` would turn the unselected lane's inf into a NaN gradient.

    ## Fix safety
    Unsafe. Where the condition holds, the values are those of the `if` branch, and of the `else`
    branch elsewhere, lane by lane: this is the elementwise meaning the code asked for, but a Python
    `if` never broadcasts, and `tf.where` does. The fix is offered only for branches that assign the
    same plain names (or both `return`, also as `if c: return a` directly followed by `return b`) with
    simple statements and a single comparison as condition; anything else is reported without a fix.
    The comments inside the `if` are kept, in order, on lines of their own above the new statement.
    `tf.where` computes both branches on every element: checked on TF 2.21 for `sqrt`, the
    double-where form gives the per-element Python `if`'s values and gradients bit for bit, and keeps
    the gradient finite where a single `tf.where` around `log` or a division gives NaN.

    ## References
    - research/idioms.md, idiom 12 and findings 1 and 13 (D1-D10)
    """

    CODE = "TF102"
    NAME = "python-if-on-tensor"
    MESSAGE = "Python `if` on a non-scalar tensor: raises, or needs an elementwise tf.where"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
with tf.GradientTape() as tape:
    if x > 1.0:
        y = x ** 2
    else:
        y = 3.0 * x
""",
            note="a scalar condition has the right gradient in eager mode and under tf.function",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
for epoch in range(20):
    with tf.GradientTape() as tape:
        if epoch > 10:
            y = x * 2.0
        else:
            y = x
""",
            note="a Python counter",
        ),
        Valid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x ** 2)
    if loss > 1.0:
        loss = loss * 0.5
""",
            note="a full reduction is a scalar",
        ),
        Valid(
            """\
import tensorflow as tf

def loss_fn(y, debug):
    if debug:
        y = y * 1.0
    return y

x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    y = loss_fn(x, False)
""",
            note="a Python flag passed in",
        ),
        Valid(
            """\
import tensorflow as tf

def damped(v):
    if v > 0.5:
        return v * 0.5
    return v

def my_loss(t, p):
    return damped(tf.reduce_mean(tf.abs(t - p)))

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
xs, ys = tf.ones((8, 3)), tf.zeros((8, 1))
with tf.GradientTape() as tape:
    pred = model(xs)
    loss = my_loss(ys, pred)
""",
            note="a helper's `if` on a parameter that every call passes a full reduction: a scalar, fine in eager mode",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 0.5])
with tf.GradientTape() as tape:
    if x > 1.0:
        y = x ** 2
    else:
        y = 3.0 * x
""",
            """\
import tensorflow as tf

x = tf.Variable([2.0, 0.5])
with tf.GradientTape() as tape:
    y = tf.where(x > 1.0, x ** 2, 3.0 * x)
""",
        ),
        Invalid(
            """\
import tensorflow as tf

def piecewise(x):
    if x > 0.0:
        return tf.math.log(x)
    else:
        return x * 0.0

x = tf.Variable([2.0, 0.0, -1.0])
with tf.GradientTape() as tape:
    y = piecewise(x)
""",
            """\
import tensorflow as tf

def piecewise(x):
    return tf.where(x > 0.0, tf.math.log(tf.where(x > 0.0, x, 1.0)), x * 0.0)

x = tf.Variable([2.0, 0.0, -1.0])
with tf.GradientTape() as tape:
    y = piecewise(x)
""",
            note="log in a branch: the double-where form keeps the gradient finite at 0 and below",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable([0.5, -1.5, 3.0])
with tf.GradientTape() as tape:
    z = w * 2.0
    scale = 1.0
    if z < 0.0:
        z = -z
        scale = 2.0
""",
            """\
import tensorflow as tf

w = tf.Variable([0.5, -1.5, 3.0])
with tf.GradientTape() as tape:
    z = w * 2.0
    scale = 1.0
    if z < 0.0:
        z = -z
        scale = 2.0
""".replace(
                """    if z < 0.0:
        z = -z
        scale = 2.0
""",
                """    z, scale = tf.where(z < 0.0, -z, z), tf.where(z < 0.0, 2.0, scale)
""",
            ),
            note="several names, the condition's own name among them: assigned together so the "
            "condition is evaluated on the old values",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([2.0, 0.5])
with tf.GradientTape() as tape:
    if x > 1.0:
        print("big")
        y = x
    else:
        y = -x
""",
            None,
            note="a branch with a side effect has no elementwise form",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([2.5, 0.0, -1.0])
with tf.GradientTape() as tape:
    if x > 0.5:
        y = tf.math.lgamma(x)
    else:
        y = x * 0.0
""",
            """\
import tensorflow as tf

x = tf.Variable([2.5, 0.0, -1.0])
with tf.GradientTape() as tape:
    y = tf.where(x > 0.5, tf.math.lgamma(x), x * 0.0)
""",
            note="lgamma is singular at 0 but not on the guarded list: the single tf.where gives a NaN gradient "
            "in the lanes it does not select, and the verifier rejects the fix",
            verdict="failed",
        ),
        Invalid(
            """\
import tensorflow as tf

act = tf.keras.activations.get("relu")
x = tf.Variable([2.0, 0.5])
with tf.GradientTape() as tape:
    if x > 1.0:
        y = act(x)
    else:
        y = 0.5 * x
""",
            """\
import tensorflow as tf

act = tf.keras.activations.get("relu")
x = tf.Variable([2.0, 0.5])
with tf.GradientTape() as tape:
    y = tf.where(x > 1.0, act(x), 0.5 * x)
""",
            note="a branch calls a callable the verifier cannot rebuild, so the fix is unverified",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

def clipped(v):
    if v > 0.5:
        return tf.sqrt(v)
    else:
        return v

def my_loss(t, p):
    return tf.reduce_mean(clipped(tf.abs(t - p)))

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
xs, ys = tf.ones((8, 3)), tf.zeros((8, 1))
with tf.GradientTape() as tape:
    pred = model(xs)
    loss = my_loss(ys, pred)
""",
            """\
import tensorflow as tf

def clipped(v):
    return tf.where(v > 0.5, tf.sqrt(tf.where(v > 0.5, v, 1.0)), v)

def my_loss(t, p):
    return tf.reduce_mean(clipped(tf.abs(t - p)))

model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
xs, ys = tf.ones((8, 3)), tf.zeros((8, 1))
with tf.GradientTape() as tape:
    pred = model(xs)
    loss = my_loss(ys, pred)
""",
            note="a helper reached through another helper, called with an elementwise function of a batched "
            "model output: the `if` raises on the batch",
        ),
        Invalid(
            """\
import tensorflow as tf

def shrink(v):
    if v < 1.0:
        return v * v
    return 2.0 * v - 1.0

def penalty(w):
    return tf.reduce_sum(shrink(w * 0.5))

w = tf.Variable([0.5, 3.0, -4.0])
with tf.GradientTape() as tape:
    loss = penalty(w)
""",
            """\
import tensorflow as tf

def shrink(v):
    return tf.where(v < 1.0, v * v, 2.0 * v - 1.0)

def penalty(w):
    return tf.reduce_sum(shrink(w * 0.5))

w = tf.Variable([0.5, 3.0, -4.0])
with tf.GradientTape() as tape:
    loss = penalty(w)
""",
            note="`if c: return a` followed by `return b` is an if/else too; the fix spans two statements, "
            "which the verifier does not isolate",
            verdict="unverified",
        ),
        Invalid(
            """\
import tensorflow as tf

def ramp(v):
    if v > 0.0:  # the active side
        return v * 2.0
    else:
        # flat below zero
        return v * 0.0

w = tf.Variable([1.0, -1.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(ramp(w * 3.0))
g = tape.gradient(loss, w)
""",
            """\
import tensorflow as tf

def ramp(v):
    # the active side
    # flat below zero
    return tf.where(v > 0.0, v * 2.0, v * 0.0)

w = tf.Variable([1.0, -1.0])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(ramp(w * 3.0))
g = tape.gradient(loss, w)
""",
            note="the comments inside the if are kept above the new statement",
        ),
    )

    def visit_If(self, node: cst.If) -> None:
        context = self.context
        if not self._tensor_condition(node.test):
            return
        shape = self._shape(node.test)
        if shape is not Shape.NONSCALAR:
            return
        following = self._following_return(node)
        reason, text = self._rewrite(node, following)
        if text is None:
            self.report(node.test, no_fix_reason=reason)
            return
        tf, import_edits = context.tf()
        start, end = context.span(node)
        if following is not None and node.orelse is None:
            end = context.span(following)[1]  # ``if c: return a`` then ``return b``: both become one return
        # The comments of the if's lines stay, on lines of their own above the statement that replaces it.
        indent = context.line_indent(node)
        comments = _comments(context.source, start, end)
        if comments is None:
            self.report(node.test, no_fix_reason="the comments inside the if cannot be kept")
            return
        kept = "".join(f"{comment}{context.newline}{indent}" for comment in comments)
        self.report(
            node.test,
            edits=(Edit(start, end, kept + text.format(tf=tf)), *import_edits),
            description="elementwise tf.where in place of the Python if",
        )

    def _following_return(self, node: cst.If) -> Optional[cst.SimpleStatementLine]:
        """The ``return b`` line right after an ``if c: return a`` with no else, in the same block."""
        if node.orelse is not None or len(self.context.ancestors) < 2:
            return None
        block = self.context.parent
        if not isinstance(block, cst.IndentedBlock):
            return None
        index = next((i for i, s in enumerate(block.body) if s is node), None)
        if index is None or index + 1 >= len(block.body):
            return None
        following = block.body[index + 1]
        if (
            isinstance(following, cst.SimpleStatementLine)
            and len(following.body) == 1
            and isinstance(following.body[0], cst.Return)
        ):
            return following
        return None

    # ------------------------------------------------------------------ detection
    def _comparisons(self, test: cst.BaseExpression) -> List[cst.Comparison]:
        if isinstance(test, cst.Comparison):
            return [test]
        if isinstance(test, cst.BooleanOperation):
            return self._comparisons(test.left) + self._comparisons(test.right)
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            return self._comparisons(test.expression)
        return []

    def _tensor_condition(self, test: cst.BaseExpression) -> bool:
        for comparison in self._comparisons(test):
            if not all(isinstance(t.operator, _ELEMENTWISE_COMPARE) for t in comparison.comparisons):
                continue
            operands = [comparison.left] + [t.comparator for t in comparison.comparisons]
            if any(self.context.on_path(o) for o in operands):
                return True
        return False

    def _shape(self, test: cst.BaseExpression) -> Shape:
        shapes: List[Shape] = []
        for comparison in self._comparisons(test):
            operands = [comparison.left] + [t.comparator for t in comparison.comparisons]
            shapes.extend(self._operand_shape(o) for o in operands)
        if Shape.NONSCALAR in shapes:
            return Shape.NONSCALAR
        if shapes and all(s is Shape.SCALAR for s in shapes):
            return Shape.SCALAR
        return Shape.UNKNOWN

    def _operand_shape(self, operand: cst.BaseExpression) -> Shape:
        """The operand's shape class; for a parameter of a helper whose shape the model leaves open,
        what the helper's callers pass (a batched model output passed on through another helper)."""
        shape = self.context.value(operand).shape
        function = self.context.function
        if shape is Shape.UNKNOWN and isinstance(operand, cst.Name) and function is not None:
            return passed_shape(self.context.analysis, function, operand.value)
        return shape

    # ------------------------------------------------------------------ the rewrite
    def _rewrite(self, node: cst.If, following: Optional[cst.SimpleStatementLine]) -> Tuple[str, Optional[str]]:
        """(reason, replacement text with ``{tf}`` placeholders); text None when there is no fix.
        ``following`` is the ``return b`` right after an ``if`` with no else: it is the else branch."""
        context = self.context
        test = node.test
        if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
            return "the condition is not a single comparison", None
        if isinstance(node.orelse, cst.If):
            return "elif chains are not rewritten", None
        then = _simple_statements(node.body)
        if node.orelse is not None:
            other = _simple_statements(node.orelse.body)
        elif following is not None and then is not None and [type(s) for s in then] == [cst.Return]:
            other = list(following.body)
        else:
            other, following = [], None
        if then is None or other is None:
            return "a branch holds statements that are not simple assignments", None
        cond = context.text(test)
        cond_names = {n for n in names_in(test) if context.on_path(cst.Name(n))}
        returns = [s for s in then + other if isinstance(s, cst.Return)]
        if returns:
            if len(then) == 1 and len(other) == 1 and len(returns) == 2:
                then_value, else_value = returns[0].value, returns[1].value
                if then_value is None or else_value is None:
                    return "a bare return", None
                where = self._where(cond, then_value, else_value, cond_names)
                return "", f"return {where}"
            return "a branch mixes return with other statements", None
        assigned_then = _assignments(then)
        assigned_else = _assignments(other)
        if assigned_then is None or assigned_else is None:
            return "a branch holds statements that are not single-name assignments", None
        names = list(dict.fromkeys([n for n, _ in assigned_then] + [n for n, _ in assigned_else]))
        then_map, else_map = dict(assigned_then), dict(assigned_else)
        if len(then_map) != len(assigned_then) or len(else_map) != len(assigned_else):
            return "a branch assigns the same name twice", None
        # All names are assigned at once, so every branch expression reads the values from before the if.
        for expr in [e for _, e in assigned_then + assigned_else]:
            # Reading a name the same branch assigned earlier would need sequential semantics.
            if self._reads_earlier(expr, assigned_then, assigned_else):
                return "a branch reads a name it assigned earlier", None
        values = []
        for name in names:
            then_value = then_map.get(name)
            else_value = else_map.get(name)
            values.append(self._where(cond, then_value, else_value, cond_names, default=name))
        targets = ", ".join(names)
        return "", f"{targets} = {', '.join(values)}"

    def _reads_earlier(
        self,
        expr: cst.BaseExpression,
        then: Sequence[Tuple[str, cst.BaseExpression]],
        other: Sequence[Tuple[str, cst.BaseExpression]],
    ) -> bool:
        for branch in (then, other):
            earlier: Set[str] = set()
            for name, value in branch:
                if value is expr:
                    return bool(earlier & set(names_in(expr)))
                earlier.add(name)
        return False

    def _where(
        self,
        cond: str,
        then_value: Optional[cst.BaseExpression],
        else_value: Optional[cst.BaseExpression],
        cond_names: Set[str],
        default: str = "",
    ) -> str:
        then_text = self._guarded(then_value, cond, cond_names, True) if then_value is not None else default
        else_text = self._guarded(else_value, cond, cond_names, False) if else_value is not None else default
        return f"{{tf}}.where({_braces(cond)}, {then_text}, {else_text})"

    def _guarded(self, expr: cst.BaseExpression, cond: str, cond_names: Set[str], selected_when: bool) -> str:
        """The branch's text; inside singular ops, the condition's names are replaced by a safe value in
        the lanes the branch does not select (the double-where form)."""
        context = self.context
        text = context.text(expr)
        singular = [n for n in _singular_args(expr, context) if set(names_in(n)) & cond_names]
        if not singular:
            return _braces(text)
        base, _ = context.span(expr)
        edits: Dict[Tuple[int, int], str] = {}
        for arg in singular:
            for name_node in _name_nodes(arg, cond_names):
                start, end = context.span(name_node)
                name = name_node.value
                guarded = (
                    f"{{tf}}.where({_braces(cond)}, {name}, 1.0)"
                    if selected_when
                    else f"{{tf}}.where({_braces(cond)}, 1.0, {name})"
                )
                edits[(start - base, end - base)] = guarded
        out, cursor = [], 0
        for (start, end), replacement in sorted(edits.items()):
            out.append(_braces(text[cursor:start]))
            out.append(replacement)
            cursor = end
        out.append(_braces(text[cursor:]))
        return "".join(out)


def _comments(source: str, start: int, end: int) -> Optional[List[str]]:
    """The comments in ``source[start:end]`` (a statement's text), in order; None when the text cannot
    be tokenised on its own (then a rewrite could lose one)."""
    line_start = source.rfind("\n", 0, start) + 1
    text = source[line_start:end] + "\n"
    found: List[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return found


def _braces(text: str) -> str:
    """Escape user text for str.format."""
    return text.replace("{", "{{").replace("}", "}}")


def _simple_statements(block: cst.BaseSuite) -> Optional[List[cst.BaseSmallStatement]]:
    if isinstance(block, cst.SimpleStatementSuite):
        return list(block.body)
    statements: List[cst.BaseSmallStatement] = []
    assert isinstance(block, cst.IndentedBlock)
    for statement in block.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            return None
        statements.extend(statement.body)
    return statements


def _assignments(statements: Sequence[cst.BaseSmallStatement]) -> Optional[List[Tuple[str, cst.BaseExpression]]]:
    out = []
    for statement in statements:
        if (
            isinstance(statement, cst.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0].target, cst.Name)
        ):
            out.append((statement.targets[0].target.value, statement.value))
        else:
            return None
    return out


def _singular_args(expr: cst.CSTNode, context: RuleContext) -> List[cst.CSTNode]:
    """Arguments of ops inside ``expr`` whose gradient is inf/NaN at some input."""
    found: List[cst.CSTNode] = []

    def walk(node: cst.CSTNode) -> None:
        if isinstance(node, cst.Call) and context.analysis.is_tf_call(node) in SINGULAR_OPS and node.args:
            found.append(node.args[0].value)
        elif isinstance(node, cst.BinaryOperation):
            if isinstance(node.operator, cst.Divide):
                found.append(node.right)
            elif isinstance(node.operator, cst.Power):
                exponent = numeric_literal(node.right)
                if exponent is None or exponent < 0 or exponent != int(exponent):
                    found.append(node.left)
        for child in children(node):
            walk(child)

    walk(expr)
    return found


def _name_nodes(expr: cst.CSTNode, names: Set[str]) -> List[cst.Name]:
    out: List[cst.Name] = []

    def walk(node: cst.CSTNode, parent: Optional[cst.CSTNode]) -> None:
        if (
            isinstance(node, cst.Name)
            and node.value in names
            and not (isinstance(parent, cst.Attribute) and node is parent.attr)
        ):
            out.append(node)
        for child in children(node):
            walk(child, node)

    walk(expr, None)
    return out
