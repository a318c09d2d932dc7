"""TF111 declines its float fix where a float would make the program raise: a source used as an index
(directly, through a name, in the module's own functions) or combined with an integer tensor that stays
an integer. The TensorFlow half runs each declined program with the float fix applied by hand and checks
that it raises, while the program as written runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tapefix import Config, check_source, fix_source

CONFIG = Config(select=("TF111",), unsafe_fixes=True)

#: (program, the float fix TF111 would have made: (old, new)); each must be reported without a fix
DECLINED = {
    "gather": (
        """\
import tensorflow as tf

table = tf.Variable([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
idx = tf.constant([2, 0])
with tf.GradientTape() as tape:
    tape.watch(idx)
    loss = tf.reduce_sum(tf.gather(table, indices=idx))
grads = tape.gradient(loss, [table, idx])
""",
        ("tf.constant([2, 0])", "tf.constant([2.0, 0.0])"),
    ),
    "subscript": (
        """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])
k = tf.Variable(1)
with tf.GradientTape() as tape:
    y = w[k] * 2.0
g = tape.gradient(y, [w, k])
""",
        ("tf.Variable(1)", "tf.Variable(1.0)"),
    ),
    "slice bound": (
        """\
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])
k = tf.Variable(2)
with tf.GradientTape() as tape:
    y = tf.reduce_sum(w[:k])
g = tape.gradient(y, [w, k])
""",
        ("tf.Variable(2)", "tf.Variable(2.0)"),
    ),
    "one_hot depth through a name": (
        """\
import tensorflow as tf

labels = tf.constant([0, 2])
depth = tf.Variable(3)
with tf.GradientTape() as tape:
    classes = depth
    y = tf.reduce_sum(tf.one_hot(labels, classes))
g = tape.gradient(y, depth)
""",
        ("tf.Variable(3)", "tf.Variable(3.0)"),
    ),
    "tf.function keyword": (
        """\
import tensorflow as tf


@tf.function
def lookup(table, ids):
    return tf.nn.embedding_lookup(table, ids)


table = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
ids = tf.Variable([1, 1])
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(lookup(table, ids=ids))
grads = tape.gradient(loss, [table, ids])
""",
        ("tf.Variable([1, 1])", "tf.Variable([1.0, 1.0])"),
    ),
    "a global read in a def": (
        """\
import tensorflow as tf

table = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
rows = tf.Variable([[1], [0]])


def pick():
    return tf.gather_nd(table, rows)


with tf.GradientTape() as tape:
    loss = tf.reduce_sum(pick())
grads = tape.gradient(loss, [table, rows])
""",
        ("tf.Variable([[1], [0]])", "tf.Variable([[1.0], [0.0]])"),
    ),
    "a method": (
        """\
import tensorflow as tf


class Picker:
    def __init__(self):
        self.table = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

    def pick(self, at):
        return tf.tensor_scatter_nd_add(self.table, at, [[1.0, 1.0]])

    def step(self):
        at = tf.Variable([[1]])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(self.pick(at))
        return tape.gradient(loss, at)


grads = Picker().step()
""",
        ("tf.Variable([[1]])", "tf.Variable([[1.0]])"),
    ),
    "python range": (
        """\
import tensorflow as tf

n = tf.constant(3)
w = tf.Variable(2.0)
with tf.GradientTape() as tape:
    tape.watch(n)
    y = w
    for _ in range(n):
        y = y * w
g = tape.gradient(y, [w, n])
""",
        ("tf.constant(3)", "tf.constant(3.0)"),
    ),
    "an integer partner": (
        """\
import tensorflow as tf

x = tf.Variable([1, 2])
offset = tf.cast(tf.constant([1.5, 2.5]), tf.int32)
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x * x + offset)
g = tape.gradient(y, x)
""",
        ("tf.Variable([1, 2])", "tf.Variable([1.0, 2.0])"),
    ),
    "a partner source that cannot be fixed": (
        """\
import numpy as np
import tensorflow as tf

