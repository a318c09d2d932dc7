"""Run the user's own input builder for ``--verify-with MODULE:FUNCTION`` and print what it returned.

Run as ``python -m tapefix.verify._examples SPEC`` in the user's project (the current folder on
``sys.path``). ``SPEC`` is ``package.module:function`` or ``path/to/file.py:function``; the function
takes no arguments and returns a mapping from names to arrays or tensors (one batch, say). Prints one
JSON object: ``{"examples": {name: {"shape": [...], "values": [...]}}}`` with float32 values, or
``{"error": "..."}``. This is the user's code, run because they asked for it by name, in a process of
its own: the sandboxed verifier never imports their modules.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from typing import Any, Dict

#: the most values one example may hold: a probe runs on it many times
MAX_VALUES = 100_000


def _load(spec: str) -> Any:
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"expected MODULE:FUNCTION or FILE.py:FUNCTION, got {spec!r}")
    if target.endswith(".py"):
        path = os.path.abspath(target)
        module_spec = importlib.util.spec_from_file_location("_tapefix_examples_module", path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"cannot load {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, os.path.dirname(path))
        module_spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        module = importlib.import_module(target)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"{target} has no function {name!r}")
    return function


def _examples(returned: Any) -> Dict[str, Dict[str, Any]]:
    import numpy as np

    if not hasattr(returned, "items"):
        raise ValueError(f"the function returned {type(returned).__name__}, not a mapping of names to arrays")
    out: Dict[str, Dict[str, Any]] = {}
    for key, value in returned.items():
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.dtype.kind not in "biuf":
            continue  # strings, objects: nothing a probe's tensor input could be
        if array.size > MAX_VALUES:
            raise ValueError(f"{key!r} holds {array.size} values; give at most {MAX_VALUES} (one small batch)")
        array = array.astype(np.float32)
        out[str(key)] = {"shape": list(array.shape), "values": array.ravel().tolist()}
    return out


def main() -> int:
    # Whatever the user's code prints must not corrupt the answer.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    result: Dict[str, Any]
    try:
        function = _load(sys.argv[1])
        result = {"examples": _examples(function())}
    except Exception as error:  # noqa: BLE001 - whatever the user's code raised, say it in one line
        first = str(error).splitlines()[0] if str(error) else ""
        result = {"error": f"{type(error).__name__}: {first}"}
    answer.write(json.dumps(result))
    answer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
