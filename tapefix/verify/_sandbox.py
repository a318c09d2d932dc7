"""The verifier child's sandbox: what the code of a probe may not do. See docs/verification.md.

Loaded by ``_child.py`` from its own folder (the child runs as a script, with tapefix's folder off
``sys.path``); it imports nothing of tapefix. Two layers:

* **the operating system** (``confine``, before TensorFlow is imported, while the process still has one
  thread, so that every thread TensorFlow starts inherits it): a fresh network namespace (no network
  at all), Landlock on Linux (no file is written, created, removed or renamed outside the child's own
  temporary folder, no program is executed, no TCP connection or bind, no signal to a process outside
  the sandbox), and resource limits (no core dumps, file size).
* **Python audit hooks** (``seal``, after TensorFlow is imported): every file opened for writing
  outside the temporary folder, and every file read outside the Python installation, process
  creation (``subprocess``, ``os.system``, ``os.exec*``, ``os.fork``, ``os.posix_spawn``), signals,
  ``ctypes``, sockets, unpickling, code objects built by hand, and the ``gc`` calls that would reach
  the hook's own state are refused. A refused call raises ``PermissionError`` and is recorded, so a
  probe that swallows the exception is still reported: ``tripped()`` returns what it tried.

Audit hooks live inside the process that runs the untrusted code, so they are a net, not a wall
(PEP 578 says as much); TensorFlow's own file operations run in C++ and never reach them. That is why
the operating-system layer exists, and why probes that call TensorFlow's I/O are refused before they
are sent (``tapefix.verify.probes.refusal``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import sys
from typing import Any, Callable, List, Optional, Tuple

#: file size a probe may write (autograph's generated modules are a few KiB)
FILE_SIZE_LIMIT = 64 << 20

# Landlock (linux/landlock.h)
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE = 1 << 0, 1 << 1
_FS_WRITES_V1 = sum(1 << bit for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write, remove, make *
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def confine(workdir: str) -> List[str]:
    """The operating-system layer, for a process that has one thread. Returns the layers in force
    (each is tried on its own; a platform without one keeps the others)."""
    layers: List[str] = []
    if _limit_resources():
        layers.append("rlimits")
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if _new_network_namespace(libc):
            layers.append("network namespace")
        abi = _landlock(libc, workdir)
        if abi:
            layers.append(f"landlock (ABI {abi})")
    return layers


def _limit_resources() -> bool:
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        limit = FILE_SIZE_LIMIT if hard == resource.RLIM_INFINITY else min(hard, FILE_SIZE_LIMIT)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return True
    except (ValueError, OSError):
        return False


def _new_network_namespace(libc: Any) -> bool:
    """No network at all: only a loopback interface, down. Root can make the namespace directly; an
    ordinary user makes a user namespace with it (where the kernel allows that)."""
    for flags in (_CLONE_NEWNET, _CLONE_NEWUSER | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            return True
    return False


def _landlock(libc: Any, workdir: str) -> int:
    """Landlock's ABI version in force, or 0 when the kernel has none (or refused)."""
    if platform.machine() not in ("x86_64", "aarch64", "riscv64", "loongarch64"):
        return 0  # the syscall numbers above are the generic ones
    libc.syscall.restype = ctypes.c_long
    abi = int(libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)))
    if abi < 1:
        return 0
    writes = _FS_WRITES_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(
        handled_access_fs=writes | _FS_EXECUTE | (_FS_IOCTL_DEV if abi >= 5 else 0),
        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = int(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)))
    if ruleset < 0:
        return 0
    try:
        for path, access in ((workdir, writes), (os.devnull, _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0))):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
                if (
                    libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
                    != 0
                ):
                    return 0
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 0
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


