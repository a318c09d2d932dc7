"""The I/O edge: walking paths, reading and writing files, one result (or error) per file.

Nothing here raises for a bad file: every problem becomes a ``FileResult.error`` naming the cause,
and every other file is still processed.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import dataclasses
import difflib
import enum
import hashlib
import io
import multiprocessing
import os
import signal
import stat
import sys
import tempfile
import threading
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tapefix import cache as _cache
from tapefix import notebook, project
from tapefix.config import ConfigError, Resolver
from tapefix.prefilter import might_run_under_tape
from tapefix.types import Config, EntryPoint, Outcome, SourceError, SourceResult, Status, Verifier

#: Folders never walked into: virtual environments, caches, tool folders.
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist", ".git"}
MAX_FILE_BYTES = 5 * 1024 * 1024
#: Notebooks carry their outputs (plots as base64), so they may be far larger than their code.
MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024


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
    #: the bytes as read (compared again just before a write, so an edit made meanwhile is kept)
    raw: bytes = field(default=b"", repr=False, compare=False)


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
    #: for a notebook: its code cells as one module (``source`` is that module), to map lines to cells
    notebook: Optional[notebook.Script] = None

    @property
    def changed(self) -> bool:
        return self.source != self.fixed_source


class FileError(Exception):
    """A file that cannot be read, decoded or written; the message names the cause."""


# ----------------------------------------------------------------------------- walking
def iter_python_files(paths: Iterable[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """(path, error) pairs: every ``.py`` and ``.ipynb`` file under the given paths, in a stable order. A path that
    does not exist yields an error; a file named explicitly is taken whatever its suffix."""
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield str(path), None
        elif path.is_dir():
            yield from ((str(p), None) for p in _walk(path))
        elif path.is_symlink():
            yield str(path), "is a broken symbolic link"
        elif path.exists():
            yield str(path), None  # a FIFO, socket or device: reading it says why it is skipped
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
            if name.endswith((".py", ".ipynb")) and not name.startswith("."):
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
    return Decoded(text, encoding, bom, data)


def encode(text: str, like: Decoded) -> bytes:
    data = text.encode(like.encoding)
    return codecs.BOM_UTF8 + data if like.bom else data


def _regular_file_size(path: str) -> int:
    """The size of a regular file; a FIFO, socket or device is refused before anything opens it (opening
    a FIFO would wait for a writer forever)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FileError("is not a regular file (a FIFO, socket or device)")
    return info.st_size


def read_source(path: str) -> Decoded:
    try:
        size = _regular_file_size(path)
        if size > MAX_FILE_BYTES:
            raise FileError(
                f"is {size // (1024 * 1024)} MiB, larger than the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit"
            )
        with open(path, "rb") as handle:
            data = handle.read()
    except FileError:
        raise
    except OSError as error:
        raise FileError(f"cannot read: {error.strerror or error}") from None
    if b"\x00" in data:
        raise FileError("is not a text file (it contains NUL bytes)")
    return decode(data)


#: a temporary of tapefix's own older than this was left by a killed write; the next write removes it
STALE_TEMPORARY_SECONDS = 60.0
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".tapefix-", ".tmp"


def writable_by_intent(info: os.stat_result, path: str) -> bool:
    """Whether the file may be rewritten: the user can write it, and (for root, who can write anything)
    some write bit is set, so a file made read-only on purpose (mode 0444) stays as it is."""
    if not os.access(path, os.W_OK):
        return False
    return not (os.geteuid() == 0 and not stat.S_IMODE(info.st_mode) & 0o222) if hasattr(os, "geteuid") else True


