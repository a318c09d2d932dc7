"""The I/O edge: walking paths, reading and writing files, one result (or error) per file.

Nothing here raises for a bad file: every problem becomes a ``FileResult.error`` naming the cause,
and every other file is still processed.
"""

from __future__ import annotations

import codecs
import difflib
import enum
import io
import os
import stat
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from tapefix import engine
from tapefix.types import Config, Outcome, SourceResult, Status

#: Folders never walked into: virtual environments, caches, tool folders.
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist", ".git"}
MAX_FILE_BYTES = 5 * 1024 * 1024


class Mode(str, enum.Enum):
    FIX = "fix"  #: rewrite files in place
    DIFF = "diff"  #: print the diff, write nothing
    CHECK = "check"  #: report findings, write nothing


@dataclass(frozen=True)
class Decoded:
    """A source file's text and what it takes to write it back byte for byte."""

    text: str
    encoding: str
    bom: bool


@dataclass(frozen=True)
class FileResult:
    path: str
    outcomes: Tuple[Outcome, ...] = ()
    source: str = ""
    fixed_source: str = ""
    error: str = ""
    #: "line:column" of the error, when it has a place
    error_at: str = ""
    written: bool = False
    skipped: bool = field(default=False)

    @property
    def changed(self) -> bool:
        return self.source != self.fixed_source


class FileError(Exception):
    """A file that cannot be read, decoded or written; the message names the cause."""


# ----------------------------------------------------------------------------- walking
def iter_python_files(paths: Iterable[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """(path, error) pairs: every ``.py`` file under the given paths, in a stable order. A path that
    does not exist yields an error; a file named explicitly is taken whatever its suffix."""
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield str(path), None
        elif path.is_dir():
            yield from ((str(p), None) for p in _walk(path))
        elif path.is_symlink():
            yield str(path), "is a broken symbolic link"
        else:
            yield str(path), "no such file or directory"


def _is_venv(directory: Path) -> bool:
    return (directory / "pyvenv.cfg").exists()


def _walk(root: Path) -> Iterator[Path]:
    seen = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(directory)
        try:
            key = here.resolve()
        except (OSError, RuntimeError):
            continue
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS and not _is_venv(here / d)
        )
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("."):
                yield here / name


# ----------------------------------------------------------------------------- reading and writing
def decode(data: bytes) -> Decoded:
    """Decode Python source as the interpreter would (BOM, PEP 263 cookie, else UTF-8), keeping
    line endings exactly."""
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        raise FileError(f"cannot decode: {error}") from None
    body = data[len(codecs.BOM_UTF8) :] if bom else data
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    try:
        text = body.decode(encoding)
    except (UnicodeDecodeError, LookupError) as error:
        raise FileError(f"cannot decode as {encoding} (no coding cookie says otherwise): {error}") from None
    return Decoded(text, encoding, bom)


def encode(text: str, like: Decoded) -> bytes:
    data = text.encode(like.encoding)
    return codecs.BOM_UTF8 + data if like.bom else data


def read_source(path: str) -> Decoded:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise FileError(f"is {size // (1024 * 1024)} MiB, larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit")
        with open(path, "rb") as handle:
            data = handle.read()
    except FileError:
        raise
    except OSError as error:
        raise FileError(f"cannot read: {error.strerror or error}") from None
    if b"\x00" in data:
        raise FileError("is not a text file (it contains NUL bytes)")
    return decode(data)


def write_atomic(path: str, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename: readers see the old file or
    the new one, never a partial one. The file's mode is kept."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    fd, temporary = tempfile.mkstemp(prefix=".tapefix-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        # Never leave the temporary behind, whatever stopped us (an error or Ctrl-C).
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------- one source, one file
def process_source(
    source: str, mode: Mode, config: Config, verifier: Optional[engine.Verifier] = None
) -> SourceResult:
    """Run the engine on a source text for a mode; raises engine.SourceError if it does not parse."""
    if mode is Mode.CHECK:
        findings = engine.check_source(source, config)
        outcomes = tuple(
            Outcome(f, Status.FIXABLE if f.fix is not None else Status.MANUAL) for f in findings
        )
        if verifier is not None and findings:
            verdicts = verifier(source, [f for f in findings if f.fix is not None])
            by_id = {id(f): v for f, v in zip([f for f in findings if f.fix is not None], verdicts)}
            outcomes = tuple(
                Outcome(o.finding, Status.REJECTED if o.finding.fix is not None and not by_id[id(o.finding)].passed else o.status, by_id.get(id(o.finding)))
                for o in outcomes
            )
        return SourceResult(source, source, outcomes)
    return engine.fix_source(source, config, verifier)


def process_file(
    path: str, mode: Mode, config: Config, verifier: Optional[engine.Verifier] = None
) -> FileResult:
    """Everything for one file; never raises for a problem with the file."""
    try:
        decoded = read_source(path)
    except FileError as error:
        return FileResult(path, error=str(error))
    try:
        result = process_source(decoded.text, mode, config, verifier)
    except engine.SourceError as error:
        where = f"{error.line}:{(error.column or 0) + 1}" if error.line else ""
        return FileResult(path, source=decoded.text, fixed_source=decoded.text, error=str(error), error_at=where)
    written = False
    if mode is Mode.FIX and result.changed:
        try:
            write_atomic(path, encode(result.fixed_source, decoded))
            written = True
        except (OSError, UnicodeEncodeError) as error:
            message = getattr(error, "strerror", None) or str(error)
            return FileResult(path, result.outcomes, decoded.text, decoded.text, error=f"cannot write: {message}")
    return FileResult(path, result.outcomes, decoded.text, result.fixed_source, written=written)


def run(
    paths: Sequence[str], mode: Mode, config: Config, verifier: Optional[engine.Verifier] = None
) -> List[FileResult]:
    """Process every Python file under ``paths``."""
    results = []
    for path, error in iter_python_files(paths):
        if error is not None:
            results.append(FileResult(path, error=error))
            continue
        results.append(process_file(path, mode, config, verifier))
    return results


# ----------------------------------------------------------------------------- diffs
def unified_diff(before: str, after: str, path: str) -> str:
    """A unified diff that marks a missing final newline as ``diff`` does."""
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(old, new, fromfile=f"a/{path}", tofile=f"b/{path}"):
        if not line.endswith(("\n", "\r")):
            line = line + "\n\\ No newline at end of file\n"
        lines.append(line)
    return "".join(lines)
