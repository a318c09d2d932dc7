"""tapefix never loses a byte: encodings, line endings and layout survive a rewrite exactly outside the
rewritten statements; writes are atomic; a bad file is one clear line and every other file still runs.

Everything goes through the real command line (``main(argv)``), as a user runs it.
"""

from __future__ import annotations

import codecs
import difflib
import io
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tapefix import api
from tapefix.cli import main

FLOOR_FIXED = "tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))"


def buggy(newline: str = "\n", indent: str = "    ", comment: str = "# plain comment", final: bool = True) -> str:
    lines = [
        "import numpy as np",
        "import tensorflow as tf",
        comment,
        "",
        "x = tf.Variable(3.7)",
        "with tf.GradientTape() as tape:",
        f"{indent}y = np.floor(x)  {comment}",
        f"{indent}z = y * 2",
        "",
        "grad = tape.gradient(z, x)",
    ]
    return newline.join(lines) + (newline if final else "")


def changed_lines(before: bytes, after: bytes) -> List[bytes]:
    """The input lines (with their endings) that the rewrite did not keep byte for byte."""
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lost: List[bytes] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            lost.extend(old[i1:i2])
    return lost


def fix_file(path: Path) -> int:
    return main(["--unsafe-fixes", "--no-cache", str(path)])


def assert_only_the_idiom_changed(before: bytes, after: bytes) -> None:
    lost = changed_lines(before, after)
    assert lost, "the idiom was not rewritten"
    assert all(b"np.floor(x)" in line for line in lost), lost
    assert FLOOR_FIXED.encode() in after


# ----------------------------------------------------------------------------- layout survives
@pytest.mark.parametrize(
    "newline",
    [pytest.param("\n", id="lf"), pytest.param("\r\n", id="crlf"), pytest.param("\r", id="cr")],
)
def test_line_endings_survive(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "train.py"
    before = buggy(newline).encode()
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    assert_only_the_idiom_changed(before, after)
    # The rewritten line keeps the file's own line ending.
    assert after.count(newline.encode()) == before.count(newline.encode())
    if newline == "\r\n":
        assert b"\n" not in after.replace(b"\r\n", b"")


def test_mixed_line_endings_each_line_keeps_its_own(tmp_path: Path) -> None:
    lines = buggy().split("\n")
    endings = ["\r\n", "\n", "\r\n", "\n", "\n", "\r\n", "\r\n", "\n", "\r\n", "\n"]
    before = "".join(line + end for line, end in zip(lines, endings)).encode()
    path = tmp_path / "mixed.py"
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    assert_only_the_idiom_changed(before, after)
    assert [line[-2:] == b"\r\n" for line in after.splitlines(keepends=True)] == [end == "\r\n" for end in endings]


def test_tabs_and_missing_final_newline_survive(tmp_path: Path) -> None:
    before = buggy(indent="\t", final=False).encode()
    path = tmp_path / "tabs.py"
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    assert_only_the_idiom_changed(before, after)
    assert not after.endswith(b"\n")
    assert b"\n\ty = " + FLOOR_FIXED.encode() in after


def test_latin1_coding_cookie_is_kept_and_honoured(tmp_path: Path) -> None:
    text = "# -*- coding: latin-1 -*-\n" + buggy(comment="# déjà vu, ½ of the loss")
    before = text.encode("latin-1")
    path = tmp_path / "latin.py"
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    assert_only_the_idiom_changed(before, after)
    # Still latin-1 (not re-encoded as UTF-8), including on the rewritten line.
    assert b"d\xe9j\xe0 vu, \xbd of the loss" in after
    assert "déjà".encode() not in after
    after.decode("latin-1")


def test_utf8_bom_is_kept(tmp_path: Path) -> None:
    before = codecs.BOM_UTF8 + buggy(comment="# naïve ✓").encode("utf-8")
    path = tmp_path / "bom.py"
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    assert after.startswith(codecs.BOM_UTF8) and not after.startswith(codecs.BOM_UTF8 * 2)
    assert_only_the_idiom_changed(before, after)


def test_a_diff_or_check_run_writes_nothing(tmp_path: Path) -> None:
    before = buggy("\r\n").encode()
    path = tmp_path / "train.py"
    path.write_bytes(before)
    mtime = path.stat().st_mtime_ns
    assert main(["--diff", "--unsafe-fixes", "--no-cache", str(path)]) == 1
    assert main(["--check", "--no-cache", str(path)]) == 1
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- stdin
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(buggy("\r\n").encode(), id="crlf"),
        pytest.param(buggy(indent="\t", final=False).encode(), id="tabs-no-final-newline"),
        pytest.param(("# -*- coding: latin-1 -*-\n" + buggy(comment="# ½")).encode("latin-1"), id="latin-1"),
        pytest.param(codecs.BOM_UTF8 + buggy().encode(), id="bom"),
    ],
)
def test_stdin_keeps_every_byte_outside_the_fix(monkeypatch, capsysbinary, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["--unsafe-fixes", "-"]) == 0
    out = capsysbinary.readouterr().out
    assert_only_the_idiom_changed(data, out)
    assert out.startswith(codecs.BOM_UTF8) == data.startswith(codecs.BOM_UTF8)


