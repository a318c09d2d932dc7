"""The verifier runs user code, so it runs it in a sandbox (docs/verification.md, "Threat model").

Three layers are tried here, each on its own:

* the static refusal: probes whose code reaches TensorFlow's or NumPy's I/O, native code or code by
  name are never sent to the child (``refusal``), and ``--verify`` then leaves the fix unapplied;
* the child's audit hooks: hostile probes sent straight to the child (past the static refusal) are
  refused at run time, even when their code swallows the exception, and nothing outside the child's
  own folder changes;
* the operating system: TensorFlow's C++ file writes, which no audit hook sees, fail under Landlock.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

from tapefix.cli import main
from tapefix.verify.probes import Probe, plan, refusal

TF_HEADER = "import numpy as np\nimport tensorflow as tf\n"


# ------------------------------------------------------------------ the static refusal (no TensorFlow)
@pytest.mark.parametrize(
    "code",
    [
        pytest.param("y = tf.io.write_file('/tmp/x', 'data')", id="tf.io.write_file"),
        pytest.param("tf.io.gfile.GFile('/tmp/x', 'w').write('data')", id="gfile-write"),
        pytest.param("tf.compat.v1.gfile.Open('/tmp/x', 'w')", id="compat-gfile"),
        pytest.param("w = tf.summary.create_file_writer('/tmp/logs')", id="summary"),
        pytest.param("tf.saved_model.save(m, '/tmp/m')", id="saved_model"),
        pytest.param("y = tf.py_function(f, [x], tf.float32)", id="py_function"),
        pytest.param("y = tf.numpy_function(f, [x], tf.float32)", id="numpy_function"),
        pytest.param("tf.raw_ops.WriteFile(filename='/tmp/x', contents='d')", id="raw_ops"),
        pytest.param("tf.load_op_library('/tmp/evil.so')", id="load_op_library"),
        pytest.param("tf.print(x, output_stream='file:///tmp/x')", id="print-to-file"),
        pytest.param("lib = np.ctypeslib.load_library('libc', '/lib')", id="np.ctypeslib"),
        pytest.param("np.save('/tmp/x.npy', x)", id="np.save"),
        pytest.param("x.tofile('/tmp/x')", id="tofile"),
        pytest.param("model.save_weights('/tmp/w')", id="save_weights"),
        pytest.param("f = open('/tmp/x', 'w')", id="open"),
        pytest.param("os = __import__('os')", id="__import__"),
        pytest.param("y = eval('x + 1')", id="eval"),
        pytest.param("exec('import os')", id="exec"),
        pytest.param("io = getattr(tf, 'i' + 'o')", id="getattr-by-string"),
        pytest.param("b = ().__class__.__base__.__subclasses__()", id="dunder-walk"),
        pytest.param("g = f.__globals__", id="__globals__"),
    ],
)
def test_probes_reaching_io_or_code_by_name_are_refused(code: str) -> None:
    assert refusal(TF_HEADER + code + "\n") is not None


def test_aliases_are_resolved() -> None:
    assert refusal("from tensorflow import io as tio\ntio.write_file('a', 'b')\n")
    assert refusal("from tensorflow.io import gfile\ngfile.GFile('a', 'w')\n")
    assert refusal("import tensorflow.compat.v1 as v1\nv1.gfile.Open('a')\n")
    assert refusal("from numpy import ctypeslib\nctypeslib.as_array(x)\n")


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))", id="straight-through"),
        pytest.param("y = tf.math.divide_no_nan(1.0, x)", id="divide_no_nan"),
        pytest.param("def f(input):\n    return input * 2\ny = f(x)", id="a-parameter-named-input"),
        pytest.param("y = np.floor(x) + math.pi", id="numpy-and-math"),
    ],
)
def test_ordinary_probes_are_not_refused(code: str) -> None:
    assert refusal(TF_HEADER + "import math\n" + code + "\n") is None


HOSTILE_FILE = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x) + 0.0 * tf.cast(tf.strings.length(tf.io.write_file({marker!r}, "owned")), tf.float32)
grad = tape.gradient(y, x)
"""

HOSTILE_FUNCTION = """\
import numpy as np
import tensorflow as tf


def loss(v):
    tf.io.gfile.GFile({marker!r}, "w").write("owned")
    return np.floor(v)


x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = loss(x)
grad = tape.gradient(y, x)
"""


HOSTILE_CTYPES = """\
import numpy as np
import tensorflow as tf


def loss(v):
    libc = np.ctypeslib.load_library("libc.so.6", "/lib/x86_64-linux-gnu")
    libc.system(("touch " + {marker!r}).encode())
    return np.floor(v)


x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = loss(x)
grad = tape.gradient(y, x)
"""


@pytest.mark.tf
@pytest.mark.parametrize(
    "template",
    [HOSTILE_FILE, HOSTILE_FUNCTION, HOSTILE_CTYPES],
    ids=["tf.io-in-the-statement", "gfile-in-a-function", "np.ctypeslib-in-a-function"],
)
def test_a_dry_run_with_verify_never_runs_tensorflow_io(tmp_path: Path, template: str, capsys) -> None:
    marker = tmp_path / "owned.txt"
    path = tmp_path / "model.py"
    path.write_text(template.format(marker=str(marker)))
    main(["--diff", "--verify", "--unsafe-fixes", "--no-cache", str(path)])
    out = capsys.readouterr().out
    assert not marker.exists(), "the verifier ran the user's TensorFlow I/O"
    assert "verified:" not in out.replace("unverified:", "")
    assert "refused" in out, out


# ------------------------------------------------------------------ the child's sandbox, probe by probe
FLOOR = TF_HEADER + "x = tf.Variable(3.7)\nwith tf.GradientTape() as tape:\n    y = np.floor(x)\n"


