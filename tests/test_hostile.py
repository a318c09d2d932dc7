"""Hostile and unlucky input: very deep expressions, symbolic and hard links, read-only files, a file
edited while tapefix runs, files of another owner, temporaries left by a killed write.

Everything a crash could take down runs in a child process: without the guards, a deep expression
kills the interpreter (a segmentation fault in libcst's native parser), not just the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

from tapefix import api
from tapefix.cli import main
from tapefix.types import Config, Verdict

FLOOR_FIXED = "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))"
BUGGY = """\
import numpy as np
import tensorflow as tf

x = tf.Variable(3.7)
with tf.GradientTape() as tape:
    y = np.floor(x)
grad = tape.gradient(y, x)
"""


def deep_sum(terms: int) -> str:
    """A tape whose block holds a sum of ``terms`` terms (CPython itself refuses 10,000)."""
    return (
        "import tensorflow as tf\n"
        "x = tf.Variable(1.0)\n"
        "with tf.GradientTape() as tape:\n"
        f"    y = {' + '.join(['x'] * terms)}\n"
    )


def deep_lambda(levels: int) -> str:
    return "import tensorflow as tf\nwith tf.GradientTape() as tape:\n    f = " + "lambda: " * levels + "1\n"


def _tapefix(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tapefix", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# ------------------------------------------------------------------ deep input never reaches libcst
@pytest.mark.parametrize(
    "source",
    [
        pytest.param(deep_sum(10_000), id="sum-of-10000-terms"),
        pytest.param(deep_lambda(5_000), id="5000-nested-lambdas"),
        pytest.param(
            "import tensorflow as tf\nwith tf.GradientTape() as t:\n    y = " + "-" * 6000 + "x\n", id="unary"
        ),
    ],
)
def test_a_very_deep_expression_is_one_file_error_and_the_run_goes_on(tmp_path: Path, source: str) -> None:
    (tmp_path / "deep.py").write_text(source)
    (tmp_path / "other.py").write_text(BUGGY)
    done = _tapefix(["--check", "--no-cache", "-j", "1", "deep.py", "other.py"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "deep.py: error: does not parse: nesting too deep" in done.stderr
    assert "other.py:6:9: TF101" in done.stdout  # the other file's result is not lost


def test_the_language_server_survives_a_very_deep_document() -> None:
    script = textwrap.dedent(
        f"""
        from tapefix.lsp import analyse, Settings
        from tapefix.types import Config
        deep = analyse({deep_sum(10_000)!r}, 1, Config(), Settings())
        fine = analyse({BUGGY!r}, 2, Config(), Settings())
        print(deep.parsed, len(deep.diagnostics), len(fine.diagnostics))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "0", "1"]


