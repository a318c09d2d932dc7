"""Run corpus programs under TensorFlow and report, as JSON on stdout, what each computed.

Every corpus program binds ``loss`` (the forward value) and ``grads`` (the list of gradients) at
module level. Run as ``python corpus_child.py PROGRAM...``; one TensorFlow import for all of them.
"""

import json
import os
import runpy
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402, F401  (imported once, before the programs)


def _array(value):
    if value is None:
        return None
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64).tolist()


def run(path):
    try:
        namespace = runpy.run_path(path, run_name="__corpus__")
    except Exception as error:  # the broken programs raise: that is the observation
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    grads = namespace.get("grads")
    return {
        "error": None,
        "loss": _array(namespace.get("loss")),
        "grads": None if grads is None else [_array(g) for g in grads],
    }


if __name__ == "__main__":
    json.dump({path: run(path) for path in sys.argv[1:]}, sys.stdout)