def _hostile_request(code: str) -> Dict[str, Any]:
    """A real probe of a TF101 fix, with ``code`` run first in both versions (sent straight to the
    child: the static refusal is what this bypasses)."""
    from tapefix.engine import check_source
    from tapefix.types import Config
    from tapefix.verify import _request

    findings = check_source(FLOOR, Config(unsafe_fixes=True))
    probe = plan(FLOOR, findings[0], findings)
    assert isinstance(probe, Probe)
    header = f"def __tapefix_unit({', '.join(probe.inputs)}):\n"
    body = textwrap.indent(textwrap.dedent(code).strip() + "\n", "    ")
    hostile = Probe(
        **{
            **probe.__dict__,
            "before": probe.before.replace(header, header + body),
            "after": probe.after.replace(header, header + body),
        }
    )
    return _request(hostile, "hostile")


ESCAPES = {
    "open-for-writing": "open({marker!r}, 'w').write('owned')",
    "builtins.open": "import builtins\nbuiltins.open({marker!r}, 'w').write('owned')",
    "os.open": "import os\nos.close(os.open({marker!r}, os.O_CREAT | os.O_WRONLY))",
    "__import__-os.system": "__import__('os').system('touch ' + {marker!r})",
    "importlib-subprocess": "import importlib\nimportlib.import_module('subprocess').run(['touch', {marker!r}])",
    "eval-of-a-string": "eval(\"__import__('os').system('touch ' + \" + repr({marker!r}) + \")\")",
    "exec-of-a-string": 'exec("import subprocess; subprocess.Popen([\'touch\', " + repr({marker!r}) + "]).wait()")',
    "pickle": (
        "import pickle\n"
        "payload = b'cposix\\nsystem\\n(Vtouch ' + {marker!r}.encode() + b'\\ntR.'\n"
        "pickle.loads(payload)"
    ),
    "ctypes": "import ctypes\nctypes.CDLL(None).system(('touch ' + {marker!r}).encode())",
    "np.ctypeslib": "np.ctypeslib.load_library('libc.so.6', '/lib/x86_64-linux-gnu')\nopen({marker!r}, 'w')",
    "os.fork": "import os\npid = os.fork()\nif pid == 0:\n    open({marker!r}, 'w')\n    os._exit(0)",
    "os.posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', {marker!r}], os.environ)",
    "os.execv": "import os\nos.execv('/usr/bin/touch', ['touch', {marker!r}])",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nopen({marker!r}, 'w')",
    "kill-the-parent": "import os\nos.kill(os.getppid(), 0)\nopen({marker!r}, 'w')",
    "swallowed": "try:\n    open({marker!r}, 'w')\nexcept BaseException:\n    pass",
    "rename-out": "import os\nopen('inside.txt', 'w').write('x')\nos.rename('inside.txt', {marker!r})",
    "read-a-secret": "open({secret!r}).read()",
}


@pytest.mark.tf
@pytest.mark.parametrize("name", list(ESCAPES))
def test_every_escape_is_refused_and_leaves_nothing(verifier, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "owned.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    code = ESCAPES[name].format(marker=str(marker), secret=str(secret))
    (result,) = verifier.runner.run([_hostile_request(code)])
    assert result["status"] == "unverified", result
    assert result["reason"].startswith("refused:"), result
    assert result.get("refused") is True
    assert "hunter2" not in result["reason"]
    assert not marker.exists()
    # The child survives the attempt and still judges an honest probe.
    (honest,) = verifier.runner.run([_hostile_request("pass")])
    assert honest["status"] == "verified", honest


@pytest.mark.tf
def test_tensorflow_file_writes_fail_in_the_operating_system_layer(verifier, tmp_path: Path) -> None:
    """``tf.io.write_file`` runs in C++, where no audit hook sees it: Landlock stops it."""
    verifier.runner.start()
    if not any(layer.startswith("landlock") for layer in verifier.runner.sandbox):
        pytest.skip("Landlock is not available on this kernel")
    marker = tmp_path / "owned.txt"
    (result,) = verifier.runner.run([_hostile_request(f"tf.io.write_file({str(marker)!r}, 'owned')")])
    assert result["status"] != "verified"
    assert not marker.exists()


@pytest.mark.tf
def test_the_child_reports_its_sandbox(verifier) -> None:
    verifier.runner.start()
    assert "audit hooks" in verifier.runner.sandbox
    if os.uname().sysname == "Linux":
        assert "rlimits" in verifier.runner.sandbox


def test_no_refused_probe_reaches_the_child_whatever_planned_it() -> None:
    """``ProbeVerifier._run`` is the one place probes are sent: a refused one never is."""
    from tapefix.verify import ProbeVerifier

    class Child:
        sent: list = []

        def run(self, requests):
            self.sent.extend(requests)
            return [{"status": "verified", "reason": "stand-in", "seconds": 0.0} for _ in requests]

        def close(self) -> None:
            pass

    child = Child()
    verifier = ProbeVerifier(runner=child)  # type: ignore[arg-type]
    honest = Probe("statement", TF_HEADER + "y = x\n", TF_HEADER + "y = x\n", ("x",), ("y",), "exact", False)
    hostile = Probe(
        "statement",
        TF_HEADER + "tf.io.write_file('/tmp/x', 'd')\n",
        TF_HEADER + "y = x\n",
        ("x",),
        ("y",),
        "exact",
        False,
    )
    verdicts = verifier._run([hostile, honest])
    assert verdicts[0].status == "unverified" and verdicts[0].reason.startswith("refused:")
    assert verdicts[1].status == "verified"
    assert [r["before"] for r in child.sent] == [honest.before]
