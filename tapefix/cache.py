"""A cache of per-file results, so that re-checking an unchanged tree costs a read and a hash per file.

Where it lives: ``.tapefix_cache/`` in the project root, the nearest folder at or above the first path
that holds a ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git`` (else the folder of that path
itself), like ruff's ``.ruff_cache``. ``TAPEFIX_CACHE_DIR`` names another folder. The folder carries a
``.gitignore`` (``*``) and a ``CACHEDIR.TAG`` so that git and backup tools leave it alone.

What a result is keyed on: the file's bytes, the mode (check, or fix/diff), the file's configuration,
and the entry points the project index found for it. The cache file itself is named after tapefix's
version and a hash of tapefix's own source files, so a new version (or an edited checkout) starts a new
cache file and never reads an old one; cache files of other versions are removed when a run saves.

What an entry is trusted on: it is sealed with the file's content hash, tapefix's fingerprint and a
checksum over its values (``seal``), and its findings must fit the file (``outcomes_fit``). A cache file
that is valid JSON but wrong (edited by hand, or an entry copied from another file or version) is a
miss, never a result: it cannot hide a finding.

A cache never breaks a run: a cache file that is missing, unreadable, truncated, not JSON, or holds
values tapefix cannot rebuild is treated as empty (or the entry as a miss), and a cache that cannot be
written is silently left unwritten. Saving goes through a temporary file and a rename, so two runs at
once leave one whole cache file, never a mix. Entries unused for ``MAX_AGE_DAYS`` are dropped on save.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import tempfile
import time
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Union

from tapefix import types

CACHE_DIR_NAME = ".tapefix_cache"
ENV_CACHE_DIR = "TAPEFIX_CACHE_DIR"
#: entries not used for this long are dropped when the cache is saved
MAX_AGE_DAYS = 30
_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
#: the values a cached result may hold; anything else makes the result uncacheable
_DATACLASSES = {cls.__name__: cls for cls in (types.Outcome, types.Finding, types.Position, types.Fix, types.Edit)}
_ENUMS = {cls.__name__: cls for cls in (types.Status, types.Safety, types.Forward)}


class Uncacheable(ValueError):
    """A value the cache does not know how to store."""


def project_root(paths: Sequence[str]) -> Path:
    """The nearest folder at or above the first path that looks like a project root, else its folder."""
    first = Path(paths[0] if paths else ".").absolute()
    start = first if first.is_dir() else first.parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return start


def cache_dir(paths: Sequence[str]) -> Path:
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured)
    return project_root(paths) / CACHE_DIR_NAME


def tapefix_fingerprint() -> str:
    """tapefix's version and a hash of its source files: a change to any rule starts a new cache."""
    from tapefix import __version__

    package = Path(__file__).resolve().parent
    digest = hashlib.blake2b(__version__.encode(), digest_size=16)
    for source in sorted(package.rglob("*.py")):
        try:
            digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes() + b"\0")
        except OSError:
            digest.update(b"?")
    return f"{__version__}-{digest.hexdigest()}"


