"""The tensor-ness fixed point replays, on a later pass, only the recorded calls whose reads changed:
the model it reaches is the one a replay of every call on every pass reaches."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import libcst as cst
import pytest

from tapefix.analysis import scope
from tapefix.analysis.scope import ModuleAnalysis
from tapefix.analysis.walk import Recording, walk

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

# Values that only a later pass can settle: a parameter bound by a caller defined below, a global
# bound after the functions that read it, a return read before its function is bound, an attribute
# of self assigned in a method after the one that reads it, a Keras object named after its use, a
# loop-carried name, and recursion.
LATE = """\
import numpy as np
import tensorflow as tf


def scale(v):
    return helper(v) * factor


def helper(w):
    return tf.square(w) + offset


class Net(tf.keras.Model):
    def call(self, x):
        return self.head(self.body(x)) + self.bias

    def build_parts(self):
        self.body = tf.keras.layers.Dense(4)
        self.head = tf.keras.layers.Dense(1)
        self.bias = tf.Variable(0.0)


def depth(t, n):
    if n == 0:
        return t
    return depth(t * 2.0, n - 1)


def step(x):
    acc = 0.0
    with tf.GradientTape() as tape:
        for _ in range(3):
            acc = acc + scale(x)
        loss = tf.reduce_sum(acc) + depth(x, 2) + np.mean(net(x))
    return tape.gradient(loss, x)


factor = tf.Variable(2.0)
offset = tf.constant(1.0)
net = Net()
step(tf.Variable([1.0, 2.0]))
"""


def _model(source: str) -> Dict[str, object]:
    analysis = ModuleAnalysis(cst.parse_module(source))
    out: Dict[str, object] = {
        "module": dict(analysis.module_env),
        "classes": {name: dict(attrs) for name, attrs in analysis.class_attrs.items()},
        "keras": set(analysis.keras_objects),
        "regions": len(analysis.regions),
    }
    for index, function in enumerate(analysis.functions.values()):
        out[f"{index}:{function.qualname}"] = (dict(function.env), function.returns)
    return out


def _every_call_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    original = scope._Binder.bind_all

    def bind_all(self: scope._Binder, recording: object = None, plan: object = None) -> bool:
        return original(self, recording, None)  # no plan: the whole recording, every pass

    monkeypatch.setattr(scope._Binder, "bind_all", bind_all)


def sources() -> List[object]:
    found: List[object] = [pytest.param(LATE, id="late-bindings")]
    found.extend(pytest.param(p.read_text(), id=p.name) for p in sorted(CORPUS.glob("*.py")))
    return found


@pytest.mark.parametrize("source", sources())
def test_replaying_what_changed_reaches_the_model_of_replaying_everything(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    selective = _model(source)
    _every_call_every_pass(monkeypatch)
    assert selective == _model(source)


def test_the_late_bindings_need_a_second_pass_and_get_it() -> None:
    model = _model(LATE)
    helper = next(value for key, value in model.items() if key.endswith(":helper"))
    env, returns = helper  # type: ignore[misc]
    assert env["w"].on_path and returns.on_path  # bound by scale's call, itself called from step
    assert {"self.body", "self.head"} <= model["keras"]  # type: ignore[operator]
    assert model["classes"]["Net"]["bias"].on_path  # type: ignore[index]  # assigned below its read


class _Calls(cst.CSTVisitor):
    """Notes the calls of the handlers it defines; inherits libcst's do-nothing stubs for the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[tuple] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(("visit_Call", node))

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.calls.append(("visit_FunctionDef", node))
        return node.name.value != "helper"  # its body is skipped

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.calls.append(("leave_FunctionDef", original_node))


def test_a_recording_holds_only_the_visitors_own_handlers_and_replays_as_the_walk_calls_them() -> None:
    module = cst.parse_module(LATE)
    walked, replayed, libcst_visit = _Calls(), _Calls(), _Calls()
    walk(module, walked)
    recording = Recording(module, _Calls)
    recording.replay(replayed)
    module.visit(libcst_visit)
    assert {handler.__name__ for handler, _, _ in recording.calls} == {
        "visit_Call",
        "visit_FunctionDef",
        "leave_FunctionDef",
    }
    assert replayed.calls == walked.calls == libcst_visit.calls
    called = [module.code_for_node(node.func) for name, node in walked.calls if name == "visit_Call"]
    assert "tf.keras.layers.Dense" in called and "tf.square" not in called  # helper's body was skipped
