"""Verification: every proposed fix is run before and after under TensorFlow, on synthesised inputs.

``make_verifier()`` returns the engine's ``Verifier`` hook: ``(source, findings) -> verdicts``, one
``tapefix.types.Verdict`` per finding, in order. Probes are built here, without TensorFlow
(``probes``); they run in one long-lived child process (``runner``, ``_child``), so TensorFlow is
imported once per run. See docs/verification.md.
"""

from __future__ import annotations

import atexit
import importlib.util
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import libcst as cst

from tapefix.types import Finding, Verdict
from tapefix.verify.probes import ModuleFacts, Probe, Unverifiable, plan
from tapefix.verify.runner import ChildError, Runner

INSTALL_HINT = "--verify needs TensorFlow, which is not installed: pip install 'tapefix[verify]'"

__all__ = ["ProbeVerifier", "make_verifier", "INSTALL_HINT"]


class ProbeVerifier:
    """The verifier: plans a probe per fix and runs the probes in one TensorFlow child process.

    Unverifiable fixes get an ``unverified`` verdict that says why, which is never a pass: the engine
    applies only fixes whose verdict passed."""

    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or Runner()
        self._cache: Dict[Tuple[str, str, Tuple[str, ...], str], Verdict] = {}
        #: probe results as the child reported them (with ``seconds``), for benchmarks
        self.log: List[Dict[str, Any]] = []

    def __call__(self, source: str, findings: Sequence[Finding]) -> List[Verdict]:
        facts: Optional[ModuleFacts] = None
        if findings:
            try:
                facts = ModuleFacts(source)
            except (cst.ParserSyntaxError, RecursionError):
                facts = None
        plans: List[Union[Probe, Unverifiable]] = []
        for finding in findings:
            if facts is None:
                plans.append(Unverifiable("the source does not parse"))
            else:
                plans.append(plan(source, finding, findings, facts=facts))
        verdicts: List[Optional[Verdict]] = [None] * len(plans)
        pending: List[Tuple[int, Probe]] = []
        for index, planned in enumerate(plans):
            if isinstance(planned, Unverifiable):
                verdicts[index] = Verdict("unverified", planned.reason)
            elif _key(planned) in self._cache:
                verdicts[index] = self._cache[_key(planned)]
            else:
                pending.append((index, planned))
        if pending:
            requests = [_request(probe, f"{index}") for index, probe in pending]
            try:
                results = self.runner.run(requests)
            except ChildError as error:
                results = [{"status": "unverified", "reason": str(error)} for _ in requests]
            for (index, probe), result in zip(pending, results):
                self.log.append(result)
                verdict = _verdict(result)
                if "timed out" not in verdict.reason and "process" not in verdict.reason:
                    self._cache[_key(probe)] = verdict
                verdicts[index] = verdict
        return [v if v is not None else Verdict("unverified", "no probe ran") for v in verdicts]

    def close(self) -> None:
        self.runner.close()


def make_verifier() -> ProbeVerifier:
    """The verifier ``--verify`` uses. Raises ImportError (with the install command) when TensorFlow is
    missing; TensorFlow itself is imported only in the child process."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(INSTALL_HINT)
    verifier = ProbeVerifier()
    atexit.register(verifier.close)
    return verifier


def _key(probe: Probe) -> Tuple[str, str, Tuple[str, ...], str]:
    return (probe.before, probe.after, probe.inputs, probe.forward)


def _request(probe: Probe, tag: str) -> Dict[str, Any]:
    return {
        "id": tag,
        "kind": probe.kind,
        "before": probe.before,
        "after": probe.after,
        "inputs": list(probe.inputs),
        "outputs": list(probe.outputs),
        "forward": probe.forward,
        "xla": probe.xla,
        "autograph": probe.autograph,
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
