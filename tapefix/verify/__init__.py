"""Verification: every proposed fix is run before and after under TensorFlow, on synthesised inputs.

``make_verifier()`` returns the engine's ``Verifier`` hook: ``(source, findings) -> verdicts``, one
``tapefix.types.Verdict`` per finding, in order. Probes are built here, without TensorFlow
(``probes``); they run in one long-lived child process (``runner``, ``_child``), so TensorFlow is
imported once per run. See docs/verification.md.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import libcst as cst

from tapefix.types import ExamplesError, Finding, SourceError, Verdict
from tapefix.verify.probes import (
    NOT_A_TAPE_FIX,
    ModuleFacts,
    Probe,
    Unverifiable,
    plan,
    plan_block,
    plan_tape,
    plan_tape_block,
    refusal,
)
from tapefix.verify.runner import ChildError, Runner

INSTALL_HINT = "--verify needs TensorFlow, which is not installed: pip install 'tapefix[verify]'"

__all__ = ["ProbeVerifier", "make_verifier", "load_examples", "ExamplesError", "INSTALL_HINT"]


def load_examples(spec: str, timeout: float = 600.0) -> Dict[str, Any]:
    """The inputs the user's ``MODULE:FUNCTION`` builds (``--verify-with``), by name: run in a process of
    its own, in the current folder, because the user named it (the verifier's child never imports the
    user's modules)."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-m", "tapefix.verify._examples", spec],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ExamplesError(f"--verify-with {spec}: no answer within {timeout:.0f} s") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ExamplesError(f"--verify-with {spec}: {tail[0]}") from None
    if "error" in answer:
        raise ExamplesError(f"--verify-with {spec}: {answer['error']}")
    examples: Dict[str, Any] = answer["examples"]
    if not examples:
        raise ExamplesError(f"--verify-with {spec}: the function returned no numeric arrays")
    return examples


class ProbeVerifier:
    """The verifier: plans a probe per fix and runs the probes in one TensorFlow child process.

    Unverifiable fixes get an ``unverified`` verdict that says why, which is never a pass: the engine
    applies only fixes whose verdict passed."""

    def __init__(self, runner: Optional[Runner] = None, examples: Optional[Dict[str, Any]] = None) -> None:
        """``examples``: the user's own inputs by name (``load_examples``), run before the synthesised
        ones wherever a probe's input has the same name."""
        self.runner = runner or Runner()
        self.examples = dict(examples or {})
        self._cache: Dict[Tuple[str, str, Tuple[str, ...], str], Verdict] = {}
        #: probe results as the child reported them (with ``seconds``), for benchmarks
        self.log: List[Dict[str, Any]] = []

    def __call__(self, source: str, findings: Sequence[Finding]) -> List[Verdict]:
        facts: Optional[ModuleFacts] = None
        if findings:
            try:
                facts = ModuleFacts(source)
            except (cst.ParserSyntaxError, RecursionError, SourceError):
                facts = None
        verdicts: List[Optional[Verdict]] = [None] * len(findings)
        blocks: Dict[int, Probe] = {}
        pending: List[Tuple[int, str, Probe]] = []
        for index, finding in enumerate(findings):
            if facts is None:
                verdicts[index] = Verdict("unverified", "the source does not parse")
                continue
            planned = plan(source, finding, findings, facts=facts)
            if isinstance(planned, Unverifiable):
                # Fixes of the tape's own bookkeeping (watch, dtype, persistent, the gradient call).
                tape = plan_tape(source, finding, findings, facts=facts)
                if isinstance(tape, Probe) or tape.reason != NOT_A_TAPE_FIX:
                    planned = tape
            if isinstance(planned, Unverifiable):
                verdicts[index] = Verdict("unverified", planned.reason)
                continue
            refused = refusal(planned.before) or refusal(planned.after)
            if refused:
                verdicts[index] = Verdict("unverified", refused)
                continue
            pending.append((index, "unit", planned))
            if planned.kind in ("statement", "function"):
                # The whole tape block with its fixes applied: as a statement probe of the block when
                # it stands alone, else as the tape slice that runs it (module-level code, a function
                # the tape calls).
                block = plan_block(source, finding, findings, facts=facts) if planned.kind == "statement" else None
                if not isinstance(block, Probe):
                    block = plan_tape_block(source, finding, findings, facts=facts)
                if isinstance(block, Probe) and not (refusal(block.before) or refusal(block.after)):
                    blocks[index] = block
                    pending.append((index, "block", block))
        results = self._run([probe for _, _, probe in pending])
        block_results: Dict[int, Verdict] = {}
        for (index, role, probe), result in zip(pending, results):
            result = replace(result, level=_LEVELS.get(probe.kind, probe.kind))
            if probe.stand_ins and result.status != "unverified":
                names = ", ".join(f"`{n}`" for n in probe.stand_ins)
                result = replace(result, reason=f"{result.reason}; {names} stood in for by a differentiable stand-in")
            if role == "unit":
                verdicts[index] = result
            else:
                block_results[index] = result
        for index, block_verdict in block_results.items():
            unit = verdicts[index]
            if unit is not None:
                verdicts[index] = _with_block(unit, block_verdict)
        return [v if v is not None else Verdict("unverified", "no probe ran") for v in verdicts]

    def _run(self, probes: Sequence[Probe]) -> List[Verdict]:
        """A verdict per probe: cached ones as they were, the others from the TensorFlow child."""
        out: List[Optional[Verdict]] = [self._cache.get(_key(p)) for p in probes]
        for i, probe in enumerate(probes):
            # The one place probes leave for the child: whatever planned them, refused code never runs.
            refused = refusal(probe.before) or refusal(probe.after) if out[i] is None else None
            if refused:
                out[i] = Verdict("unverified", refused)
        todo = [(i, p) for i, p in enumerate(probes) if out[i] is None]
        if todo:
            requests = [_request(probe, str(i), self.examples) for i, probe in todo]
            try:
                results = self.runner.run(requests)
            except ChildError as error:
                results = [{"status": "unverified", "reason": str(error)} for _ in requests]
            for (i, probe), result in zip(todo, results):
                self.log.append(result)
                verdict = _verdict(result)
                if "seconds" in result:
                    # Only what the child judged is worth keeping; a timeout or a crash may not recur.
                    self._cache[_key(probe)] = verdict
                out[i] = verdict
        return [v if v is not None else Verdict("unverified", "no probe ran") for v in out]

    def close(self) -> None:
        self.runner.close()


#: what each kind of probe checks, as a verdict names it
_LEVELS = {"statement": "statement", "function": "function", "block": "tape block", "tape": "tape slice"}


def _with_block(unit: Verdict, block: Verdict) -> Verdict:
    """The unit's verdict, with what the whole tape block showed (the other fixes in it applied too). The
    block can fail a fix only by a forward difference (the fix changes values the rest of the block
    sees); a gradient still broken there is another cut's, and the verdict says that the block's
    gradient is not back yet instead of calling the block verified."""
    if not unit.passed:
        return unit
    if block.status == "failed" and block.reason.startswith("forward differs"):
        return replace(unit, status="failed", reason=f"in the whole tape block: {block.reason}")
    if block.passed:
        forward = block.reason.split("; ", 1)[-1]
        return replace(unit, reason=f"{unit.reason}; whole tape block: {forward}", level="tape block")
    if block.status == "unverified" and block.before and block.after == "finite" and block.before != "finite":
        # The block as written raised before it ended: its gradients are back with the fixes, and the
        # forward values were compared on the unit the fix sits in.
        return replace(
            unit,
            reason=(
                f"{unit.reason}; whole tape block: {block.before} -> finite (forward compared on the {unit.level} only)"
            ),
            level="tape block",
        )
    if block.status == "failed":
        return replace(unit, reason=f"{unit.reason}; the whole tape block's gradient is not back yet: {block.reason}")
    return unit


def make_verifier(examples: Optional[Dict[str, Any]] = None) -> ProbeVerifier:
    """The verifier ``--verify`` uses. Raises ImportError (with the install command) when TensorFlow is
    missing; TensorFlow itself is imported only in the child process."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(INSTALL_HINT)
    verifier = ProbeVerifier(examples=examples)
    atexit.register(verifier.close)
    return verifier


def _key(probe: Probe) -> Tuple[str, str, Tuple[str, ...], str]:
    return (probe.before, probe.after, probe.inputs + tuple(f"variable:{v}" for v in probe.variables), probe.forward)


def _request(probe: Probe, tag: str, examples: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    mine = {name: examples[name] for name in probe.inputs if name in examples} if examples else {}
    return {
        "examples": mine,
        "id": tag,
        "kind": probe.kind,
        "before": probe.before,
        "after": probe.after,
        "inputs": list(probe.inputs),
        "outputs": list(probe.outputs),
        "forward": probe.forward,
        "xla": probe.xla,
        "autograph": probe.autograph,
        "shapes": [list(shape) if shape is not None else None for shape in probe.shapes],
        "variables": list(probe.variables),
    }


def _verdict(result: Dict[str, Any]) -> Verdict:
    status = result.get("status")
    if status not in ("verified", "failed", "unverified"):
        return Verdict("unverified", "the verifier returned no verdict")
    return Verdict(
        status=str(status),
        reason=str(result.get("reason", "")),
        modes=tuple(str(m) for m in result.get("modes", ())),
        inputs=int(result.get("inputs", 0)),
        before=str(result.get("before", "")),
        after=str(result.get("after", "")),
    )
