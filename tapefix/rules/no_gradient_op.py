"""TF123: an op with no registered gradient, or random sampling that cuts the gradient, on the gradient path."""

from __future__ import annotations

from typing import Optional

import libcst as cst

from tapefix.analysis.intent import expects_gradient_error
from tapefix.analysis.syntax import argument, keyword
from tapefix.analysis.tfops import NO_REGISTERED_GRADIENT, RESIZE, SAMPLING
from tapefix.analysis.uses import feeds_computation
from tapefix.rule import Invalid, Rule, Valid
from tapefix.types import Safety


class NoGradientOp(Rule):
    """
    ## What it does
    Finds, while a tape records, a tensor on the gradient path passed to:

    - an op with no registered gradient: `tf.unique`, `tf.unique_with_counts`,
      `tf.image.adjust_contrast` / `adjust_saturation` / `adjust_hue` and their `random_*` forms,
      `tf.image.draw_bounding_boxes`, `tf.image.extract_glimpse`, `tf.linalg.lu`, and
      `tf.image.resize(..., method="area")`;
    - random sampling that cuts the gradient: `tf.random.categorical(logits, ...)` and
      `tf.random.shuffle(value)`.

    `tf.random.normal(shape, mean=mu, stddev=sigma)` and `tf.random.uniform(shape, minval, maxval)` are
    differentiable with respect to their parameters and are left alone.

    ## Why is this bad?
    For the first group `tape.gradient` raises `LookupError: gradient registry has no entry for:
    Unique` (or `AdjustContrastv2`, `AdjustSaturation`, `AdjustHue`, `ResizeArea`, `Lu`, ...), checked
    under TF 2.21. For the second, the sample is an integer index or a permutation: `tape.gradient`
    silently returns `None` for the logits or the shuffled tensor.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        brighter = tf.image.adjust_contrast(generated, 2.0)
        choice = tf.random.categorical(logits, 1)
    ```

    ## Use instead
    A differentiable reformulation: contrast as `(x - mean) * factor + mean` in TensorFlow ops, a
    bilinear resize, the Gumbel-softmax or straight-through trick (or a score-function estimator) for
    sampling.

    ## Fix safety
    No fix: the reformulation depends on what the user wants differentiated; the rule reports.

    ## References
    - research/idioms.md, idioms 25 and 26 (B6, B7, B12); tensorflow#2098
    - the TF guide on automatic differentiation (ops without a gradient)
    """

    CODE = "TF123"
    NAME = "no-gradient-op"
    MESSAGE = "op with no registered gradient on the gradient path: tape.gradient raises LookupError"
    SAFETY = Safety.DISPLAY_ONLY

    VALID = (
        Valid(
            """\
import tensorflow as tf

mu = tf.Variable(0.0)
sigma = tf.Variable(1.0)
low = tf.Variable(0.0)
labels = tf.constant([3, 1, 3])
with tf.GradientTape() as tape:
    noise = tf.random.normal([4], mean=mu, stddev=sigma)
    jitter = tf.random.uniform([4], minval=low, maxval=low + 1.0)
    classes, _ = tf.unique(labels)
    order = tf.random.shuffle(tf.range(4))
""",
            note="reparameterised sampling is differentiable; ops on constants have nothing to differentiate",
        ),
        Valid(
            """\
import tensorflow as tf

image = tf.Variable(tf.zeros([1, 4, 4, 3]))
with tf.GradientTape() as tape:
    small = tf.image.resize(image, [2, 2])
    smooth = tf.image.resize(image, [2, 2], method="bicubic")
bright = tf.image.adjust_contrast(image, 2.0)
""",
            note="resize methods with a gradient; code after the tape",
        ),
    )
    INVALID = (
        Invalid(
            """\
import tensorflow as tf

image = tf.Variable(tf.zeros([1, 4, 4, 3]))
with tf.GradientTape() as tape:
    brighter = tf.image.adjust_contrast(image * 2.0, 2.0)
    small = tf.image.resize(image, [2, 2], method="area")
""",
            None,
            note="LookupError: gradient registry has no entry for AdjustContrastv2 and ResizeArea",
        ),
        Invalid(
            """\
import tensorflow as tf

x = tf.Variable([1.0, 2.0, 2.0])
with tf.GradientTape() as tape:
    values, index = tf.unique(x)
""",
            None,
        ),
        Invalid(
            """\
import tensorflow as tf

logits = tf.Variable([[0.1, 0.9]])
x = tf.Variable([1.0, 2.0])
with tf.GradientTape() as tape:
    pick = tf.random.categorical(logits, 1)
    mixed = tf.random.shuffle(x)
""",
            None,
            note="sampling: the gradient is None",
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        context = self.context
        name = context.analysis.is_tf_call(node)
        if name not in NO_REGISTERED_GRADIENT and name not in RESIZE and name not in SAMPLING:
            return
        if not feeds_computation(context, node):
            return
        if expects_gradient_error(context.analysis, context.ancestors):
            return  # every gradient call of this tape catches the LookupError: the failure is the point
        if name in NO_REGISTERED_GRADIENT:
            key, op = NO_REGISTERED_GRADIENT[name]
            value = argument(node, 0, key)
            if value is not None and context.on_path(value):
                self.report(
                    node,
                    f"tf.{name} on the gradient path: no registered gradient ({op}), tape.gradient raises LookupError",
                    no_fix_reason="reformulate in differentiable TensorFlow ops",
                )
        elif name in RESIZE:
            value = argument(node, 0, "images")
            if value is not None and context.on_path(value) and _area(keyword(node, "method") or _third(node)):
                self.report(
                    node,
                    "tf.image.resize(method='area') on the gradient path: no registered gradient (ResizeArea), "
                    "tape.gradient raises LookupError",
                    no_fix_reason="use a method with a gradient (bilinear, bicubic, nearest) or tf.nn.avg_pool",
                )
        elif name in SAMPLING:
            value = argument(node, 0, SAMPLING[name])
            if value is not None and context.on_path(value):
                self.report(
                    node,
                    f"tf.{name} of a tensor on the gradient path: the sample carries no gradient (None)",
                    no_fix_reason="use a differentiable relaxation (Gumbel-softmax, straight-through) or a "
                    "score-function estimator",
                )


def _third(node: cst.Call) -> Optional[cst.BaseExpression]:
    positional = [a for a in node.args if a.keyword is None and not a.star]
    return positional[2].value if len(positional) > 2 else None


def _area(method: Optional[cst.BaseExpression]) -> bool:
    """``"area"`` or ``tf.image.ResizeMethod.AREA``."""
    if isinstance(method, cst.SimpleString):
        return str(method.evaluated_value) == "area"
    return isinstance(method, cst.Attribute) and method.attr.value == "AREA"