def write_atomic(path: str, data: bytes, expected: Optional[bytes] = None) -> None:
    """Write through a temporary file in the same folder, then rename: readers see the old file or
    the new one, never a partial one.

    A symbolic link is written through: its target gets the new bytes and the link stays. The file's
    mode, owner and group are kept; a file with more than one hard link is rewritten in place so that
    every link sees the change. A file the user cannot write, or one made read-only (mode 0444, also
    for root), is refused. With ``expected`` (the bytes the run read), a file that changed since is
    not touched: ``FileError`` says so, and the user's edit is kept."""
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is not None and not writable_by_intent(info, target):
        raise FileError(f"cannot write: the file is read-only (mode {stat.S_IMODE(info.st_mode):04o}); not written")
    _remove_stale_temporaries(directory)
    if info is not None and info.st_nlink > 1:
        _write_in_place(target, data, expected)
        return
    fd, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if info is not None:
            os.chmod(temporary, stat.S_IMODE(info.st_mode))
            new = os.stat(temporary)
            if (new.st_uid, new.st_gid) != (info.st_uid, info.st_gid):
                try:
                    os.chown(temporary, info.st_uid, info.st_gid)
                except PermissionError:
                    raise FileError("cannot keep the file's owner and group: not written") from None
        _check_unchanged(target, expected)
        os.replace(temporary, target)
    except BaseException:
        # Never leave the temporary behind, whatever stopped us (an error or Ctrl-C).
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _check_unchanged(target: str, expected: Optional[bytes]) -> None:
    if expected is None:
        return
    try:
        with open(target, "rb") as handle:
            now = handle.read()
    except FileNotFoundError:
        now = None
    if now != expected:
        raise FileError("changed during the run, so it was not written (run tapefix again)")


def _write_in_place(target: str, data: bytes, expected: Optional[bytes]) -> None:
    """For a file with several hard links: replacing it would cut the other links off."""
    with open(target, "r+b") as handle:
        if expected is not None and handle.read() != expected:
            raise FileError("changed during the run, so it was not written (run tapefix again)")
        handle.seek(0)
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def _remove_stale_temporaries(directory: str) -> None:
    """Temporaries of tapefix's own left by a write that was killed (kill -9) before its rename. A
    recent one may belong to another run still writing, so only old ones go."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(TEMPORARY_PREFIX) and n.endswith(TEMPORARY_SUFFIX)]
    except OSError:
        return
    now = time.time()
    for name in names:
        candidate = os.path.join(directory, name)
        try:
            info = os.lstat(candidate)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_TEMPORARY_SECONDS:
                os.unlink(candidate)
        except OSError:
            pass


def _read_text(path: str) -> Optional[str]:
    """A file's text for the project index; None when it cannot be read (its own run says why)."""
    try:
        return read_source(path).text
    except FileError:
        return None


# ----------------------------------------------------------------------------- one source, one file
def process_source(
    source: str,
    mode: Mode,
    config: Config,
    verifier: Optional[Verifier] = None,
    entry_points: Sequence[EntryPoint] = (),
) -> SourceResult:
    """Run the engine on a source text for a mode; raises SourceError if it does not parse.
    ``entry_points``: the module's functions that tapes elsewhere in the project run (tapefix.project)."""
    from tapefix import engine  # libcst: imported by the first file that needs a parse, never for cached ones

    if mode is Mode.CHECK:
        findings = engine.check_source(source, config, entry_points)
        outcomes = tuple(Outcome(f, Status.FIXABLE if f.fix is not None else Status.MANUAL) for f in findings)
        if verifier is not None and findings:
            verdicts = verifier(source, [f for f in findings if f.fix is not None])
            by_id = {id(f): v for f, v in zip([f for f in findings if f.fix is not None], verdicts)}
            outcomes = tuple(
                Outcome(
                    o.finding,
                    Status.REJECTED if o.finding.fix is not None and not by_id[id(o.finding)].passed else o.status,
                    by_id.get(id(o.finding)),
                )
                for o in outcomes
            )
        return SourceResult(source, source, outcomes)
    return engine.fix_source(source, config, verifier, entry_points)


def process_file(
    path: str,
    mode: Mode,
    config: Config,
    verifier: Optional[Verifier] = None,
    entry_points: Sequence[EntryPoint] = (),
) -> FileResult:
    """Everything for one file; never raises for a problem with the file."""
    if path.endswith(".ipynb"):
        return process_notebook(path, mode, config, verifier)
    try:
        decoded = read_source(path)
    except FileError as error:
        return FileResult(path, error=str(error))
    try:
        result = process_source(decoded.text, mode, config, verifier, entry_points)
    except SourceError as error:
        where = f"{error.line}:{(error.column or 0) + 1}" if error.line else ""
        return FileResult(path, source=decoded.text, fixed_source=decoded.text, error=str(error), error_at=where)
    written = False
    if mode is Mode.FIX and result.changed:
        try:
            write_atomic(path, encode(result.fixed_source, decoded), decoded.raw)
            written = True
        except (OSError, UnicodeEncodeError, FileError) as error:
            message = getattr(error, "strerror", None) or str(error)
            message = message if isinstance(error, FileError) else f"cannot write: {message}"
            # Nothing was written: what the run fixed is still only fixable.
            unwritten = tuple(
                Outcome(o.finding, Status.FIXABLE, o.verdict) if o.status is Status.FIXED else o
                for o in result.outcomes
            )
            return FileResult(path, unwritten, decoded.text, decoded.text, error=message)
    return FileResult(path, result.outcomes, decoded.text, result.fixed_source, written=written)