def entry_key(data: bytes, *parts: object) -> str:
    """The key of one file's result: its bytes and everything else the result depends on (by ``repr``)."""
    digest = hashlib.blake2b(data, digest_size=20)
    for part in parts:
        digest.update(b"\0" + repr(part).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class Cache:
    """Results by key, loaded from one JSON file and saved back to it."""

    def __init__(self, directory: Path, fingerprint: Optional[str] = None) -> None:
        self.directory = directory
        self.fingerprint = fingerprint or tapefix_fingerprint()
        self.path = directory / f"results-{self.fingerprint}.json"
        self.entries: Dict[str, Dict[str, Any]] = {}
        self.used: Dict[str, float] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return
        if not isinstance(stored, dict) or stored.get("fingerprint") != self.fingerprint:
            return
        entries = stored.get("entries")
        if isinstance(entries, dict):
            self.entries = {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        entry = self.entries.get(key)
        if entry is not None:
            self.used[key] = time.time()
        return entry

    def put(self, key: str, entry: Dict[str, Any]) -> None:
        self.entries[key] = entry
        self.used[key] = time.time()
        self.dirty = True

    def save(self) -> None:
        """Write the cache back (atomically); a cache that cannot be written is left alone."""
        now = time.time()
        horizon = now - MAX_AGE_DAYS * 86400
        kept = {}
        for key, entry in self.entries.items():
            last = self.used.get(key, entry.get("used", 0))
            if not isinstance(last, (int, float)) or last < horizon:
                self.dirty = True
                continue
            if key in self.used and now - entry.get("used", 0) > 86400:
                self.dirty = True  # refresh "used" at most daily, so a re-run need not write
            kept[key] = {**entry, "used": int(last)}
        if not self.dirty:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _mark(self.directory)
            data = json.dumps({"fingerprint": self.fingerprint, "entries": kept}, separators=(",", ":"))
            fd, temporary = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(data)
                os.replace(temporary, self.path)
            except BaseException:
                _unlink(temporary)
                raise
            for old in self.directory.glob("results-*.json"):
                if old != self.path:
                    _unlink(str(old))
        except OSError:
            return
        self.dirty = False


def _mark(directory: Path) -> None:
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Created by tapefix: a cache, never commit it\n*\n", encoding="utf-8")
    tag = directory / "CACHEDIR.TAG"
    if not tag.exists():
        tag.write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by tapefix.\n",
            encoding="utf-8",
        )


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ----------------------------------------------------------------------------- values to JSON and back
def dump(value: Any) -> Any:
    """A JSON-able form of a result value (the frozen dataclasses and enums of tapefix.types)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        name = type(value).__name__
        if name not in _ENUMS:
            raise Uncacheable(name)
        return {"$e": name, "v": value.value}
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return [dump(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _DATACLASSES.get(name) is not type(value):
            raise Uncacheable(name)
        out: Dict[str, Any] = {"$d": name}
        for field in dataclasses.fields(value):
            out[field.name] = dump(getattr(value, field.name))
        return out
    raise Uncacheable(type(value).__name__)


def load(value: Any) -> Any:
    """The value ``dump`` stored; raises ``Uncacheable`` for anything it did not write."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return tuple(load(v) for v in value)
    if isinstance(value, dict):
        if "$e" in value:
            enum_class = _ENUMS.get(value["$e"])
            if enum_class is None:
                raise Uncacheable(str(value["$e"]))
            try:
                return enum_class(value.get("v"))
            except ValueError as error:
                raise Uncacheable(str(error)) from None
        cls = _DATACLASSES.get(value.get("$d", ""))
        if cls is None:
            raise Uncacheable(str(value.get("$d")))
        names = {f.name for f in dataclasses.fields(cls)}
        arguments = {k: load(v) for k, v in value.items() if k != "$d"}
        if set(arguments) - names:
            raise Uncacheable(f"{cls.__name__} has no field {sorted(set(arguments) - names)}")
        hints = _hints(cls)
        for name, argument in arguments.items():
            if not _conforms(argument, hints.get(name, Any)):
                raise Uncacheable(f"{cls.__name__}.{name} does not hold a {hints.get(name)}")
        try:
            return cls(**arguments)
        except TypeError as error:
            raise Uncacheable(str(error)) from None
    raise Uncacheable(type(value).__name__)


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _conforms(value: Any, hint: Any) -> bool:
    """Does a loaded value have the type a field is declared with (so a stray cache entry is a miss)?"""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is Union:
        return any(_conforms(value, option) for option in typing.get_args(hint))
    if origin is tuple:
        arguments = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return all(_conforms(item, arguments[0]) for item in value)
        return len(arguments) == len(value) and all(_conforms(v, a) for v, a in zip(value, arguments))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def dump_outcomes(outcomes: Iterable[types.Outcome]) -> Any:
    return [dump(o) for o in outcomes]


# ---------------------------------------------------------------------------- trusting an entry
def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def seal(entry: Dict[str, Any], data: bytes, fingerprint: str) -> Dict[str, Any]:
    """``entry`` with what it was computed from (the file's content hash and tapefix's fingerprint) and
    a checksum over both and its values: an entry edited by hand, copied from another file or cut short
    no longer matches, and is a miss."""
    body = {**entry, "content": content_hash(data), "tapefix": fingerprint}
    return {**body, "check": _checksum(body)}


def unsealed(entry: Any, data: bytes, fingerprint: str) -> Optional[Dict[str, Any]]:
    """The entry's values when its seal holds for these bytes and this tapefix, else None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("check"), str):
        return None
    body = {k: v for k, v in entry.items() if k not in ("check", "used")}
    if body.get("content") != content_hash(data) or body.get("tapefix") != fingerprint:
        return None
    if entry["check"] != _checksum(body):
        return None
    return body


def _checksum(body: Dict[str, Any]) -> str:
    canonical = json.dumps({k: v for k, v in body.items() if k not in ("check", "used")}, sort_keys=True)
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def outcomes_fit(outcomes: Sequence[types.Outcome], text: str) -> bool:
    """Whether cached outcomes can belong to ``text``: every finding and edit lies inside it, in order."""
    size = len(text)
    for outcome in outcomes:
        finding = outcome.finding
        if not (0 <= finding.start_offset <= finding.end_offset <= size):
            return False
        if finding.start.line < 1 or finding.end.line < finding.start.line:
            return False
        if finding.fix is not None and not all(0 <= e.start <= e.end <= size for e in finding.fix.edits):
            return False
    return True
