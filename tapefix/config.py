"""``[tool.tapefix]`` in ``pyproject.toml``: finding it, checking it, and resolving it per file.

The table is found by walking up from a file (or folder) to the first ``pyproject.toml`` that has a
``[tool.tapefix]`` table. Keys::

    [tool.tapefix]
    select = ["TF1"]                 # rule codes or prefixes; "ALL" (the default) means every rule
    extend-select = ["TF2"]
    ignore = ["TF103"]
    extend-ignore = []
    unsafe-fixes = false
    exclude = ["third_party", "notebooks/scratch/*.ipynb"]
    extend-exclude = []

    [tool.tapefix.per-file-ignores]
    "tests/*" = ["TF103"]

    [tool.tapefix.extend-per-file-ignores]
    "legacy.py" = ["TF1"]

Globs are relative to the folder of the ``pyproject.toml`` and use :mod:`fnmatch` (``*`` also
matches ``/``); a glob without ``/`` also matches a file's (or any parent folder's) bare name.
A command-line flag replaces the key of the same name; the ``extend-*`` keys still add to it.

The language server calls :func:`load_for` (a file path in, its :class:`Settings` out).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tapefix.types import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib

TABLE = "tool.tapefix"
LIST_KEYS = ("select", "extend-select", "ignore", "extend-ignore", "exclude", "extend-exclude")
TABLE_KEYS = ("per-file-ignores", "extend-per-file-ignores")
BOOL_KEYS = ("unsafe-fixes",)
ALLOWED_KEYS = LIST_KEYS + TABLE_KEYS + BOOL_KEYS
CODE_KEYS = ("select", "extend-select", "ignore", "extend-ignore")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file, the key and what is allowed."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        where = f"[{TABLE}] {key}" if key else f"[{TABLE}]"
        super().__init__(f"{path}: {where}: {message}")


@dataclass(frozen=True)
class Overrides:
    """What the command line says; ``None`` leaves the configuration file's value."""

    select: Optional[Tuple[str, ...]] = None
    ignore: Optional[Tuple[str, ...]] = None
    exclude: Optional[Tuple[str, ...]] = None
    unsafe_fixes: Optional[bool] = None