w = tf.Variable([1, 2])
b = tf.Variable(np.arange(2, dtype=np.int32))
with tf.GradientTape() as tape:
    y = tf.reduce_sum(w * b)
grads = tape.gradient(y, [w, b])
""",
        ("tf.Variable([1, 2])", "tf.Variable([1.0, 2.0])"),
    ),
}

#: programs whose float fix is still offered (what the fix gives is checked by running it below)
OFFERED = {
    "zeros_like with a dtype": """\
import tensorflow as tf

n = tf.Variable([2, 3])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(n * n)
    count = tf.reduce_sum(tf.zeros_like(n, dtype=tf.int32))
g = tape.gradient(y, n)
""",
    "tf.range takes a float": """\
import tensorflow as tf

n = tf.Variable(3)
with tf.GradientTape() as tape:
    steps = tf.range(n)
    y = n * n
g = tape.gradient(y, n)
""",
    "a Python integer partner": """\
import tensorflow as tf

x = tf.Variable([1, 2])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x * 2 + 1)
g = tape.gradient(y, x)
""",
    "an index of something else": """\
import tensorflow as tf

x = tf.Variable([1, 2])
table = tf.constant([[1.0], [2.0], [3.0]])
with tf.GradientTape() as tape:
    rows = tf.gather(table, tf.constant([0, 2]))
    y = tf.reduce_sum(x * x)
g = tape.gradient(y, x)
""",
}


@pytest.mark.parametrize("source, fix", list(DECLINED.values()), ids=list(DECLINED))
def test_declined_float_fix_is_reported_with_the_reason(source, fix):
    findings = check_source(source, CONFIG)
    assert findings and all(f.code == "TF111" and f.fix is None for f in findings)
    reason = " ".join(f.no_fix_reason for f in findings)
    assert "index" in reason or "dtype error" in reason, reason
    assert fix_source(source, CONFIG).fixed_source == source


@pytest.mark.parametrize("source", list(OFFERED.values()), ids=list(OFFERED))
def test_float_fix_still_offered(source):
    findings = check_source(source, CONFIG)
    assert [f.code for f in findings] == ["TF111"] and findings[0].fix is not None
    assert fix_source(source, CONFIG).fixed_source != source


_RUN = """\
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
source = sys.stdin.read()
try:
    exec(compile(source, "example.py", "exec"), {"__name__": "example"})
except Exception as error:
    print("RAISED", type(error).__name__, str(error).splitlines()[0] if str(error) else "")
else:
    print("RAN")
"""


def _run(source: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _RUN], input=source, capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.tf
@pytest.mark.slow
def test_declined_programs_run_and_their_float_fix_raises():
    pytest.importorskip("tensorflow")
    # One interpreter for all of them: every program as written, then with the float fix.
    programs = []
    for source, (old, new) in DECLINED.values():
        assert source.count(old) == 1
        programs += [source, source.replace(old, new)]
    script = "\n".join(
        f"def program_{i}():\n" + textwrap.indent(f"exec(compile({p!r}, 'example.py', 'exec'), {{}})", "    ")
        for i, p in enumerate(programs)
    )
    script += textwrap.dedent(
        f"""
        for i in range({len(programs)}):
            try:
                globals()[f"program_{{i}}"]()
            except Exception as error:
                print(i, "RAISED", type(error).__name__)
            else:
                print(i, "RAN")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n" + script],
        capture_output=True,
        text=True,
        timeout=600,
    )
    outcome = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line[:1].isdigit())
    names = list(DECLINED)
    for i, name in enumerate(names):
        assert outcome[str(2 * i)] == "RAN", (name, done.stderr[-2000:])
        assert outcome[str(2 * i + 1)].startswith("RAISED"), (name, outcome[str(2 * i + 1)])


@pytest.mark.tf
@pytest.mark.slow
def test_offered_float_fixes_run():
    pytest.importorskip("tensorflow")
    for name, source in OFFERED.items():
        fixed = fix_source(source, CONFIG).fixed_source
        assert _run(source) == "RAN", name
        assert _run(fixed) == "RAN", name
