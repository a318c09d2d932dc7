"""How often ``tapefix-trace`` locates the cause of a broken gradient on the blogbench dev snippets.

    python benchmarks/bench_trace_blogbench.py [--blogbench ../shared/blogbench] [--workers 2] [--ok]

Reads the kit's ``oracle.tsv`` and runs every BROKEN_NONE, BROKEN_NAN and BROKEN_RAISE_GRAD snippet (and,
with ``--ok``, every OK snippet) under the trace with JSON output, from a scratch copy, never writing into
the kit. A snippet counts as *located* when the trace reports a diagnostic at a line of the snippet with a
rule code or a plain cause; *located off the call* when that line is not the gradient call itself. On OK
snippets any diagnostic counts as a report. Each worker imports TensorFlow once and forks a child per
snippet (new process group, 1 TF thread, seeds 0, a wall-clock limit, 6 GiB of address space), so the
import is paid once per worker. Results go to --out (default /tmp/tapefix-trace-blogbench).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import signal
import sys
import threading
import time

BROKEN = ("BROKEN_NONE", "BROKEN_NAN", "BROKEN_RAISE_GRAD")


def _child(snippet: str, workdir: str, out: str, steps: int) -> None:
    try:
        os.setpgid(0, 0)
        shutil.rmtree(workdir, ignore_errors=True)  # a fresh folder: nothing left by an earlier run
        os.makedirs(workdir)
        os.chdir(workdir)
        copy = os.path.join(workdir, os.path.basename(snippet))
        shutil.copyfile(snippet, copy)
        log = os.open(out + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 2)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        import keras

        keras.utils.set_random_seed(0)
        report = open(out, "w")
        os.dup2(report.fileno(), 1)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        from tapefix.tracing.cli import main

        main(["--format", "json", "--steps", str(steps), copy])
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(0)


def _worker(jobs: queue.Queue[tuple], results: list, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    while True:
        try:
            block, klass = jobs.get_nowait()
        except queue.Empty:
            return
        snippet = os.path.join(args.blogbench, "snippets", block + ".py")
        out = os.path.join(args.out, block + ".json")
        workdir = os.path.join(args.out, "run", block)
        start = time.time()
        pid = os.fork()
        if pid == 0:
            _child(snippet, workdir, out, args.steps)
        deadline = start + args.timeout
        timed_out = False
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.time() > deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        results.append(_judge(block, klass, out, timed_out, time.time() - start))


def _judge(block: str, klass: str, out: str, timed_out: bool, secs: float) -> dict:  # type: ignore[type-arg]
    row = {"block": block, "class": klass, "secs": round(secs, 1), "timed_out": timed_out}
    try:
        with open(out) as handle:
            text = handle.read()
        report = json.loads(text[text.index("{\n") :]) if "{\n" in text else None
    except (OSError, ValueError):
        report = None
    if report is None:
        row.update(located=False, reason="no report" + (" (timeout)" if timed_out else ""))
        return row
    name = block + ".py"
    mine = [d for d in report["diagnostics"] if os.path.basename(d["path"]) == name and (d["code"] or d["message"])]
    calls = report["gradient_calls"]
    call_lines = {c["line"] for c in calls}
    row.update(
        calls=len(calls),
        diagnostics=[f"{d['code'] or '-'}@L{d['line']}: {d['message'][:100]}" for d in report["diagnostics"]],
        located=bool(mine),
        off_call=any(d["line"] not in call_lines for d in mine),
        exit_code=report["exit_code"],
    )
    if not mine:
        if not calls:
            row["reason"] = "no gradient call reached under the trace: " + report["summary"]
        elif all(c["error"] is None and all(s["status"] == "present" for s in c["sources"]) for c in calls):
            row["reason"] = "every traced gradient was present and finite"
        else:
            row["reason"] = "a broken gradient with no located cause"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--blogbench", default=os.path.join(here, "..", "..", "shared", "blogbench"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ok", action="store_true", help="also run the OK snippets (reports there are wrong)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", default="/tmp/tapefix-trace-blogbench")
    args = parser.parse_args()
    args.blogbench = os.path.abspath(args.blogbench)
    os.makedirs(args.out, exist_ok=True)
    wanted = BROKEN + (("OK",) if args.ok else ())
    rows = []
    with open(os.path.join(args.blogbench, "oracle.tsv")) as handle:
        next(handle)
        for line in handle:
            block, _split, klass = line.split("\t")[:3]
            if klass in wanted and (args.only is None or block in args.only):
                rows.append((block, klass))
    os.environ.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        CUDA_VISIBLE_DEVICES="",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        HOME=os.path.join(args.out, "home"),
    )
    import tensorflow as tf  # imported once, before the forks; no op runs in the parent

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras  # noqa: F401

    import tapefix.tracing.cli  # noqa: F401
    import tapefix.tracing.recorder  # noqa: F401

    jobs: queue.Queue[tuple] = queue.Queue()  # type: ignore[type-arg]
    for row in rows:
        jobs.put(row)
    results: list = []  # type: ignore[type-arg]
    start = time.time()
    threads = [threading.Thread(target=_worker, args=(jobs, results, args)) for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.sort(key=lambda r: (r["class"], r["block"]))
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    broken = [r for r in results if r["class"] in BROKEN]
    print(f"blogbench dev, {len(results)} snippets in {time.time() - start:.0f} s")
    for klass in BROKEN:
        mine = [r for r in broken if r["class"] == klass]
        if mine:
            print(
                f"  {klass}: located {sum(r['located'] for r in mine)}/{len(mine)}, "
                f"off the gradient call {sum(r.get('off_call', False) for r in mine)}"
            )
    if broken:
        located = sum(r["located"] for r in broken)
        print(
            f"  BROKEN (NONE+NAN+RAISE_GRAD): located {located}/{len(broken)} ({100 * located / len(broken):.0f}%), "
            f"off the gradient call {sum(r.get('off_call', False) for r in broken)}"
        )
    if broken:
        kinds: dict = {}  # type: ignore[type-arg]
        for r in broken:
            first = (r.get("diagnostics") or ["none"])[0]
            code = first.split("@")[0]
            kind = code if code != "-" else ("plain: the call raised" if " raised " in first else "plain")
            if "does not depend" in first:
                kind = "plain: the target does not depend on the source"
            kinds[kind] = kinds.get(kind, 0) + 1
        print("  first cause reported: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda i: -i[1])))
    ok = [r for r in results if r["class"] == "OK"]
    if ok:
        reported = [r for r in ok if r.get("diagnostics")]
        print(f"  OK: {len(reported)}/{len(ok)} with a report")
        for r in reported:
            print(f"    reported: {r['block']}: {r['diagnostics'][:2]}")
    for r in broken:
        if not r["located"]:
            print(f"    missed: {r['class']} {r['block']}: {r.get('reason')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