@dataclass(frozen=True)
class Settings:
    """One resolved configuration: the rule selection plus the per-path parts (exclude, per-file-ignores)."""

    config: Config = Config()
    exclude: Tuple[str, ...] = ()
    per_file_ignores: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    #: the folder the globs are relative to
    root: str = field(default_factory=os.getcwd)
    #: the file the settings came from; None for the defaults
    source: Optional[str] = None

    def _relative(self, path: str) -> Optional[PurePosixPath]:
        try:
            relative = os.path.relpath(os.path.abspath(path), self.root)
        except ValueError:  # another drive on Windows
            return None
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            return None
        return PurePosixPath(Path(relative).as_posix())

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (a file) matches ``exclude``: the path itself or any folder above it."""
        if not self.exclude:
            return False
        relative = self._relative(path)
        candidates = [PurePosixPath(Path(path).as_posix())] if relative is None else [relative]
        candidate = candidates[0]
        while candidate.parent != candidate and str(candidate.parent) not in ("", "."):
            candidates.append(candidate.parent)
            candidate = candidate.parent
        return any(_matches(str(c), pattern) for c in candidates for pattern in self.exclude)

    def ignored_for(self, path: str) -> Tuple[str, ...]:
        """The codes ``per-file-ignores`` turns off for ``path``."""
        relative = self._relative(path)
        name = str(relative) if relative is not None else Path(path).as_posix()
        codes: List[str] = []
        for pattern, ignored in self.per_file_ignores:
            if _matches(name, pattern):
                codes.extend(c for c in ignored if c not in codes)
        return tuple(codes)

    def config_for(self, path: str) -> Config:
        """The :class:`Config` for one file: the selection with that file's per-file-ignores added."""
        extra = self.ignored_for(path)
        if not extra:
            return self.config
        return Config(self.config.select, self.config.ignore + extra, self.config.unsafe_fixes)


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.rstrip("/")
    if fnmatch.fnmatchcase(path, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(PurePosixPath(path).name, pattern)


# ----------------------------------------------------------------------------- reading and checking
def known_codes() -> List[str]:
    from tapefix.rules import ALL_RULES  # the rules import libcst only; kept lazy so types stay cheap

    return [rule.CODE for rule in ALL_RULES]


def code_problem(code: Any, known: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why ``code`` is not a rule selector (a rule code, a prefix of one, or ALL); None when it is."""
    known = known_codes() if known is None else known
    allowed = f"a rule code or prefix ({', '.join(known)}, TF1, ...) or ALL"
    if not isinstance(code, str):
        return f"{code!r} is not a string; expected {allowed}"
    if code != "ALL" and (not code or not any(k.startswith(code) for k in known)):
        return f"unknown rule code {code!r}; expected {allowed}"
    return None


def _check_code(path: str, key: str, code: Any, known: Sequence[str]) -> str:
    problem = code_problem(code, known)
    if problem is not None:
        raise ConfigError(path, key, problem)
    return str(code)


def _string_list(path: str, key: str, value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, key, f"expected a list of strings, got {_describe(value)}")
    return tuple(value)


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{kinds.get(type(value), type(value).__name__)} ({value!r})"


def parse_table(table: Mapping[str, Any], path: str) -> Dict[str, Any]:
    """Check a ``[tool.tapefix]`` table; returns it with values as tuples. Raises ConfigError."""
    known = known_codes()
    checked: Dict[str, Any] = {}
    for key, value in table.items():
        if key not in ALLOWED_KEYS:
            hint = f" (did you mean {key.replace('_', '-')!r}?)" if key.replace("_", "-") in ALLOWED_KEYS else ""
            raise ConfigError(path, key, f"unknown key{hint}; allowed keys are {', '.join(ALLOWED_KEYS)}")
        if key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(path, key, f"expected true or false, got {_describe(value)}")
            checked[key] = value
        elif key in LIST_KEYS:
            values = _string_list(path, key, value)
            if key in CODE_KEYS:
                values = tuple(_check_code(path, key, v, known) for v in values)
            checked[key] = values
        else:
            if not isinstance(value, dict):
                raise ConfigError(path, key, f"expected a table of glob = [codes], got {_describe(value)}")
            entries = []
            for pattern, codes in value.items():
                codes = _string_list(path, f"{key}.{pattern!r}", codes)
                entries.append((pattern, tuple(_check_code(path, f"{key}.{pattern!r}", c, known) for c in codes)))
            checked[key] = tuple(entries)
    return checked


def read_table(path: Path) -> Optional[Dict[str, Any]]:
    """The checked ``[tool.tapefix]`` table of a ``pyproject.toml``; None when it has none."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), "", f"cannot read: {error.strerror or error}") from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), "", f"is not valid TOML: {error}") from None
    tool = document.get("tool")
    if not isinstance(tool, dict) or "tapefix" not in tool:
        return None
    table = tool["tapefix"]
    if not isinstance(table, dict):
        raise ConfigError(str(path), "", f"expected a table, got {_describe(table)}")
    return parse_table(table, str(path))


def find(start: str) -> Optional[Path]:
    """The nearest ``pyproject.toml`` with a ``[tool.tapefix]`` table, walking up from ``start``."""
    here = Path(os.path.abspath(start))
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _may_configure(candidate):
            if read_table(candidate) is not None:
                return candidate
    return None


def _may_configure(path: Path) -> bool:
    # Most pyproject.toml files on the way up never mention tapefix; skip parsing those.
    try:
        return b"tapefix" in path.read_bytes()
    except OSError:
        return False


def resolve(table: Optional[Mapping[str, Any]], overrides: Overrides, root: str, source: Optional[str]) -> Settings:
    """Settings from a checked table (or None for defaults) and the command line's overrides."""
    table = table or {}

    def pick(key: str, override: Optional[Tuple[str, ...]]) -> Optional[Tuple[str, ...]]:
        base = override if override is not None else table.get(key)
        extra = table.get(f"extend-{key}", ())
        if base is None:
            return tuple(extra) if extra and key != "select" else None
        return tuple(base) + tuple(extra)

    select = pick("select", overrides.select)
    if select is not None and "ALL" in select:
        select = None
    ignored = pick("ignore", overrides.ignore) or ()
    if "ALL" in ignored:
        select = ()
    ignore = tuple(c for c in ignored if c != "ALL")
    exclude = pick("exclude", overrides.exclude) or ()
    per_file = tuple(table.get("per-file-ignores", ())) + tuple(table.get("extend-per-file-ignores", ()))
    unsafe = overrides.unsafe_fixes if overrides.unsafe_fixes is not None else bool(table.get("unsafe-fixes", False))
    return Settings(Config(select, ignore, unsafe), exclude, per_file, root, source)


class Resolver:
    """Settings per file for one run: each file gets the nearest configuration above it (cached per
    folder), or the one named with ``--config``, with the command line's overrides on top."""

    def __init__(self, overrides: Overrides = Overrides(), config_file: Optional[str] = None) -> None:
        self.overrides = overrides
        self._fixed: Optional[Settings] = None
        self._by_folder: Dict[str, Settings] = {}
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(config_file, "", "--config: no such file")
            table = read_table(path)
            if table is None:
                raise ConfigError(config_file, "", "has no [tool.tapefix] table")
            self._fixed = resolve(table, overrides, str(path.resolve().parent), str(path))

    def settings_for(self, path: str) -> Settings:
        """The settings that apply to ``path``; raises ConfigError for a bad configuration file."""
        if self._fixed is not None:
            return self._fixed
        folder = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
        cached = self._by_folder.get(folder)
        if cached is None:
            found = find(folder)
            if found is None:
                cached = resolve(None, self.overrides, os.getcwd(), None)
            else:
                cached = resolve(read_table(found), self.overrides, str(found.parent), str(found))
            self._by_folder[folder] = cached
        return cached


def load_for(path: str) -> Settings:
    """The settings for one file, read fresh from the nearest ``pyproject.toml`` (no command-line
    overrides). ``load_for(p).excluded(p)`` says whether to leave the file alone and
    ``load_for(p).config_for(p)`` gives the :class:`~tapefix.types.Config` to run it with.
    Raises :class:`ConfigError` for a bad configuration."""
    return Resolver().settings_for(path)