def test_stdin_that_is_not_utf8_echoes_the_input_unchanged(monkeypatch, capsysbinary) -> None:
    data = b"with tf.GradientTape() as t:\n    y = '\xff\xfe'\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["-"]) == 2
    captured = capsysbinary.readouterr()
    assert captured.out == data
    assert captured.err.startswith(b"-: error: cannot decode") and b"Traceback" not in captured.err


# ----------------------------------------------------------------------------- atomic writes
def test_write_atomic_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "script.py"
    path.write_bytes(b"old\n")
    path.chmod(0o751)
    api.write_atomic(str(path), b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert os.listdir(tmp_path) == ["script.py"]


def test_fixing_keeps_an_executable_scripts_mode(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(buggy())
    path.chmod(0o755)
    assert fix_file(path) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_write_atomic_interrupted_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch, failure) -> None:
    path = tmp_path / "model.py"
    path.write_bytes(b"original\n")

    def broken(_fd: int) -> None:
        raise failure()

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(failure):
        api.write_atomic(str(path), b"partial" * 1000)
    assert path.read_bytes() == b"original\n"
    assert os.listdir(tmp_path) == ["model.py"]


def test_write_atomic_failing_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.py"
    path.write_bytes(b"original\n")

    def refuse(_src: str, _dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        api.write_atomic(str(path), b"new\n")
    assert path.read_bytes() == b"original\n"
    assert os.listdir(tmp_path) == ["model.py"]


# ----------------------------------------------------------------------------- bad files
def run_cli(args: List[str]) -> subprocess.CompletedProcess:
    """The installed command, in its own process: a hang or a traceback would show here."""
    return subprocess.run(
        [sys.executable, "-m", "tapefix", "--no-cache", *args], capture_output=True, text=True, timeout=120
    )


def test_each_bad_file_is_one_clear_line_and_the_good_file_is_still_fixed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    good = tree / "good.py"
    good.write_text(buggy())
    (tree / "broken.py").write_text("import tensorflow as tf\nwith tf.GradientTape() as t:\n    x = # YOUR CODE HERE\n")
    (tree / "binary.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR GradientTape")
    (tree / "not_utf8.py").write_bytes(b"import tensorflow as tf\n# caf\xe9 GradientTape\n")
    (tree / "loop.py").symlink_to("loop.py")
    os.mkfifo(tree / "pipe.py")
    with open(tree / "huge.py", "wb") as handle:
        handle.truncate(api.MAX_FILE_BYTES + 1)
    (tree / "dir.py").mkdir()  # a folder named like a module is walked, not read
    (tree / "dir.py" / "inner.py").write_text(buggy())
    notes = tmp_path / "notes.txt"
    notes.write_text("Remember: GradientTape records operations.\nThis is prose, not Python.\n")

    done = run_cli(["--unsafe-fixes", str(tree), str(notes)])

    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    expected = {
        "broken.py": "does not parse",
        "binary.py": "not a text file",
        "not_utf8.py": "cannot decode",
        "loop.py": "cannot read",
        "pipe.py": "not a regular file",
        "huge.py": "larger than the 5 MiB limit",
        "notes.txt": "does not parse",
    }
    assert len(errors) == len(expected), errors
    for name, cause in expected.items():
        lines = [line for line in errors if os.path.basename(line.split(":")[0]) == name]
        assert len(lines) == 1 and cause in lines[0], (name, errors)
    assert "broken.py:3:" in done.stderr  # a parse error names its place
    assert FLOOR_FIXED in good.read_text()
    assert FLOOR_FIXED in (tree / "dir.py" / "inner.py").read_text()


def test_an_unwritable_file_is_reported_and_the_others_are_fixed(tmp_path: Path) -> None:
    # Tests run as root, for whom permission bits stop nothing; the immutable attribute stops even root.
    locked = tmp_path / "locked.py"
    locked.write_text(buggy())
    other = tmp_path / "other.py"
    other.write_text(buggy())
    before = locked.read_bytes()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        code = main(["--unsafe-fixes", "--no-cache", str(tmp_path)])
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert code == 2
    assert locked.read_bytes() == before
    assert FLOOR_FIXED in other.read_text()
    assert sorted(os.listdir(tmp_path)) == ["locked.py", "other.py"]  # no temporary left behind


def test_an_unwritable_file_says_so_on_one_line(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked.py"
    locked.write_text(buggy())
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        main(["--unsafe-fixes", "--no-cache", str(locked)])
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "locked.py" in errors[0] and "cannot write" in errors[0]
    assert "fixed" not in err.replace("not fixed", "")  # nothing was written, so nothing counts as fixed


def test_ctrl_c_during_a_parallel_fix_leaves_every_file_whole(tmp_path: Path) -> None:
    import signal
    import time

    sources = {}
    for index in range(40):
        text = buggy().replace("x = tf.Variable(3.7)", f"x = tf.Variable({index}.5)") + "\n# padding\n" * 2000
        path = tmp_path / f"train_{index:02d}.py"
        path.write_text(text)
        sources[path] = text
    process = subprocess.Popen(
        [sys.executable, "-m", "tapefix", "--unsafe-fixes", "--no-cache", "-j", "2", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the worker processes run (not while Python is still importing).
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if children.exists() and len(children.read_text().split()) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in sources)  # no temporary left
    for path, text in sources.items():
        now = path.read_text()
        assert now == text or now == text.replace("np.floor(x)", FLOOR_FIXED), path


# ----------------------------------------------------------------------------- notebooks
def notebook_bytes(newline: str) -> bytes:
    import json

    cells = [
        {
            "cell_type": "code",
            "execution_count": 1,
            "metadata": {},
            "outputs": [],
            "source": ["import numpy as np\n", "import tensorflow as tf\n", "x = tf.Variable(3.7)\n"],
        },
        {"cell_type": "markdown", "metadata": {}, "source": ["Notes: déjà vu ½\n"]},
        {
            "cell_type": "code",
            "execution_count": 2,
            "metadata": {"tags": ["train"]},
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["3.0\n"]}],
            "source": ["with tf.GradientTape() as tape:\n", "    y = np.floor(x)\n", "g = tape.gradient(y, x)"],
        },
    ]
    document = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    return text.replace("\n", newline).encode("utf-8")


def test_a_notebook_fix_changes_only_the_fixed_source_line(tmp_path: Path) -> None:
    path = tmp_path / "train.ipynb"
    before = notebook_bytes("\n")
    path.write_bytes(before)
    assert fix_file(path) == 0
    after = path.read_bytes()
    lost = changed_lines(before, after)
    assert len(lost) == 1 and b"np.floor(x)" in lost[0]
    assert FLOOR_FIXED.encode() in after


def test_a_notebook_whose_layout_cannot_be_kept_is_left_byte_for_byte(tmp_path: Path, capsys) -> None:
    path = tmp_path / "windows.ipynb"
    before = notebook_bytes("\r\n")
    path.write_bytes(before)
    assert fix_file(path) == 2
    assert path.read_bytes() == before
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "windows.ipynb" in errors[0]


def test_a_fifo_named_like_a_notebook_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.ipynb")
    (tmp_path / "good.py").write_text(buggy())
    done = run_cli(["--unsafe-fixes", str(tmp_path)])
    assert done.returncode == 2
    assert "pipe.ipynb: error: is not a regular file" in done.stderr
    assert FLOOR_FIXED in (tmp_path / "good.py").read_text()