# ---------------------------------------------------------------------------- the audit hook
#: events refused whatever their arguments
DENIED = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.startfile",
        "os.kill",
        "os.killpg",
        "os.chdir",
        "signal.pthread_kill",
        "pty.spawn",
        "pickle.find_class",
        "marshal.loads",
        "marshal.load",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys.settrace",
        "sys.setprofile",
        "builtins.input",
        "builtins.breakpoint",
        "webbrowser.open",
        "urllib.Request",
        "ftplib.connect",
        "smtplib.connect",
        "http.client.connect",
        "shutil.rmtree",
        "os.add_dll_directory",
        "sqlite3.connect",
        "mmap.__new__",
    }
)
#: families of events refused whatever their arguments
DENIED_PREFIXES = ("ctypes.", "socket.", "_ssl.", "ssl.", "winreg.", "msvcrt.", "resource.setrlimit", "sys.remote_exec")
#: modules a probe may not import (the ones already imported are refused at their use, above)
DENIED_MODULES = frozenset(
    {
        "ctypes",
        "_ctypes",
        "subprocess",
        "_posixsubprocess",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "pty",
        "multiprocessing",
        "_multiprocessing",
        "pickle",
        "_pickle",
        "marshal",
        "shelve",
        "dbm",
        "asyncio",
        "webbrowser",
        "urllib.request",
        "http.client",
        "ftplib",
        "smtplib",
        "telnetlib",
        "sqlite3",
    }
)
#: events whose first argument is a path that must lie in the temporary folder
_PATH_EVENTS = frozenset(
    {
        "os.chmod",
        "os.chown",
        "os.chflags",
        "os.lchflags",
        "os.lchmod",
        "os.lchown",
        "os.link",
        "os.mkdir",
        "os.mkfifo",
        "os.mknod",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "os.setxattr",
        "os.removexattr",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.make_archive",
        "shutil.chown",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def seal(workdir: str, readable: Tuple[str, ...]) -> Callable[[], List[str]]:
    """Install the audit hook (it cannot be removed). ``readable``: the folders files may be read from
    besides ``workdir``. Returns ``tripped``: what the code run since the last call tried and was
    refused (and clears it)."""
    home = os.path.realpath(workdir)
    roots = tuple(sorted({os.path.realpath(p) for p in readable if p}))
    tried: List[str] = []

    def inside(path: Any, folders: Tuple[str, ...]) -> bool:
        if isinstance(path, int):
            return False  # a descriptor (the protocol's among them) is never reopened for writing
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return any(real == folder or real.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)

    def refuse(what: str) -> None:
        if len(tried) < 20:
            tried.append(what)
        raise PermissionError(errno.EACCES, f"refused by tapefix's verifier sandbox: {what}")

    def hook(event: str, args: Tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and not inside(path, (home,)):
                refuse(f"writing {path!r}")
            if not writes and not isinstance(path, int) and not inside(path, (home, *roots)):
                refuse(f"reading {path!r}")
        elif event == "import":
            name = str(args[0]) if args else ""
            if name in DENIED_MODULES or name.split(".")[0] in DENIED_MODULES:
                refuse(f"importing {name}")
        elif event in DENIED or event.startswith(DENIED_PREFIXES):
            refuse(event)
        elif event in _PATH_EVENTS:
            for path in args[:2] if event in ("os.rename", "os.link", "os.symlink", "shutil.move") else args[:1]:
                if event.startswith("tempfile.") and path is None:
                    continue
                if not inside(path, (home,)):
                    refuse(f"{event} on {path!r}")

    sys.addaudithook(hook)

    def tripped() -> List[str]:
        out = list(tried)
        tried.clear()
        return out

    return tripped


def readable_folders(extra: Tuple[str, ...] = ()) -> Tuple[str, ...]:
    """Where a probe may read files: the Python installation and its import path (TensorFlow loads
    parts of itself lazily), system libraries, and /proc, /sys and /dev (CPU and memory facts)."""
    folders = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *extra]
    if sys.platform != "win32":
        folders += ["/usr", "/lib", "/lib64", "/proc", "/sys", "/dev", "/etc/ld.so.cache", "/etc/localtime"]
    return tuple(p for p in folders if p and os.path.exists(p))


def describe(tried: List[str]) -> Optional[str]:
    if not tried:
        return None
    more = f" (and {len(tried) - 1} more)" if len(tried) > 1 else ""
    return f"refused: the code tried {tried[0]}{more}, which the verifier's sandbox does not allow"
