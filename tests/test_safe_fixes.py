"""A safe fix is applied by default, so it must keep the program's behaviour: each safe fix of every rule
example and every corpus program, applied alone, leaves a program that still runs and binds every name
it bound before to the same values, with the same dtypes and shapes (run under TensorFlow)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tapefix import Config, check_source
from tapefix.engine import apply_edits
from tapefix.rules import ALL_RULES
from tapefix.types import Forward, Safety

ROOT = Path(__file__).resolve().parent.parent
UNSAFE = Config(unsafe_fixes=True)


#: programs of our own where a NumPy-to-TensorFlow rewrite could change a dtype or a shape (NumPy upcasts
#: to float64 where TensorFlow raises; reshape and concatenation semantics), beside the examples
OWN = {
    "mixed-dtypes": """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.0, 2.0])
extra = np.array([3.0])
half = np.float64(0.5)
with tf.GradientTape() as tape:
    a = np.concatenate([x, extra])
    b = np.maximum(x, half)
    c = np.reshape(x, (2, 1))
    d = x.numpy().reshape(2, 1)
    e = float(tf.reduce_sum(x)) * 2.0
    f = np.sqrt(x) + np.abs(x)
    m = np.mean(tf.constant([1, 2]))
    loss = tf.reduce_sum(a) + tf.reduce_sum(b) + tf.reduce_sum(c) + tf.reduce_sum(d) + e + tf.reduce_sum(f)
g = tape.gradient(loss, x)
""",
    "model-outputs": """\
import numpy as np
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
batch = np.ones((4, 3), dtype=np.float32)
with tf.GradientTape() as tape:
    out = model.predict(batch, verbose=0)
    top = out.max()
    loss = tf.reduce_mean(out)
grads = tape.gradient(loss, model.trainable_variables)
""",
}


def _programs() -> List[Tuple[str, str]]:
    programs = [
        (f"{rule.CODE}-invalid-{index}", example.code)
        for rule in ALL_RULES
        for index, example in enumerate(rule.INVALID)
    ]
    programs += [(f"corpus/{path.name}", path.read_text()) for path in sorted((ROOT / "corpus").glob("*.py"))]
    programs += [(f"own/{name}", code) for name, code in OWN.items()]
    return programs


def _safe_fixes() -> List[Tuple[str, str, str, Forward]]:
    """(id, program, program with one safe fix applied, the fix's forward contract)."""
    out = []
    for name, code in _programs():
        for index, finding in enumerate(check_source(code, UNSAFE)):
            if finding.fix is not None and finding.fix.safety is Safety.SAFE:
                fixed = apply_edits(code, finding.fix.edits)
                out.append((f"{name}:{finding.code}:{index}", code, fixed, finding.fix.forward))
    return out


SAFE = _safe_fixes()


def test_there_are_safe_fixes_to_check() -> None:
    codes = {key.split(":")[1] for key, *_ in SAFE}
    assert len(codes) >= 5, codes


@pytest.fixture(scope="module")
def runs() -> Dict[str, dict]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("safe_fix_child.py"))],
        input=json.dumps([[key, before, after] for key, before, after, _ in SAFE]),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _close(a: list, b: list, forward: Forward) -> bool:
    if forward is Forward.EXACT or forward is Forward.STRAIGHT_THROUGH:
        return a == b
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7))
        for x, y in zip(a, b)
    )


@pytest.mark.tf
@pytest.mark.parametrize("key, before, after, forward", SAFE, ids=[s[0] for s in SAFE])
def test_a_safe_fix_applied_alone_keeps_the_program_running_with_the_same_values(
    runs: Dict[str, dict], key: str, before: str, after: str, forward: Forward
) -> None:
    ran = runs[key]
    if ran["before"]["error"] is not None:
        # The original never finished; the fixed program must not fail in a new way before that point.
        assert ran["after"]["error"] in (None, ran["before"]["error"]) or "gradient" in ran["before"]["error"].lower()
        return
    assert ran["after"]["error"] is None, ran["after"]["error"]
    old, new = ran["before"]["values"], ran["after"]["values"]
    for name, value in old.items():
        assert name in new, f"{name} no longer bound to a value"
        assert new[name]["dtype"] == value["dtype"] and new[name]["shape"] == value["shape"], name
        assert _close(value["values"], new[name]["values"], forward), name