def test_depth_below_the_limit_is_still_analysed() -> None:
    import ast

    from tapefix.depth import MAX_DEPTH, depth_exceeds

    assert not depth_exceeds(ast.parse(deep_sum(MAX_DEPTH // 2)), MAX_DEPTH)
    assert depth_exceeds(ast.parse(deep_sum(MAX_DEPTH + 10)), MAX_DEPTH)


# ------------------------------------------------------------------ links
def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "d").mkdir()
    target = tmp_path / "real" / "t.py"
    target.write_text(BUGGY)
    link = tmp_path / "d" / "link.py"
    link.symlink_to(Path("..") / "real" / "t.py")
    assert main(["--unsafe-fixes", "--no-cache", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "real", "t.py")
    assert FLOOR_FIXED in target.read_text()
    assert sorted(os.listdir(tmp_path / "d")) == ["link.py"]


def test_a_hard_linked_file_is_fixed_for_every_link(tmp_path: Path) -> None:
    first = tmp_path / "a.py"
    first.write_text(BUGGY)
    second = tmp_path / "b.py"
    os.link(first, second)
    assert main(["--unsafe-fixes", "--no-cache", str(first)]) == 0
    assert FLOOR_FIXED in second.read_text()
    assert os.stat(first).st_ino == os.stat(second).st_ino


# ------------------------------------------------------------------ permissions and owners
def test_a_read_only_file_is_refused_even_for_root(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked.py"
    locked.write_text(BUGGY)
    locked.chmod(0o444)
    other = tmp_path / "other.py"
    other.write_text(BUGGY)
    assert main(["--unsafe-fixes", "--no-cache", str(locked), str(other)]) == 2
    assert locked.read_text() == BUGGY
    assert oct(locked.stat().st_mode & 0o777) == oct(0o444)
    assert FLOOR_FIXED in other.read_text()
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "locked.py" in errors[0] and "read-only (mode 0444)" in errors[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_owner_group_and_mode_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "theirs.py"
    path.write_text(BUGGY)
    os.chown(path, 1234, 5678)
    path.chmod(0o640)
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 0
    info = path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1234, 5678, 0o640)
    assert FLOOR_FIXED in path.read_text()


# ------------------------------------------------------------------ a file edited during the run
def test_an_edit_made_during_the_run_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    edited = BUGGY + "# the user typed this while tapefix ran\n"

    def verifier_that_lets_the_user_type(source: str, findings: Sequence) -> List[Verdict]:
        path.write_text(edited)
        return [Verdict("verified", "stand-in") for _ in findings]

    result = api.process_file(str(path), api.Mode.FIX, Config(unsafe_fixes=True), verifier_that_lets_the_user_type)
    assert not result.written
    assert "changed during the run" in result.error
    assert path.read_text() == edited
    assert sorted(os.listdir(tmp_path)) == ["model.py"]


def test_an_edit_made_during_the_run_gives_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    real = api.encode

    def encode_after_the_user_typed(text, like):  # the last step before the write
        path.write_text(BUGGY.replace("3.7", "3.8"))
        return real(text, like)

    monkeypatch.setattr(api, "encode", encode_after_the_user_typed)
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 2
    assert "3.8" in path.read_text() and FLOOR_FIXED not in path.read_text()
    assert "changed during the run" in capsys.readouterr().err


# ------------------------------------------------------------------ temporaries of a killed write
def test_stale_temporaries_are_removed_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    stale = tmp_path / ".tapefix-killed.tmp"
    stale.write_text("half a file")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tapefix-another-run.tmp"
    fresh.write_text("another run is writing this one right now")
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 0
    assert not stale.exists()
    assert fresh.exists()


def test_stale_temporaries_are_removed_by_an_in_place_run_with_nothing_to_write(tmp_path: Path) -> None:
    clean = tmp_path / "clean.py"
    clean.write_text("import tensorflow as tf\n")
    stale = tmp_path / ".tapefix-killed.tmp"
    stale.write_text("half a file")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert main(["--no-cache", str(clean)]) == 0
    assert not stale.exists()
    assert main(["--check", "--no-cache", str(clean)]) == 0  # a check run writes (and removes) nothing


# ------------------------------------------------------------------ workers die with their parent
def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc to find the workers")
def test_killing_the_main_process_takes_its_workers_along(tmp_path: Path) -> None:
    import signal

    body = "".join(f"    y{i} = np.floor(x) * {i}\n" for i in range(300))
    for index in range(40):
        (tmp_path / f"m{index}.py").write_text(BUGGY.replace("    y = np.floor(x)\n", body + "    y = y1\n"))
    process = subprocess.Popen(
        [sys.executable, "-m", "tapefix", "--check", "--no-cache", "-j", "2", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        workers: List[int] = []
        while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
            workers = _children(process.pid)
            time.sleep(0.05)
        if len(workers) < 2:
            pytest.skip("the run ended before both workers were seen")
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a worker outlived the main process"
    finally:
        if process.poll() is None:
            process.kill()
        for worker in _children(process.pid) or locals().get("workers", []):
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)  # never leave an orphan behind, even when the test fails


# ------------------------------------------------------------------ a cache that is valid JSON but wrong
def _cache_file(directory: Path) -> Path:
    (found,) = directory.glob("results-*.json")
    return found


def _rewrite_entries(directory: Path, change) -> None:
    import json

    path = _cache_file(directory)
    stored = json.loads(path.read_text())
    results = {key: entry for key, entry in stored["entries"].items() if "outcomes" in entry}
    assert results, "the first run cached no result"
    stored["entries"].update({key: change(entry) for key, entry in results.items()})
    path.write_text(json.dumps(stored))


def _emptied(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("check", "used", "content", "tapefix")} | {"outcomes": []}


def _sealed_for(data: bytes, fingerprint=None):
    from tapefix import cache as tapefix_cache

    return lambda e: tapefix_cache.seal(_emptied(e), data, fingerprint or e["tapefix"])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda e: {**e, "outcomes": []}, id="findings-emptied-by-hand"),
        pytest.param(lambda e: {"outcomes": [], "fixed": None, "error": "", "error_at": ""}, id="unsealed-entry"),
        pytest.param(_sealed_for(b"another file"), id="sealed-for-another-file"),
        pytest.param(_sealed_for(BUGGY.encode(), "0.0.1-old"), id="sealed-by-another-version"),
        pytest.param(lambda e: {**e, "outcomes": "nonsense"}, id="wrong-shape"),
    ],
)
def test_a_wrong_cache_entry_never_hides_a_finding(tmp_path: Path, monkeypatch, capsys, change) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TAPEFIX_CACHE_DIR", str(cache))
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    assert main(["--check", str(path)]) == 1
    assert "TF101" in capsys.readouterr().out
    _rewrite_entries(cache, change)
    assert main(["--check", str(path)]) == 1
    assert "model.py:6:9: TF101" in capsys.readouterr().out


def test_a_sealed_entry_whose_findings_do_not_fit_the_file_is_a_miss(tmp_path: Path, monkeypatch, capsys) -> None:
    from tapefix import cache as tapefix_cache

    cache = tmp_path / "cache"
    monkeypatch.setenv("TAPEFIX_CACHE_DIR", str(cache))
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    assert main(["--check", str(path)]) == 1
    capsys.readouterr()

    def far_away(entry):
        body = {k: v for k, v in entry.items() if k not in ("check", "used", "content", "tapefix")}
        text = json.dumps(body["outcomes"]).replace('"start_offset": ', '"start_offset": 1000')
        body["outcomes"] = json.loads(text)
        return tapefix_cache.seal(body, BUGGY.encode(), entry["tapefix"])

    import json

    _rewrite_entries(cache, far_away)
    assert main(["--check", str(path)]) == 1
    assert "model.py:6:9: TF101" in capsys.readouterr().out


def test_a_good_cache_entry_is_still_used(tmp_path: Path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TAPEFIX_CACHE_DIR", str(cache))
    path = tmp_path / "model.py"
    path.write_text(BUGGY)
    main(["--check", str(path)])
    first = capsys.readouterr().out
    monkeypatch.setattr(api, "process_file", lambda *a, **k: pytest.fail("the cached result was not used"))
    monkeypatch.setattr(api, "_process_safely", lambda *a, **k: pytest.fail("the cached result was not used"))
    main(["--check", str(path)])
    assert capsys.readouterr().out == first


# ------------------------------------------------------------------ notebooks written by other tools
def _notebook(source: list, metadata: Optional[dict] = None) -> str:
    import json

    document = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source},
            {"cell_type": "markdown", "metadata": {}, "source": ["# notes\nin one string"]},
        ],
        "metadata": metadata if metadata is not None else {"kernelspec": {"name": "python3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document, indent=1) + "\n"


def test_a_cell_of_multi_line_strings_keeps_its_strings(tmp_path: Path) -> None:
    parts = [
        "import numpy as np\nimport tensorflow as tf\nx = tf.Variable(3.7)\n",
        "with tf.GradientTape() as tape:\n    y = np.floor(x)\n",
        "grad = tape.gradient(y, x)",
    ]
    path = tmp_path / "other_tool.ipynb"
    before = _notebook(parts)
    path.write_text(before)
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 0
    fixed = parts[1].replace("np.floor(x)", FLOOR_FIXED)
    assert path.read_text() == _notebook([parts[0], fixed, parts[2]])


def test_a_cell_of_one_line_strings_is_still_cut_by_lines(tmp_path: Path) -> None:
    lines = BUGGY.splitlines(keepends=True)
    path = tmp_path / "jupyter.ipynb"
    path.write_text(_notebook(lines))
    assert main(["--unsafe-fixes", "--no-cache", str(path)]) == 0
    assert path.read_text() == _notebook([line.replace("np.floor(x)", FLOOR_FIXED) for line in lines])


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"kernelspec": "python3"}, id="kernelspec-a-string"),
        pytest.param({"language_info": ["python"]}, id="language_info-an-array"),
        pytest.param("python", id="metadata-a-string"),
    ],
)
def test_malformed_notebook_metadata_is_a_clear_error(tmp_path: Path, capsys, metadata) -> None:
    path = tmp_path / "odd.ipynb"
    path.write_text(_notebook(BUGGY.splitlines(keepends=True), metadata))
    assert main(["--check", "--no-cache", str(path)]) == 2
    err = capsys.readouterr().err
    assert "odd.ipynb: error: has malformed metadata" in err
    assert "internal error" not in err and "tapefix bug" not in err
