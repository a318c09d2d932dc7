"""TF125-TF129 and TF117's later cases, run under TensorFlow: each reported example really loses its
gradient (None) or really raises, and each fix really gives finite gradients."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from tapefix.rules.cond_python_branch import CondPythonBranch
from tapefix.rules.disconnected_target import DisconnectedTarget
from tapefix.rules.function_on_keras_method import FunctionOnKerasMethod
from tapefix.rules.gradient_call_arguments import GradientCallArguments
from tapefix.rules.outside_tape import OutsideTape
from tapefix.rules.step_in_strategy_scope import StepInStrategyScope

pytestmark = pytest.mark.tf


@pytest.fixture(scope="session")
def tf() -> Any:
    return pytest.importorskip("tensorflow")


def _exec(source: str) -> Dict[str, Any]:
    namespace: Dict[str, Any] = {"__name__": "example"}
    exec(compile(source, "example.py", "exec"), namespace)
    return namespace


def _flatten(values: Any) -> List[Any]:
    if isinstance(values, (list, tuple)):
        return [item for value in values for item in _flatten(value)]
    return [values]


def _finite(tf: Any, gradients: List[Any]) -> bool:
    import numpy as np

    return bool(gradients) and all(
        g is not None and bool(np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))) for g in gradients
    )


@pytest.mark.parametrize(
    "index, example",
    [pytest.param(i, e, id=f"TF125-invalid-{i}") for i, e in enumerate(DisconnectedTarget.INVALID)],
)
def test_disconnected_target_really_gets_none(tf, index, example):
    gradients = _flatten(_exec(example.code)["g"])
    assert gradients and all(g is None for g in gradients), gradients


@pytest.mark.parametrize(
    "index, example",
    [
        pytest.param(i, e, id=f"TF125-invalid-{i}")
        for i, e in enumerate(DisconnectedTarget.INVALID)
        if e.expected is not None
    ],
)
def test_moving_the_forward_pass_into_the_block_restores_the_gradient(tf, index, example):
    import numpy as np

    before, after = _exec(example.code), _exec(example.expected)
    assert _finite(tf, _flatten(after["g"]))
    for name in ("loss", "value", "total"):
        if name in before:
            assert np.array_equal(np.asarray(before[name]), np.asarray(after[name]))


def test_gradient_of_a_gradient_computed_after_the_block_is_none(tf):
    assert _exec(OutsideTape.INVALID[4].code)["g"] is None


@pytest.mark.parametrize(
    "rule, index",
    [
        pytest.param(rule, i, id=f"{rule.CODE}-invalid-{i}")
        for rule in (GradientCallArguments, CondPythonBranch, StepInStrategyScope)
        for i, example in enumerate(rule.INVALID)
    ],
)
def test_example_really_raises(tf, rule, index):
    with pytest.raises((TypeError, ValueError, AttributeError)):
        _exec(rule.INVALID[index].code)


FIXED_PROBES = {
    ("TF126", 0): "[hvp]",
    ("TF128", 0): "[g]",
    ("TF129", 0): "grads",
}


@pytest.mark.parametrize("key", sorted(FIXED_PROBES))
def test_fix_gives_finite_gradients(tf, key):
    rule = {r.CODE: r for r in (GradientCallArguments, CondPythonBranch, StepInStrategyScope)}[key[0]]
    example = rule.INVALID[key[1]]
    assert example.expected is not None
    namespace = _exec(example.expected)
    assert _finite(tf, _flatten(eval(FIXED_PROBES[key], namespace)))


@pytest.mark.parametrize("index, probe", [(0, "grads"), (1, "tape.gradient(out, stack.trainable_variables)")])
def test_tf_function_on_keras_call_loses_gradients_and_the_fix_restores_them(tf, index, probe):
    example = FunctionOnKerasMethod.INVALID[index]
    before: Optional[List[Any]] = _flatten(eval(probe, _exec(example.code)))
    assert before and all(g is None for g in before)
    assert example.expected is not None
    assert _finite(tf, _flatten(eval(probe, _exec(example.expected))))
