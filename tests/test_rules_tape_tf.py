"""The tape-bookkeeping and numerical rules' fixes (TF110-TF117), run under TensorFlow.

Every INVALID example with a fix is executed before and after the fix in this process: before, a
gradient is missing or not finite, or the gradient call raises; after, every gradient is present and
finite, and the forward values are as the rule's forward contract says (bit-identical for ``exact``;
for ``singular`` identical wherever the original was finite). The report-only examples are checked to
really lose their gradient, and the rules' VALID examples that claim a working gradient to really have
one.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest

from tapefix import Config, fix_source
from tapefix.rules.integer_path import IntegerPath
from tapefix.rules.integer_source import IntegerSource
from tapefix.rules.numpy_function import NumpyFunction
from tapefix.rules.outside_tape import OutsideTape
from tapefix.rules.second_gradient_call import SecondGradientCall
from tapefix.rules.singular_at_zero import SingularAtZero
from tapefix.rules.unwatched_source import UnwatchedSource
from tapefix.rules.variable_state_in_tape import VariableStateInTape
from tapefix.types import Forward

pytestmark = pytest.mark.tf

#: for each example: an expression for its gradients and one for its forward value (or None), evaluated
#: in the example's namespace after it ran
PROBES: Dict[Tuple[str, int], Tuple[str, Optional[str]]] = {
    ("TF110", 0): ("[dy_dx]", None),
    ("TF110", 1): ("[saliency, dscale]", "score"),
    ("TF110", 2): ("[g]", "y"),
    ("TF110", 3): ("[g]", "b"),
    ("TF110", 4): ("[dh]", "out"),
    ("TF110", 6): ("[g]", "y"),
    ("TF111", 0): ("[dy_dx]", "y"),
    ("TF111", 1): ("grads", "y"),
    ("TF112", 0): ("[ga, gb]", "a"),
    ("TF112", 1): ("grads", None),
    ("TF112", 2): ("[g]", "y"),
    ("TF112", 3): ("list(step(tf.Variable([1.0, 2.0])))", None),
    ("TF113", 0): ("tape.gradient(distance, [a])", "distance"),
    ("TF113", 1): ("tape.gradient(row_norms, [w])", "row_norms"),
    ("TF113", 2): ("tape.gradient(y, [x])", "y"),
    ("TF113", 3): ("tape.gradient(y, [x])", "y"),
    ("TF113", 4): ("tape.gradient(y, [x])", "y"),
    ("TF113", 5): ("tape.gradient(y, model.trainable_variables)", "y"),
    ("TF115", 2): ("[g]", "loss"),
    ("TF115", 3): ("[g]", "loss"),
    ("TF117", 0): ("[g]", "y"),
    ("TF117", 1): ("[g]", "y"),
    ("TF117", 2): ("[row]", "y"),
}
RULES = [
    UnwatchedSource,
    IntegerSource,
    SecondGradientCall,
    SingularAtZero,
    OutsideTape,
    IntegerPath,
    VariableStateInTape,
    NumpyFunction,
]
FIXED = [
    pytest.param(rule, i, example, id=f"{rule.CODE}-invalid-{i}")
    for rule in RULES
    for i, example in enumerate(rule.INVALID)
    if example.expected is not None
]
REPORTED = [
    pytest.param(rule, example, id=f"{rule.CODE}-invalid-{i}")
    for rule in (IntegerPath, VariableStateInTape, NumpyFunction, OutsideTape)
    for i, example in enumerate(rule.INVALID)
    if example.expected is None
]


@pytest.fixture(scope="session")
def tf() -> Any:
    return pytest.importorskip("tensorflow")


def _run(tf: Any, source: str, probe: str, forward: Optional[str]) -> Tuple[Optional[List[Any]], Any, str]:
    """Gradients (None when the code raised), the forward value, and the error text."""
    namespace: Dict[str, Any] = {"__name__": "example"}
    # Each run draws the same weights, whatever ran before it: the before and after runs of an
    # example compare like with like, and no example depends on the order of the others.
    tf.keras.utils.set_random_seed(0)
    try:
        exec(compile(source, "example.py", "exec"), namespace)
        gradients = _flatten(eval(probe, namespace))
    except Exception as error:  # noqa: BLE001 - the broken code is expected to raise
        return None, None, f"{type(error).__name__}: {error}"
    value = eval(forward, namespace) if forward is not None else None
    return gradients, value, ""


def _flatten(values: Any) -> List[Any]:
    if isinstance(values, (list, tuple)):
        return [item for value in values for item in _flatten(value)]
    return [values]


def _finite(tf: Any, gradient: Any) -> bool:
    import numpy as np

    if gradient is None:
        return False
    values = tf.convert_to_tensor(gradient).numpy()
    return bool(np.all(np.isfinite(values)))


@pytest.mark.parametrize("rule, index, example", FIXED)
def test_fix_restores_a_finite_gradient(tf, rule, index, example):
    import numpy as np

    assert (rule.CODE, index) in PROBES, "every fixed example needs a probe"
    probe, forward = PROBES[(rule.CODE, index)]
    before, before_value, error = _run(tf, example.code, probe, forward)
    after, after_value, after_error = _run(tf, example.expected, probe, forward)
    assert not after_error, after_error
    assert after and all(_finite(tf, g) for g in after), after
    broken = before is None or not all(_finite(tf, g) for g in before)
    if (rule.CODE, index) == ("TF113", 4):
        # sqrt in a tf.where: eager kernels mask the NaN; XLA does not (see the XLA test below).
        assert not broken
    else:
        assert broken, f"the example's gradient was fine before the fix: {before}"
    if forward is not None and before_value is not None:
        old = np.asarray(before_value, dtype=np.float64)
        new = np.asarray(after_value, dtype=np.float64)
        if rule.FORWARD is Forward.SINGULAR:
            finite = np.isfinite(old)
            assert np.array_equal(old[finite], new[finite])
        else:
            assert np.array_equal(old, new)


def test_singular_fix_restores_the_gradient_under_xla(tf):
    import numpy as np

    example = SingularAtZero.INVALID[4]

    def gradient(source: str) -> Any:
        head, _, block = source.partition("with ")
        namespace: Dict[str, Any] = {}
        exec(head, namespace)
        body = "\n".join("    " + line for line in ("with " + block).splitlines())
        exec(f"def probe():\n{body}\n    return y, tape.gradient(y, x)\n", namespace)
        return tf.function(namespace["probe"], jit_compile=True)()

    before_value, before = gradient(example.code)
    after_value, after = gradient(example.expected)
    assert not np.all(np.isfinite(before.numpy()))
    assert np.all(np.isfinite(after.numpy()))
    assert np.array_equal(before_value.numpy(), after_value.numpy())


@pytest.mark.parametrize("rule, example", REPORTED)
def test_reported_example_really_loses_its_gradient(tf, rule, example):
    namespace: Dict[str, Any] = {"__name__": "example"}
    exec(compile(example.code, "example.py", "exec"), namespace)
    if "g" in namespace:
        gradient = namespace["g"]
    else:
        gradient = namespace["tape"].gradient(namespace["y"], namespace["x"])
    if rule is NumpyFunction and gradient is not None:
        # py_function over NumPy: a scalar 0 where a vector gradient belongs.
        assert tf.convert_to_tensor(gradient).shape.rank == 0 and float(gradient) == 0.0
    elif isinstance(gradient, list):
        assert gradient and all(g is None for g in gradient), gradient  # every variable of a model
    else:
        assert gradient is None


def test_all_fixes_together_converge_and_run(tf):
    source = """\