def process_notebook(path: str, mode: Mode, config: Config, verifier: Optional[Verifier] = None) -> FileResult:
    """A Jupyter notebook: its Python cells are analysed as one module (they share one namespace) and
    fixed cells are written back into the notebook, everything else kept byte for byte."""
    try:
        size = _regular_file_size(path)
        if size > MAX_NOTEBOOK_BYTES:
            limit = MAX_NOTEBOOK_BYTES // (1024 * 1024)
            raise FileError(f"is {size // (1024 * 1024)} MiB, larger than the {limit} MiB limit for notebooks")
        with open(path, "rb") as handle:
            raw = handle.read()
        text = raw.decode("utf-8")
        script = notebook.to_script(text)
    except FileError as error:
        return FileResult(path, error=str(error))
    except OSError as error:
        return FileResult(path, error=f"cannot read: {error.strerror or error}")
    except UnicodeDecodeError as error:
        return FileResult(path, error=f"cannot decode as utf-8 (a notebook is JSON in UTF-8): {error}")
    except notebook.NotebookError as error:
        return FileResult(path, error=str(error))
    try:
        result = process_source(script.text, mode, config, verifier)
    except SourceError as error:
        where = ""
        if error.line:
            cell, line = script.locate(error.line)
            where = f"cell {cell}:{line}:{(error.column or 0) + 1}"
        return FileResult(path, (), script.text, script.text, error=str(error), error_at=where, notebook=script)
    written = False
    if mode is Mode.FIX and result.changed:
        problem = ""
        try:
            write_atomic(path, notebook.from_script(text, script, result.fixed_source).encode("utf-8"), raw)
            written = True
        except (notebook.NotebookError, FileError) as error:
            problem = str(error)
        except OSError as error:
            problem = f"cannot write: {error.strerror or error}"
        if problem:
            # Nothing was written: what the run fixed is still only fixable.
            unwritten = tuple(
                Outcome(o.finding, Status.FIXABLE, o.verdict) if o.status is Status.FIXED else o
                for o in result.outcomes
            )
            return FileResult(path, unwritten, script.text, script.text, error=problem, notebook=script)
    return FileResult(path, result.outcomes, script.text, result.fixed_source, written=written, notebook=script)


