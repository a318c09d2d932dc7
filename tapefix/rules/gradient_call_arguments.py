"""TF126: a ``tape.gradient`` / ``jacobian`` call whose arguments make it raise."""

from __future__ import annotations

import difflib
from typing import List, Optional, Sequence

import libcst as cst

from tapefix.analysis.reaching import reaching
from tapefix.analysis.syntax import argument, walk
from tapefix.analysis.tfops import GRADIENT_KEYWORDS, SPARSE_CONSTRUCTORS
from tapefix.rule import Invalid, TapeBlockRule, Valid
from tapefix.types import Forward, Safety


class GradientCallArguments(TapeBlockRule):
    """
    ## What it does
    Finds a gradient call that raises because of what it is given: a keyword the method does not
    take (`output_gradient=` for `output_gradients=`), sources that are strings (variable names
    instead of the variables), a `tf.SparseTensor` as a source or target, or a Python list as the
    target of `jacobian` / `batch_jacobian`.

    ## Why is this bad?
    Each of these raises when the gradient is asked for (TF 2.21): `TypeError: got an unexpected
    keyword argument`, `TypeError: Cannot convert ... to a TensorFlow DType` for a string source,
    `ValueError: Type SparseTensor is not supported as a gradient source or gradient target`,
    `AttributeError: 'list' object has no attribute 'shape'` for a list target of `jacobian`
    (`gradient` sums a list target; `jacobian` does not).

    ## Example
    ```python
    hvp = outer.gradient(grad, x, output_gradient=v)
    ```

    ## Use instead
    ```python
    hvp = outer.gradient(grad, x, output_gradients=v)
    ```

    ## Fix safety
    A misspelt keyword with one close match is renamed (unsafe: the call ran into an error before,
    now it computes what the keyword says). Nothing else is fixed: pass the variables themselves,
    differentiate with respect to a dense tensor (or the sparse tensor's `.values`), and stack a
    list target with `tf.stack` when its parts have the same shape.
    """

    TAPE_CALLS_ONLY = True
    CODE = "TF126"
    NAME = "gradient-call-arguments"
    MESSAGE = "this gradient call raises because of its arguments"
    SAFETY = Safety.UNSAFE
    FORWARD = Forward.EXACT

    VALID = (
        Valid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
v = tf.constant(1.0)
with tf.GradientTape(persistent=True) as tape:
    y = x ** 3
    parts = [y, 2.0 * y]
g = tape.gradient(y, x, output_gradients=v, unconnected_gradients="zero")
h = tape.gradient(parts, x)
j = tape.jacobian(y, [x], experimental_use_pfor=False)
""",
            note="the keywords the methods take; gradient sums a list target",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable(2.0)
v = tf.constant(1.0)
with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
        y = x ** 3
    g = inner.gradient(y, x)
hvp = outer.gradient(g, x, output_gradient=v)
""",
            """\
import tensorflow as tf

x = tf.Variable(2.0)
v = tf.constant(1.0)
with tf.GradientTape() as outer:
    with tf.GradientTape() as inner:
        y = x ** 3
    g = inner.gradient(y, x)
hvp = outer.gradient(g, x, output_gradients=v)
""",
            note="a misspelt keyword",
        ),
        Invalid(
            """\
import tensorflow as tf

w = tf.Variable(1.0, name="w")
with tf.GradientTape() as tape:
    loss = w * 2.0
names = ["w"]
g = tape.gradient(loss, names)
""",
            None,
            note="variable names are not variables",
        ),
        Invalid(
            """\
import tensorflow as tf

s = tf.sparse.SparseTensor(indices=[[0, 1]], values=[2.0], dense_shape=[2, 2])
with tf.GradientTape() as tape:
    tape.watch(s.values)
    total = tf.sparse.reduce_sum(s)
g = tape.gradient(total, s)
""",
            None,
            note="a sparse tensor as a source",
        ),
        Invalid(
            """\
import tensorflow as tf

def powers(t):
    return [t ** 2, t ** 3]

x = tf.constant([2.0])
with tf.GradientTape() as tape:
    tape.watch(x)
    ys = powers(x)
jac = tape.jacobian(ys, x)
""",
            None,
            note="jacobian of a list",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        found = self.tape_call(node)
        if found is None:
            return
        _, method = found
        allowed = GRADIENT_KEYWORDS[method]
        for arg in node.args:
            if arg.keyword is None or arg.keyword.value in allowed:
                continue
            word = arg.keyword.value
            close = difflib.get_close_matches(word, allowed, n=2, cutoff=0.8)
            message = f"`{method}()` takes no keyword `{word}`: the call raises TypeError"
            if len(close) == 1:
                self.report(
                    arg.keyword,
                    message + f" (did you mean `{close[0]}`?)",
                    edits=(self.context.replace(arg.keyword, close[0]),),
                    description=f"rename to {close[0]}",
                )
            else:
                self.report(arg.keyword, message, no_fix_reason="pass only the keywords the method takes")
            return
        target = argument(node, 0, "target")
        sources = argument(node, 1, "source" if method == "batch_jacobian" else "sources")
        if sources is not None:
            for source in self._elements(sources):
                if isinstance(source, (cst.SimpleString, cst.ConcatenatedString)):
                    self.report(
                        sources,
                        "a gradient source is a string, not a variable: the call raises TypeError",
                        no_fix_reason="pass the variables themselves",
                    )
                    return
        for role, expr in (("source", sources), ("target", target)):
            if expr is None:
                continue
            for element in self._elements(expr):
                if self._sparse(element):
                    self.report(
                        element,
                        f"a tf.SparseTensor as the gradient {role}: the call raises ValueError",
                        no_fix_reason="differentiate with respect to a dense tensor or the sparse tensor's values",
                    )
                    return
        if method in ("jacobian", "batch_jacobian") and target is not None and self._is_list(target):
            self.report(
                target,
                f"the target of `{method}` is a Python list: the call raises AttributeError",
                no_fix_reason="compute one jacobian per element, or tf.stack the elements when their shapes agree",
            )

    def _definitions(self, name: cst.Name) -> Sequence[cst.BaseExpression]:
        everywhere = self.context.analysis.definitions(name.value, self.context.function)
        if len(everywhere) == 1:
            return everywhere
        seen = reaching(name.value, self.context.ancestors)
        if seen is not None and seen.definition is not None and not seen.definition.index:
            return [seen.definition.value]
        if seen is not None and seen.definition is None:
            return []
        return everywhere

    def _elements(self, expr: cst.BaseExpression) -> List[cst.BaseExpression]:
        """The sources as written: the elements of a list or tuple, or of the list a name is bound to."""
        if isinstance(expr, (cst.List, cst.Tuple)):
            return [e.value for e in expr.elements]
        if isinstance(expr, cst.Name):
            definitions = self._definitions(expr)
            if len(definitions) == 1 and isinstance(definitions[0], (cst.List, cst.Tuple)):
                return [e.value for e in definitions[0].elements]
        return [expr]

    def _sparse(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Call):
            return self.context.analysis.is_tf_call(expr) in SPARSE_CONSTRUCTORS
        if isinstance(expr, cst.Name):
            definitions = self._definitions(expr)
            return bool(definitions) and all(
                isinstance(d, cst.Call) and self.context.analysis.is_tf_call(d) in SPARSE_CONSTRUCTORS
                for d in definitions
            )
        return False

    def _is_list(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.List):
            return True
        if not isinstance(expr, cst.Name):
            return False
        definitions = self._definitions(expr)
        if not definitions:
            return False
        return all(self._makes_list(d) for d in definitions)

    def _makes_list(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.List):
            return True
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name):
            callees = self.context.analysis.resolve_callee(expr, self.context.function)
            if len(callees) != 1 or callees[0].class_name is not None:
                return False
            returns: List[Optional[cst.BaseExpression]] = []
            for node in _returns(callees[0].node.body):
                returns.append(node.value)
            return bool(returns) and all(isinstance(r, cst.List) for r in returns)
        return False


def _returns(body: cst.CSTNode) -> List[cst.Return]:
    return [n for n in walk(body) if isinstance(n, cst.Return)]
