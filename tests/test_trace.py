"""tapefix-trace and tapefix.trace(): real TensorFlow programs run under the trace.

Every program below runs in one child process (TensorFlow is imported once for the session, never in
the test process: the scanner's tests check that nothing imported it); only ``--fix`` starts one more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

pytestmark = pytest.mark.tf

#: a library outside the user's folder that turns its tensor argument into NumPy, as an installed
#: package would
LIBRARY = {
    "featurelib/__init__.py": "",
    "featurelib/scale.py": """
        import numpy as np
        import tensorflow as tf


        def rescale(t):
            values = np.asarray(t)
            return tf.convert_to_tensor(values / values.max())
    """,
}

#: modules of the user's project that the programs import
MODULES = {
    "penalties.py": """
        import numpy as np
        import tensorflow as tf


        def hinge(scores):
            return tf.reduce_mean(np.maximum(0.0, 1.0 - scores))
    """,
}

PROGRAMS = {
    "ufunc_in_module.py": """
        import tensorflow as tf
        from penalties import hinge

        w = tf.Variable([2.0, -1.0])
        with tf.GradientTape() as tape:
            loss = hinge(w * 0.5)
        grad = tape.gradient(loss, w)
    """,
    "library_call.py": """
        import tensorflow as tf
        from featurelib.scale import rescale

        w = tf.Variable([1.0, 2.0, 4.0])
        with tf.GradientTape() as tape:
            features = rescale(w * 3.0)
            loss = tf.reduce_sum(features * features)
        grad = tape.gradient(loss, w)
    """,
    "numpy_mean.py": """
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([0.5, 1.5])
        with tf.GradientTape() as tape:
            scores = w * 2.0
            loss = tf.convert_to_tensor(np.mean(scores))
        grad = tape.gradient(loss, w)
    """,
    "python_float.py": """
        import tensorflow as tf

        w = tf.Variable(3.0)
        with tf.GradientTape() as tape:
            half = float(w * 0.5)
            loss = tf.constant(half) * 2.0
        grad = tape.gradient(loss, w)
    """,
    "unwatched.py": """
        import tensorflow as tf

        x = tf.constant([1.0, 2.0])
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(x * x)
        dx = tape.gradient(y, x)
    """,
    "integer_source.py": """
        import tensorflow as tf

        n = tf.Variable(4)
        with tf.GradientTape() as tape:
            y = tf.cast(n, tf.float32) ** 2
        dn = tape.gradient(y, n)
    """,
    "before_tape.py": """
        import tensorflow as tf

        w = tf.Variable([1.0, -1.0])
        activation = tf.nn.relu(w * 4.0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(activation)
        grad = tape.gradient(loss, w)
    """,
    "log_zero.py": """
        import tensorflow as tf

        p = tf.Variable([0.25, 0.0, 0.75])
        with tf.GradientTape() as tape:
            entropy = -tf.reduce_sum(p * tf.math.log(p))
        grad = tape.gradient(entropy, p)
    """,
    "second_call.py": """
        import tensorflow as tf

        a = tf.Variable(1.0)
        b = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            y = a * b
        da = tape.gradient(y, a)
        db = tape.gradient(y, b)
    """,
    "no_gradient_ops.py": """
        import tensorflow as tf

        w = tf.Variable([1.2, 2.7])
        with tf.GradientTape() as tape:
            bins = tf.round(w)
            loss = tf.reduce_sum(bins)
        g_round = tape.gradient(loss, w)
        with tf.GradientTape() as tape:
            frozen = tf.stop_gradient(w * 2.0)
            loss = tf.reduce_sum(frozen)
        g_stop = tape.gradient(loss, w)
        with tf.GradientTape() as tape:
            ids = tf.cast(w, tf.int32)
            loss = tf.reduce_sum(tf.cast(ids, tf.float32))
        g_cast = tape.gradient(loss, w)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(w // 0.5)
        g_floor = tape.gradient(loss, w)
    """,
    "healthy.py": """
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])
        for step in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(w - 1.0))
                shown = float(loss)  # a Python number for logging: not on the gradient path
            grad = tape.gradient(loss, w)
            w.assign_sub(0.1 * grad)
        print("final", [round(float(v), 3) for v in w.numpy()])
    """,
    "loop.py": """
        import tensorflow as tf

        w = tf.Variable(1.0)
        for step in range(10):
            with tf.GradientTape() as tape:
                loss = w * w
            tape.gradient(loss, w)
            print("step", step)
    """,
    "in_function.py": """
        import numpy as np
        import tensorflow as tf

        w = tf.Variable([1.0, 2.0])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(w * 3.0)
                if tf.executing_eagerly():
                    loss = tf.constant(np.sum(loss))
            return tape.gradient(loss, w)

        step()
    """,
    "crashes.py": """
        import tensorflow as tf

        def load():
            raise FileNotFoundError("weights.h5")

        load()
    """,
}

#: run in the child: every program under the command line's main(), then the context manager's checks
DRIVER = """
import contextlib, io, json, os, sys, threading
sys.path.insert(0, {library!r})
import tensorflow as tf
import numpy as np
from tapefix.tracing.cli import main

