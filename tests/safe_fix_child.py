"""Run pairs of programs (before and after a fix) under TensorFlow and report what each computed.

Reads a JSON list of ``[id, before, after]`` on stdin and writes, as JSON on stdout, for each id and each
side: the exception the program raised (or null) and, for every module-level name bound to a number, an
array or a tensor, its dtype, shape and values (a NumPy array and a tensor of the same values compare
equal: a fix that keeps a tensor where NumPy held a copy keeps the values; code that then used NumPy's
methods on it would raise, and that shows). Every program runs from the same random seeds, in a
namespace of its own; one TensorFlow import serves them all.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _describe(value):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        if value.dtype == tf.string or value.dtype == tf.resource or value.dtype == tf.variant:
            return None
        array = value.numpy()
    elif isinstance(value, (np.ndarray, np.generic)):
        array = value
    elif isinstance(value, (bool, int, float)):
        array = np.asarray(value)
    else:
        return None
    if array.dtype.kind not in "biuf":
        return None
    flat = np.asarray(array, dtype=np.float64).ravel()
    return {
        "dtype": str(array.dtype),
        "shape": list(np.shape(array)),
        "values": [None if np.isnan(v) else (repr(v) if np.isinf(v) else float(v)) for v in flat],
    }


def run(code):
    tf.keras.utils.set_random_seed(0)
    namespace = {"__name__": "__safe_fix__"}
    try:
        exec(compile(code, "<program>", "exec"), namespace)
    except Exception as error:  # a broken program raises: that is the observation
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
    values = {}
    for name, value in namespace.items():
        if not name.startswith("_"):
            described = _describe(value)
            if described is not None:
                values[name] = described
    return {"error": None, "values": values}


if __name__ == "__main__":
    pairs = json.load(sys.stdin)
    json.dump({key: {"before": run(before), "after": run(after)} for key, before, after in pairs}, sys.stdout)
