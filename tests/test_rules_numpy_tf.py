"""The NumPy and Python-value rules' fixes (TF104-TF109), run under TensorFlow.

Every INVALID example with a fix is executed before and after the fix in this process: the gradient
was missing, raised, or silently wrong before; after the fix it is present and finite, and the forward
value of the gradient target matches as the fix's forward contract says (bit-identical for
``exact``, within float32 rounding for ``ulp``).
"""

from __future__ import annotations

import ast
from typing import Any, Dict, Optional, Tuple

import pytest

from tapefix import Config, check_source
from tapefix.rules.builtin_on_tensor import BuiltinOnTensor
from tapefix.rules.math_on_tensor import MathOnTensor
from tapefix.rules.model_predict import ModelPredictInTape
from tapefix.rules.numpy_conversion import NumpyConversion
from tapefix.rules.numpy_on_tensor import NumpyOnTensor
from tapefix.rules.python_scalar_conversion import PythonScalarConversion

# The broken examples hand tensors to NumPy on purpose; NumPy 2 warns about their __array__.
pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

RULES = [NumpyOnTensor, NumpyConversion, PythonScalarConversion, MathOnTensor, BuiltinOnTensor, ModelPredictInTape]
FIXED = [
    pytest.param(rule, example, id=f"{rule.CODE}-invalid-{i}")
    for rule in RULES
    for i, example in enumerate(rule.INVALID)
    if example.expected is not None
]


@pytest.fixture(scope="session")
def tf():
    return pytest.importorskip("tensorflow")


def _target_name(source: str) -> str:
    """The name passed as the target of the module's last ``.gradient(...)`` call."""
    for node in reversed(list(ast.walk(ast.parse(source)))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "gradient":
            target = node.args[0]
            assert isinstance(target, ast.Name)
            return target.id
    raise AssertionError("the example has no gradient call")


def _run(tf: Any, source: str) -> Tuple[Dict[str, Any], Optional[BaseException]]:
    import keras

    keras.utils.set_random_seed(0)  # layers created after seeding get the same weights in both runs
    namespace: Dict[str, Any] = {"__name__": "example"}
    try:
        exec(compile(source, "example.py", "exec"), namespace)
    except Exception as error:  # noqa: BLE001 - the broken code is expected to raise
        return namespace, error
    return namespace, None


def _flat(grads: Any) -> list:
    return list(grads) if isinstance(grads, (list, tuple)) else [grads]


@pytest.mark.parametrize("rule, example", FIXED)
def test_fix_restores_the_gradient_and_keeps_forward_values(tf, rule, example):
    import numpy as np

    findings = check_source(example.code, Config(select=(rule.CODE,)))
    forwards = {f.fix.forward.value for f in findings if f.fix is not None}
    target = _target_name(example.code)

    before, before_error = _run(tf, example.code)
    after, after_error = _run(tf, example.expected)

    assert after_error is None, f"the fixed code raises: {after_error!r}"
    after_grads = _flat(after["grads"])
    assert all(g is not None for g in after_grads), "a gradient is still missing after the fix"
    assert all(bool(np.all(np.isfinite(np.asarray(g)))) for g in after_grads)

    if before_error is None:
        before_grads = _flat(before["grads"])
        missing = any(g is None for g in before_grads)
        assert missing or any(
            not np.array_equal(np.asarray(b), np.asarray(a)) for b, a in zip(before_grads, after_grads)
        ), "the original gradient was neither missing nor different: nothing was broken"

    if target in before:
        old = np.asarray(before[target], dtype=np.float64)
        new = np.asarray(after[target], dtype=np.float64)
        if forwards == {"exact"}:
            assert np.array_equal(old, new), f"forward values changed: {old} -> {new}"
        else:
            np.testing.assert_allclose(new, old, rtol=1e-6, atol=0)


def test_thirty_one_ninety_end_to_end(tf):
    """tensorflow#30190: a loss list built with float(l) and reduced with NumPy. TF106 then TF104
    (through the list that now collects tensors) restore the gradient with identical values."""
    import numpy as np

    from tapefix import fix_source

    source = """\
import numpy as np
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])
losses = []
with tf.GradientTape() as tape:
    for i in range(3):
        l = tf.reduce_sum(w * w[i])
        losses.append(float(l))
    loss = tf.convert_to_tensor(np.std(losses))
grads = tape.gradient(loss, w)
"""
    fixed = fix_source(source, Config(select=("TF104", "TF106"), unsafe_fixes=True)).fixed_source
    assert "tf.cast(l, tf.float32)" in fixed and "tf.math.reduce_std(losses)" in fixed
    before, error = _run(tf, source)
    after, after_error = _run(tf, fixed)
    assert error is None and before["grads"] is None
    assert after_error is None and after["grads"] is not None
    assert np.all(np.isfinite(after["grads"].numpy()))
    np.testing.assert_allclose(after["loss"].numpy(), before["loss"].numpy(), rtol=1e-6)