def run(
    paths: Sequence[str],
    mode: Mode,
    config: Config,
    verifier: Optional[Verifier] = None,
    *,
    resolver: Optional[Resolver] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    jobs: Optional[int] = None,
    use_cache: bool = False,
) -> List[FileResult]:
    """Process every Python file and notebook under ``paths``.

    With a ``resolver`` (``[tool.tapefix]`` per file), each file runs with its own configuration and
    files matching ``exclude`` are left out, even when named explicitly; ``config`` is then unused.
    ``progress(done, total)`` is called after each file.

    ``jobs`` worker processes (default: the usable cores) analyse the files that may hold a tape; the
    results are the same, in the same order, as with one. With ``use_cache``, results of unchanged
    files come from the cache (tapefix.cache). A verifier runs everything in this process, uncached."""
    todo: List[Tuple[str, Optional[str], Config]] = []
    for path, error in iter_python_files(paths):
        file_config = config
        if resolver is not None and error is None:
            try:
                settings = resolver.settings_for(path)
            except ConfigError as config_error:
                todo.append((path, str(config_error), config))
                continue
            if settings.excluded(path):
                continue
            file_config = settings.config_for(path)
        todo.append((path, error, file_config))
    sources = _Sources()
    store = _open_cache(paths) if use_cache and verifier is None else None
    # Whole-project tape scope: which functions tapes in other modules of the tree run.
    python_files = [p for p, e, _ in todo if e is None and p.endswith(".py")]
    entries = _entry_points(python_files, sources, store)
    results: List[Optional[FileResult]] = [None] * len(todo)
    keys: Dict[int, str] = {}
    work: List[_Job] = []
    for index, (path, error, file_config) in enumerate(todo):
        if error is not None:
            results[index] = FileResult(path, error=error)
            continue
        points = entries.get(path, ())
        if store is not None and path.endswith(".py"):
            data = sources.data(path)
            if data is not None:
                keys[index] = _cache.entry_key(data, mode is Mode.CHECK, file_config, points)
                results[index] = _from_cache(store, keys[index], path, mode, sources)
                if results[index] is not None:
                    continue
        work.append(_Job(index, path, file_config, points))
    done = len(todo) - len(work)

    def finished(job: _Job, result: FileResult) -> None:
        nonlocal done
        results[job.index] = result
        if job.index in keys and store is not None:
            _to_cache(store, keys[job.index], result, sources.text(job.path), sources.data(job.path))
        done += 1
        if progress is not None:
            progress(done, len(todo))

    if progress is not None and done:
        progress(done, len(todo))
    _execute(work, mode, verifier, _usable_cores() if jobs is None else jobs, sources, finished)
    if store is not None:
        store.save()
    if mode is Mode.FIX:
        # A write killed before its rename (kill -9) left a temporary; an in-place run tidies it away.
        for directory in sorted({os.path.dirname(os.path.realpath(path)) for path, _, _ in todo}):
            _remove_stale_temporaries(directory)
    return [r if r is not None else FileResult(todo[i][0], error="was not processed") for i, r in enumerate(results)]


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    config: Config
    entry_points: Tuple[EntryPoint, ...]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Sources:
    """Each file's bytes and text, read once per run (None when it cannot be read: its own run says why)."""

    def __init__(self) -> None:
        self._data: Dict[str, Optional[bytes]] = {}
        self._text: Dict[str, Optional[str]] = {}

    def data(self, path: str) -> Optional[bytes]:
        if path not in self._data:
            try:
                if _regular_file_size(path) > MAX_FILE_BYTES:
                    raise OSError("too big")
                with open(path, "rb") as handle:
                    self._data[path] = handle.read()
            except (OSError, FileError):
                self._data[path] = None
        return self._data[path]

    def text(self, path: str) -> Optional[str]:
        if path not in self._text:
            data = self.data(path)
            text = None
            if data is not None and b"\x00" not in data:
                try:
                    text = decode(data).text
                except FileError:
                    pass
            self._text[path] = text
        return self._text[path]


def _process_safely(
    path: str, mode: Mode, config: Config, verifier: Optional[Verifier], entry_points: Sequence[EntryPoint]
) -> FileResult:
    """process_file, with a tapefix bug reported as that file's error instead of a traceback."""
    try:
        return process_file(path, mode, config, verifier, entry_points)
    except RecursionError:
        return FileResult(path, error="cannot analyse: the code is nested too deeply")
    except Exception as error:  # noqa: BLE001 - one file's crash must not stop the run
        return FileResult(path, error=f"internal error ({type(error).__name__}: {error}); this is a tapefix bug")


