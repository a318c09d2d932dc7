"""What verification costs: the TensorFlow import, then the time per probe.

Builds one module whose tape block holds ``--fixes`` different fixable lines (rounding, division,
NumPy calls, a vector ``if``, singular ops), verifies every fix with one ``ProbeVerifier`` (one
TensorFlow child process), and reports:

* the child's TensorFlow import time (measured inside the child);
* the median and 90th percentile of the time per probe (measured inside the child, after the import);
* the wall time for all fixes, the import included, as a user of ``tapefix --verify`` waits for it;
* how many fixes came out verified, failed and unverified.

    python benchmarks/bench_verify.py [--fixes 100]

Not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from typing import List

from tapefix.engine import check_source
from tapefix.types import Config
from tapefix.verify import ProbeVerifier

LINES = [
    "r{i} = np.floor(x * {k}.0)",
    "c{i} = tf.math.ceil(x + {k}.0)",
    "d{i} = {k}.0 / x",
    "e{i} = np.exp(x * 0.{k})",
    "q{i} = w / (w * {k}.0)",
    "s{i} = np.sum(np.abs(x - {k}.0))",
    "t{i} = tf.round(w * {k}.0)",
    "if x > {k}.0:\n        v{i} = x ** 2\n    else:\n        v{i} = {k}.0 * x",
]


def module(fixes: int) -> str:
    body: List[str] = []
    for i in range(fixes):
        template = LINES[i % len(LINES)]
        body.append("    " + template.format(i=i, k=i % 7 + 1))
    return (
        "import numpy as np\nimport tensorflow as tf\n\n"
        "x = tf.Variable([0.0, 1.5, -2.0])\nw = tf.Variable([1.0, 0.0, 3.0])\n"
        "with tf.GradientTape() as tape:\n" + "\n".join(body) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixes", type=int, default=100)
    args = parser.parse_args()
    lines = args.fixes
    while True:
        source = module(lines)
        findings = [f for f in check_source(source, Config(unsafe_fixes=True)) if f.fix is not None]
        if len(findings) >= args.fixes:
            break
        lines += args.fixes - len(findings)
    findings = findings[: args.fixes]
    print(f"{len(findings)} fixes proposed in a {len(source.splitlines())}-line module")
    verifier = ProbeVerifier()
    started = time.perf_counter()
    verdicts = verifier(source, findings)
    wall = time.perf_counter() - started
    verifier.close()
    seconds = sorted(float(r.get("seconds", 0.0)) for r in verifier.log if "seconds" in r)
    cpu = sorted(float(r.get("cpu_seconds", 0.0)) for r in verifier.log if "cpu_seconds" in r)
    counts = collections.Counter(v.status for v in verdicts)
    print(f"TensorFlow import in the child: {verifier.runner.import_seconds:.2f} s")
    if seconds:
        p90 = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
        print(
            f"per probe after the import: median {1000 * statistics.median(seconds):.0f} ms, "
            f"p90 {1000 * p90:.0f} ms, max {1000 * seconds[-1]:.0f} ms over {len(seconds)} probes"
        )
        print(
            f"CPU time per probe (the child is single-threaded, so this is what an idle core pays): "
            f"median {1000 * statistics.median(cpu):.0f} ms, total {sum(cpu):.1f} s"
        )
    xla = sorted(float(r["cpu_seconds"]) for r in verifier.log if "xla" in r.get("modes", ()) and "cpu_seconds" in r)
    if xla:
        print(
            f"  of which {len(xla)} also under XLA (tf.where fixes): median CPU {1000 * statistics.median(xla):.0f} ms"
        )
    print(f"all {len(findings)} fixes verified in {wall:.1f} s wall, the import included")
    print("verdicts: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for finding, verdict in zip(findings, verdicts):
        if verdict.status != "verified":
            print(
                f"  {finding.start.line}:{finding.start.column + 1} {finding.code} {verdict.status}: {verdict.reason}"
            )


if __name__ == "__main__":
    main()
