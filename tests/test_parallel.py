"""Parallel runs and the result cache: the same results, in the same order, as one process without a cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

import pytest

from tapefix import api, cache, engine
from tapefix.cli import main
from tapefix.types import Config

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

TAPE = """\
import numpy as np
import tensorflow as tf

w = tf.Variable([1.0, 2.0, 3.0])


def scale_{i}(v):
    return v * {i}.0


with tf.GradientTape() as tape:
    h = scale_{i}(w)
    q = np.floor(h)
    if h > 0:
        h = h * 2.0
    r = 1 / h
"""
PLAIN = """\
import os


def path_{i}(root):
    return os.path.join(root, "run-{i}")
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small project: tape files of several sizes, plain files, a file that does not parse, the corpus."""
    root = tmp_path / "project"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    for i in range(12):
        folder = root / "pkg" / ("sub" if i % 3 == 0 else "")
        body = TAPE.format(i=i) + "\n" + "\n".join(PLAIN.format(i=f"{i}_{k}") for k in range(i * 3))
        (folder / f"train_{i:02d}.py").write_text(body)
        (folder / f"util_{i:02d}.py").write_text(PLAIN.format(i=i))
    (root / "pkg" / "broken.py").write_text("import tensorflow as tf\nwith tf.GradientTape() as t:\n    x = = 1\n")
    for source in sorted(CORPUS.glob("*.py")):
        (root / source.name).write_bytes(source.read_bytes())
    return root


def run(tree: Path, jobs: int, use_cache: bool = False, mode: api.Mode = api.Mode.CHECK) -> List[api.FileResult]:
    return api.run([str(tree)], mode, Config(unsafe_fixes=True), jobs=jobs, use_cache=use_cache)


def cli_output(capsys, args: List[str]) -> tuple:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_parallel_results_equal_a_single_process_run(tree: Path) -> None:
    single = run(tree, jobs=1)
    parallel = run(tree, jobs=2)
    assert parallel == single
    assert [r.path for r in parallel] == [p for p, _ in api.iter_python_files([str(tree)])]
    assert sum(len(r.outcomes) for r in single) > 20
    assert any(r.error for r in single)


@pytest.mark.parametrize("mode", ["--check", "--diff"])
def test_parallel_command_line_output_is_identical(tree: Path, capsys, mode: str) -> None:
    one = cli_output(capsys, [mode, "--unsafe-fixes", "--no-cache", "-j", "1", str(tree)])
    two = cli_output(capsys, [mode, "--unsafe-fixes", "--no-cache", "-j", "2", str(tree)])
    three = cli_output(capsys, [mode, "--unsafe-fixes", "--no-cache", "--jobs", "3", str(tree)])
    assert one == two == three
    assert one[0] == 2  # broken.py


def test_parallel_fix_in_place_writes_the_same_files(tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for path in sorted(tree.rglob("*.py")):
        target = copy / path.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    run(tree, jobs=1, mode=api.Mode.FIX)
    run(copy, jobs=2, mode=api.Mode.FIX)
    for path in sorted(tree.rglob("*.py")):
        assert (copy / path.relative_to(tree)).read_bytes() == path.read_bytes()
    assert "tf.math.divide_no_nan" in (tree / "pkg" / "train_01.py").read_text()


def test_jobs_must_be_positive(capsys) -> None:
    assert main(["--check", "-j", "0", "."]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_a_crash_in_one_file_is_reported_and_the_rest_still_run(tree: Path, monkeypatch, capsys) -> None:
    real = engine.check_source

    def crashing(source: str, *args, **kwargs):
        if "scale_5" in source:
            raise ValueError("boom")
        return real(source, *args, **kwargs)

    # Worker processes are forked from this one, so they see the patch too.
    monkeypatch.setattr(engine, "check_source", crashing)
    for jobs in ("1", "2"):
        code, out, err = cli_output(capsys, ["--check", "--no-cache", "-j", jobs, str(tree)])
        assert code == 2
        assert "Traceback" not in err
        crash = [line for line in err.splitlines() if "train_05.py" in line]
        assert len(crash) == 1 and "internal error (ValueError: boom)" in crash[0]
        assert "train_04.py" in out and "train_06.py" in out


# ----------------------------------------------------------------------------- the cache
def cache_files(tree: Path) -> List[Path]:
    return sorted((tree / cache.CACHE_DIR_NAME).glob("results-*.json"))


def test_cached_rerun_gives_the_same_results_and_reanalyses_only_changed_files(tree: Path, monkeypatch) -> None:
    monkeypatch.delenv(cache.ENV_CACHE_DIR, raising=False)
    fresh = run(tree, jobs=1)
    first = run(tree, jobs=1, use_cache=True)
    assert first == fresh
    assert len(cache_files(tree)) == 1  # at the project root (where pyproject.toml is)
    assert (tree / cache.CACHE_DIR_NAME / ".gitignore").read_text().strip().endswith("*")

    analysed: List[str] = []
    real = api.process_file

    def counting(path, *args, **kwargs):
        analysed.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(api, "process_file", counting)
    assert run(tree, jobs=1, use_cache=True) == fresh
    assert analysed == []

    changed = tree / "pkg" / "train_02.py"
    changed.write_text(changed.read_text().replace("1 / h", "2 / h"))
    rerun = run(tree, jobs=1, use_cache=True)
    assert analysed == ["train_02.py"]
    assert rerun == run(tree, jobs=1)


def test_the_cache_is_keyed_on_the_configuration(tree: Path, capsys) -> None:
    safe = cli_output(capsys, ["--check", str(tree / "pkg")])
    unsafe = cli_output(capsys, ["--check", "--unsafe-fixes", str(tree / "pkg")])
    assert safe != unsafe
    assert cli_output(capsys, ["--check", str(tree / "pkg")]) == safe
    assert cli_output(capsys, ["--check", "--select", "TF101", str(tree / "pkg")])[1].count("TF10") == sum(
        "TF101" in line for line in safe[1].splitlines()
    )


def test_a_cached_diff_does_not_stop_a_later_fix_from_writing(tree: Path, capsys) -> None:
    target = tree / "pkg" / "train_01.py"
    before = target.read_text()
    cli_output(capsys, ["--diff", "--unsafe-fixes", str(tree)])
    cli_output(capsys, ["--diff", "--unsafe-fixes", str(tree)])
    assert target.read_text() == before
    assert main(["--unsafe-fixes", str(tree)]) == 2  # broken.py still does not parse
    assert "tf.math.divide_no_nan" in target.read_text()


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'{"fingerprint": "', id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"[1, 2, 3]", id="wrong-shape"),
        pytest.param(None, id="bogus-entries"),
    ],
)
def test_a_corrupt_cache_never_breaks_a_run(tree: Path, capsys, garbage) -> None:
    expected = cli_output(capsys, ["--check", "--no-cache", str(tree)])
    cli_output(capsys, ["--check", str(tree)])
    [stored] = cache_files(tree)
    if garbage is None:
        # Valid JSON under the right fingerprint, with entries tapefix did not write.
        data = json.loads(stored.read_text())
        for index, key in enumerate(sorted(data["entries"])):
            data["entries"][key] = [
                {"outcomes": [{"$d": "Os", "x": 1}]},
                {"outcomes": [{"$e": "Status", "v": "nope"}]},
                {"outcomes": "x", "fixed": 3},
                {"outcomes": [{"$d": "Outcome", "finding": None, "status": None, "extra": 1}]},
                {"entries": {"x": [{"function": 1, "nope": 2}]}},
            ][index % 5]
        stored.write_text(json.dumps(data))
    else:
        stored.write_bytes(garbage)
    assert cli_output(capsys, ["--check", str(tree)]) == expected
    assert cli_output(capsys, ["--check", str(tree)]) == expected  # and the rewritten cache is good again


def test_no_cache_reads_and_writes_nothing(tree: Path, capsys) -> None:
    cli_output(capsys, ["--check", "--no-cache", str(tree)])
    assert not (tree / cache.CACHE_DIR_NAME).exists()


def test_an_unwritable_cache_folder_is_ignored(tree: Path, capsys) -> None:
    (tree / cache.CACHE_DIR_NAME).write_text("a file where the folder should be")
    expected = cli_output(capsys, ["--check", "--no-cache", str(tree)])
    assert cli_output(capsys, ["--check", str(tree)]) == expected


def test_cache_values_round_trip() -> None:
    findings = engine.fix_source((CORPUS / "floor_quantize.py").read_text(), Config(unsafe_fixes=True)).outcomes
    assert findings
    assert cache.load(json.loads(json.dumps(cache.dump(findings)))) == findings


def test_a_cached_rerun_never_loads_the_parser(tree: Path) -> None:
    """An unchanged tree is answered from the cache: libcst (about 0.2 s to import) is never imported."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from tapefix.cli import main\n"
        "code = main(['--check', '--quiet', sys.argv[1]])\n"
        "print('RESULT', code, 'libcst' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != cache.ENV_CACHE_DIR}
    first = subprocess.run([sys.executable, "-c", probe, str(tree)], capture_output=True, text=True, env=env)
    again = subprocess.run([sys.executable, "-c", probe, str(tree)], capture_output=True, text=True, env=env)
    # Exit 2: the tree holds a file that does not parse. The cache keeps that answer too.
    assert first.stdout.splitlines()[-1] == "RESULT 2 True"
    assert again.stdout.splitlines()[-1] == "RESULT 2 False"
    assert again.stdout.splitlines()[:-1] == first.stdout.splitlines()[:-1]