import tensorflow as tf

x = tf.constant([0.0, 4.0, 9.0])
n = tf.Variable(2)
w = tf.Variable([0.0, 1.0, 2.0])
with tf.GradientTape() as tape:
    r = tf.sqrt(x) + x ** 0.5
    s = tf.where(w > 0, tf.math.log(w), 0.0)
    d = tf.norm(w - 1.0)
    loss = tf.reduce_sum(r) + tf.reduce_sum(s) + d + tf.cast(n, tf.float32)
g1 = tape.gradient(tf.reduce_sum(loss), [x, w])
g2 = tape.gradient(loss, n)
"""
    config = Config(select=tuple(rule.CODE for rule in RULES), unsafe_fixes=True)
    result = fix_source(source, config)
    codes = sorted({outcome.finding.code for outcome in result.outcomes if outcome.status.value == "fixed"})
    assert codes == ["TF110", "TF111", "TF112", "TF113", "TF117"]
    before, _, error = _run(tf, source, "[*g1, g2]", None)
    assert before is None and "non-persistent" in error
    after, loss, after_error = _run(tf, result.fixed_source, "[*g1, g2]", "loss")
    assert not after_error and all(_finite(tf, g) for g in after)
    assert float(loss) == pytest.approx(14.107361, rel=1e-6)