def _ignore_interrupts(parent: Optional[int] = None) -> None:
    """A worker's start. Ctrl-C reaches the whole process group: workers finish the file (and atomic
    write) in hand, and the main process cancels the rest, so no file is ever left half written. A
    worker dies with the main process, however that one ends (``kill -9`` included): it would otherwise
    wait on its task pipe forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _die_with(parent)


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the main process died before the line above
        os._exit(1)
    # Elsewhere (and as a second net): watch the parent; a dead parent's children are re-parented.
    threading.Thread(target=_watch_parent, args=(parent,), name="tapefix-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _execute(
    work: Sequence[_Job],
    mode: Mode,
    verifier: Optional[Verifier],
    jobs: int,
    sources: _Sources,
    finished: Callable[[_Job, FileResult], None],
) -> None:
    """Run the jobs: files that may hold a tape in worker processes, biggest first; the rest here."""
    heavy: List[_Job] = []
    light: List[_Job] = []
    for job in work:
        text = sources.text(job.path) if job.path.endswith(".py") else None
        if text is None or might_run_under_tape(text, job.entry_points):
            heavy.append(job)
        else:
            light.append(job)
    if verifier is not None or jobs <= 1 or len(heavy) < 2:
        for job in work:
            finished(job, _process_safely(job.path, mode, job.config, verifier, job.entry_points))
        return
    heavy.sort(key=lambda job: -len(sources.data(job.path) or b""))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(heavy)),
        mp_context=context,
        initializer=_ignore_interrupts,
        initargs=(os.getpid(),),
    ) as pool:
        try:
            futures = {
                pool.submit(_process_safely, job.path, mode, job.config, None, job.entry_points): job for job in heavy
            }
            for job in light:
                finished(job, _process_safely(job.path, mode, job.config, None, job.entry_points))
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    result = FileResult(job.path, error="its worker process died (out of memory?)")
                finished(job, result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _open_cache(paths: Sequence[str]) -> Optional[_cache.Cache]:
    try:
        return _cache.Cache(_cache.cache_dir(paths))
    except (OSError, ValueError):
        return None


def _from_cache(store: _cache.Cache, key: str, path: str, mode: Mode, sources: _Sources) -> Optional[FileResult]:
    """The cached result for a file, or None (a miss, or a fix that still has to be written). An entry
    is trusted only when it is sealed for these bytes and this tapefix (``cache.seal``) and its
    findings fit the file."""
    data = sources.data(path)
    entry = _cache.unsealed(store.get(key), data, store.fingerprint) if data is not None else None
    if entry is None:
        return None
    text = sources.text(path)
    fixed = entry.get("fixed")
    if text is None or (fixed is not None and (mode is Mode.FIX or not isinstance(fixed, str))):
        return None
    try:
        stored, error, error_at = entry.get("outcomes"), entry.get("error"), entry.get("error_at")
        if not isinstance(stored, list) or not isinstance(error, str) or not isinstance(error_at, str):
            return None
        outcomes = tuple(_cache.load(stored))
        if not all(isinstance(o, Outcome) for o in outcomes) or not _cache.outcomes_fit(outcomes, text):
            return None
        if fixed is not None and (fixed == text or not outcomes):
            return None  # a change needs a finding that made it
        return FileResult(
            path, outcomes, text, fixed if fixed is not None else text, error=error, error_at=str(error_at)
        )
    except (_cache.Uncacheable, TypeError, AttributeError, ValueError):
        return None


def _to_cache(store: _cache.Cache, key: str, result: FileResult, text: Optional[str], data: Optional[bytes]) -> None:
    """Keep a result that depends on the file's text alone (no I/O error, no notebook)."""
    if result.notebook is not None or text is None or data is None or result.source != text:
        return
    if result.error and not result.error.startswith("does not parse"):
        return
    try:
        entry = {
            "outcomes": _cache.dump(result.outcomes),
            "fixed": result.fixed_source if result.changed else None,
            "error": result.error,
            "error_at": result.error_at,
        }
    except _cache.Uncacheable:
        return
    store.put(key, _cache.seal(entry, data, store.fingerprint))


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _entry_points(
    files: Sequence[str], sources: _Sources, store: Optional[_cache.Cache]
) -> Dict[str, Tuple[EntryPoint, ...]]:
    """project.entry_points, cached on the paths and bytes of every file of the tree."""
    if store is None:
        return project.entry_points(files, sources.text)
    tree = hashlib.blake2b(digest_size=20)
    for path in files:
        data = sources.data(path)
        tree.update(os.path.abspath(path).encode("utf-8", "surrogatepass") + b"\0")
        tree.update(hashlib.blake2b(data).digest() if data is not None else b"-")
    key = "tree-" + tree.hexdigest()
    cached = store.get(key)
    if cached is not None:
        try:
            found = {
                path: tuple(EntryPoint(**{k: _tuples(v) for k, v in e.items()}) for e in points)
                for path, points in cached["entries"].items()
            }
            if all(isinstance(e.function, str) for points in found.values() for e in points):
                return found
        except (KeyError, TypeError, AttributeError):
            pass
    found = project.entry_points(files, sources.text)
    store.put(key, {"entries": {path: [dataclasses.asdict(e) for e in points] for path, points in found.items()}})
    return found


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
