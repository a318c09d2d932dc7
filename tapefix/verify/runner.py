"""The one place tapefix starts a subprocess: the TensorFlow child that runs probes.

JSON lines in (one probe each) and out (one verdict each) over the child's stdin and stdout. The child
imports TensorFlow once and runs every probe it is sent; each probe has its own time limit, and a
probe that overruns it (or kills the child) costs only itself: the child is restarted for the rest.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from typing import IO, Any, Dict, List, Optional, Sequence

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_child.py")
#: seconds one probe may take (a first tf.function trace included)
PROBE_TIMEOUT = 30.0
#: seconds the child may take to import TensorFlow
STARTUP_TIMEOUT = 180.0


#: what ``_read`` returns once the child has closed its stdout (it exited or was killed)
_EOF: Dict[str, Any] = {}


class ChildError(Exception):
    """The TensorFlow child could not be started or stopped answering."""


class Runner:
    """A long-lived TensorFlow child; ``run`` sends it probes and returns one result dict per probe."""

    def __init__(
        self,
        probe_timeout: float = PROBE_TIMEOUT,
        startup_timeout: float = STARTUP_TIMEOUT,
        command: Optional[Sequence[str]] = None,
    ) -> None:
        #: the child's command line; tests substitute a stand-in that needs no TensorFlow
        self.command = list(command) if command is not None else [sys.executable, CHILD]
        self.probe_timeout = probe_timeout
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen[str]] = None
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.stderr: Optional[IO[bytes]] = None
        self.workdir: Optional[tempfile.TemporaryDirectory[str]] = None
        #: seconds the child took to import TensorFlow, once started
        self.import_seconds: Optional[float] = None
        self.sandbox: List[str] = []
        self.starts = 0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.workdir is None:
            self.workdir = tempfile.TemporaryDirectory(prefix="tapefix-verify-")
        # The sandbox lets the child write only in its own folder: libraries that keep files in the
        # home folder or a cache (Keras's config, autograph's generated modules) find them there.
        for name in (
            "HOME",
            "TMPDIR",
            "TEMP",
            "TMP",
            "KERAS_HOME",
            "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME",
            "MPLCONFIGDIR",
        ):
            env[name] = self.workdir.name
        self.stderr = tempfile.TemporaryFile()
        self.lines = queue.Queue()
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=self.workdir.name,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.starts += 1
        threading.Thread(target=_pump, args=(self.process.stdout, self.lines), daemon=True).start()
        ready = self._read(self.startup_timeout)
        if ready is None or ready is _EOF or not ready.get("ready"):
            detail = self._stderr_tail()
            self.close()
            raise ChildError(f"the TensorFlow verifier process did not start{': ' + detail if detail else ''}")
        self.import_seconds = float(ready.get("import_seconds", 0.0))
        #: the sandbox layers in force in the child (docs/verification.md)
        self.sandbox = [str(layer) for layer in ready.get("sandbox", [])]

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            try:
                if process.stdin is not None:
                    process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    # ------------------------------------------------------------------ probes
    def run(self, probes: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """One result per probe, in order; a probe that times out or crashes the child gets an
        ``unverified`` result saying so."""
        results = []
        for probe in probes:
            results.append(self._run_one(probe))
        return results

    def _run_one(self, probe: Dict[str, Any]) -> Dict[str, Any]:
        self.start()
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(probe) + "\n")
            self.process.stdin.flush()
        except OSError:
            return self._lost("the verifier process stopped before the probe was sent")
        answer = self._read(self.probe_timeout)
        if answer is _EOF:
            try:
                if self.process is not None:
                    self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            return self._lost("the verifier process died running this probe")
        if answer is None:
            self._kill()
            return {"status": "unverified", "reason": f"the probe timed out after {self.probe_timeout:g} s"}
        return answer

    def _lost(self, message: str) -> Dict[str, Any]:
        code = self.process.poll() if self.process is not None else None
        detail = self._stderr_tail()
        self._kill()
        if code is not None and code < 0:
            message += f" (signal {-code}; the memory limit is {os.environ.get('TAPEFIX_VERIFY_MEMORY', '8 GiB')})"
        if detail:
            message += f": {detail}"
        return {"status": "unverified", "reason": message}

    def _kill(self) -> None:
        process = self.process
        self.process = None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def _read(self, timeout: float) -> Optional[Dict[str, Any]]:
        """The next message; None when none came in time; ``_EOF`` when the child closed its output."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            return _EOF
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(0)
            lines = [
                line.strip()
                for line in self.stderr.read().decode("utf-8", "replace").splitlines()
                if line.strip() and "WARNING" not in line
            ]
        except (OSError, ValueError):
            return ""
        return lines[-1][:200] if lines else ""


def _pump(stream: Optional[IO[str]], lines: queue.Queue[Optional[str]]) -> None:
    if stream is None:
        lines.put(None)
        return
    for line in stream:
        lines.put(line)
    lines.put(None)