results = {{}}
for name, argv in {runs!r}:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results[name] = {{"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}}

# tapefix.trace(): same values, everything put back, gradients in other threads diagnosed
import tapefix
GT = tf.GradientTape
before = {{n: GT.__dict__[n] for n in ("gradient", "jacobian", "batch_jacobian", "__enter__", "__exit__", "watch")}}
tensor_cls = type(tf.constant(1.0)).__mro__[1]
array_before, asarray_before = tensor_cls.__dict__["__array__"], np.asarray
w = tf.Variable([0.5, -2.0, 3.0])
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(w) * w)
    return tape.gradient(loss, w).numpy().tolist(), float(loss)
plain = step()
thread_out = []
def other_thread():
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = tf.constant(float(v * 3.0))
    thread_out.append(tape.gradient(y, v))
with tapefix.trace(report=io.StringIO()) as traced:
    in_trace = step()
    worker = threading.Thread(target=other_thread)
    worker.start(); worker.join()
after = step()
results["context"] = {{
    "plain": plain, "in_trace": in_trace, "after": after,
    "restored": all(GT.__dict__[n] is f for n, f in before.items()) and tensor_cls.__dict__["__array__"] is array_before
                and "__array_function__" not in tensor_cls.__dict__ and np.asarray is asarray_before,
    "calls": len(traced.calls), "codes": [d.code for d in traced.diagnostics],
    "thread_none": thread_out == [None],
}}
print(json.dumps(results))
"""


@pytest.fixture(scope="session")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """Every program run under the trace, once, in one child process."""
    root = tmp_path_factory.mktemp("trace")
    project, library = root / "project", root / "site"
    for base, files in ((project, PROGRAMS), (project, MODULES), (library, LIBRARY)):
        for name, text in files.items():
            path = base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip())
    runs = [(name, ["--format", "json", "--steps", "0", str(project / name)]) for name in PROGRAMS]
    runs += [
        ("library_call.txt", [str(project / "library_call.py")]),
        ("loop_steps", ["--format", "json", "--steps", "2", str(project / "loop.py")]),
        ("in_function_eager", ["--format", "json", "--eager", str(project / "in_function.py")]),
        ("numpy_mean.sarif", ["--format", "sarif", str(project / "numpy_mean.py")]),
    ]
    driver = DRIVER.format(library=str(library), runs=runs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(library))
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, cwd=project, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, run in results.items():
        if isinstance(run, dict) and "stdout" in run and not name.endswith((".txt", ".sarif")):
            text = run["stdout"]
            run["report"] = json.loads(text[text.index("{") :])
    results["_project"] = str(project)
    results["_library"] = str(library)
    return results


def _only(run: Dict[str, Any]) -> Dict[str, Any]:
    diagnostics = run["report"]["diagnostics"]
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def test_library_conversion_is_reported_at_the_call_site_with_the_library_line(traced: Dict[str, Any]) -> None:
    run = traced["library_call.py"]
    d = _only(run)
    assert (os.path.basename(d["path"]), d["line"], d["code"]) == ("library_call.py", 6, "TF105")
    assert d["text"] == "rescale(w * 3.0)"
    assert d["library"]["path"].endswith(os.path.join("featurelib", "scale.py"))
    assert (d["library"]["line"], d["library"]["text"]) == (6, "np.asarray(t)")
    assert d["sources"] == ["w"] and d["target"] == "loss"
    assert run["code"] == 1
    assert run["report"]["gradient_calls"][0]["sources"] == [{"name": "w", "status": "none", "norm": None}]


def test_text_format_names_the_line_then_explains(traced: Dict[str, Any]) -> None:
    lines = traced["library_call.txt"]["stdout"].splitlines()
    assert lines[0].startswith("library_call.py:6:16: TF105 `rescale(w * 3.0)` calls into ")
    assert lines[1].strip() == (
        "the path from `w` to `loss` (gradient at library_call.py:8:8) is cut here: gradient None"
    )
    assert lines[2].strip().startswith("inside the library: ") and lines[2].endswith("scale.py:6:14: `np.asarray(t)`")
    assert lines[-1] == "1 gradient call traced: 1 with None"


@pytest.mark.parametrize(
    ("program", "line", "code", "text"),
    [
        pytest.param("numpy_mean.py", 7, "TF104", "np.mean(scores)", id="numpy-function"),
        pytest.param("python_float.py", 5, "TF106", "float(w * 0.5)", id="python-float"),
        pytest.param("unwatched.py", 6, "TF110", "tape.gradient(y, x)", id="unwatched-tensor"),
        pytest.param("integer_source.py", 6, "TF111", "tape.gradient(y, n)", id="integer-source"),
        pytest.param("before_tape.py", 4, "TF117", "tf.nn.relu(w * 4.0)", id="computed-before-the-tape"),
        pytest.param("second_call.py", 8, "TF112", "tape.gradient(y, b)", id="second-call"),
    ],
)
def test_the_cause_is_located(traced: Dict[str, Any], program: str, line: int, code: str, text: str) -> None:
    d = _only(traced[program])
    assert (d["line"], d["code"], d["text"]) == (line, code, text)
    assert traced[program]["code"] == 1


def test_a_numpy_ufunc_in_a_module_is_located_with_the_static_fix(traced: Dict[str, Any]) -> None:
    # np.maximum reads the tensor through the buffer protocol, which no Python code sees: the op that takes
    # the NumPy result back is where the path is cut, and the static checker, told the tape runs hinge(),
    # has the fix for that line
    d = _only(traced["ufunc_in_module.py"])
    assert (os.path.basename(d["path"]), d["line"], d["code"]) == ("penalties.py", 6, "TF104")
    assert d["text"] == "tf.reduce_mean(np.maximum(0.0, 1.0 - scores))"
    assert "tf.maximum" in d["fix"]["description"]


def test_the_static_fix_for_the_line_is_shown(traced: Dict[str, Any]) -> None:
    d = _only(traced["numpy_mean.py"])
    assert d["fix"]["description"].startswith("TF104: ") and "tf.reduce_mean" in d["fix"]["description"]


def test_non_finite_gradient_is_traced_to_the_forward_op(traced: Dict[str, Any]) -> None:
    d = _only(traced["log_zero.py"])
    assert (d["line"], d["code"], d["text"], d["explains"]) == (5, "TF118", "tf.math.log(p)", "nonfinite")
    assert "forward value -inf at index [1]" in d["message"]
    assert traced["log_zero.py"]["report"]["gradient_calls"][0]["sources"][0]["status"] == "nonfinite"


def test_ops_without_gradient_are_located(traced: Dict[str, Any]) -> None:
    found = [(d["line"], d["code"]) for d in traced["no_gradient_ops.py"]["report"]["diagnostics"]]
    assert found == [(5, "TF101"), (9, "TF124"), (13, "TF114"), (17, "TF101")]


def test_a_healthy_program_reports_nothing_and_exits_zero(traced: Dict[str, Any]) -> None:
    run = traced["healthy.py"]
    assert run["report"]["diagnostics"] == [] and run["code"] == 0
    assert len(run["report"]["gradient_calls"]) == 3
    sources = [s for c in run["report"]["gradient_calls"] for s in c["sources"]]
    assert all(s["status"] == "present" and s["norm"] > 0 for s in sources)
    assert "final [1.0, 1.512]" in run["stderr"]  # the program's own output: same values as without the trace


def test_steps_stops_the_program_after_that_many_gradient_calls(traced: Dict[str, Any]) -> None:
    run = traced["loop_steps"]
    assert len(run["report"]["gradient_calls"]) == 2 and run["code"] == 0
    assert "step 0" in run["stderr"] and "step 1" not in run["stderr"]  # stopped at the second call


def test_eager_makes_breaks_inside_a_tf_function_visible(traced: Dict[str, Any]) -> None:
    assert traced["in_function.py"]["report"]["diagnostics"] == []  # traced as a graph: nothing to convert
    run = traced["in_function_eager"]
    d = _only(run)
    assert (d["line"], d["code"], d["text"]) == (11, "TF104", "np.sum(loss)")
    assert any("eagerly" in note for note in run["report"]["notes"])


def test_a_program_that_fails_before_any_gradient_exits_two_with_its_traceback(traced: Dict[str, Any]) -> None:
    run = traced["crashes.py"]
    assert run["code"] == 2 and run["report"]["gradient_calls"] == []
    assert 'crashes.py", line 6, in <module>' in run["stderr"]
    assert run["stderr"].rstrip().endswith("FileNotFoundError: weights.h5")
    assert "tapefix" not in run["stderr"].split("Traceback", 1)[1]


def test_sarif_names_the_rule_and_the_line(traced: Dict[str, Any]) -> None:
    log = json.loads(traced["numpy_mean.sarif"]["stdout"])
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] == "TF104"
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 7, "startColumn": 33}
    assert [r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]] == ["TF104"]


def test_sarif_validates_against_the_published_schema(traced: Dict[str, Any]) -> None:
    import jsonschema

    #: .ci/run fetches the schema, as for tests/test_formats.py
    schema_path = Path(__file__).resolve().parent.parent / "build" / "sarif" / "sarif-2.1.0-rtm.5.json"
    if not schema_path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{schema_path} is missing: .ci/run fetches it")
        pytest.skip(f"{schema_path} is missing: run the npm step of .ci/run to fetch the published SARIF schema")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{list(e.path)}: {e.message}" for e in validator.iter_errors(json.loads(traced["numpy_mean.sarif"]["stdout"]))
    ]
    assert not errors, errors


def test_context_manager_changes_no_value_and_leaves_nothing_patched(traced: Dict[str, Any]) -> None:
    context = traced["context"]
    assert context["plain"] == context["in_trace"] == context["after"]
    assert context["restored"]
    assert context["thread_none"] and context["calls"] == 2 and context["codes"] == ["TF106"]


def test_fix_runs_the_fixed_copy_and_compares_gradients(traced: Dict[str, Any]) -> None:
    program = os.path.join(traced["_project"], "numpy_mean.py")
    original = open(program).read()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-m", "tapefix.tracing.cli", "--fix", program],
        capture_output=True,
        text=True,
        cwd=traced["_project"],
        env=env,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    out = done.stdout
    assert "fix applied to the copy: numpy_mean.py:7: TF104" in out
    assert "    w: None -> present, finite, norm 1.414" in out
    assert open(program).read() == original  # the original is never written
