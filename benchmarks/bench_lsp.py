"""How long after an edit the language server's diagnostics arrive, measured over the protocol.

Starts ``python -m tapefix.lsp`` as a subprocess, opens a generated 2,000-line module (or ``--file``),
then makes one-character edits, by turns in a comment at the end (``end``) and in the first number
after a tape (the first tape in the second half of the module, if any: ``inside``), and times each from
sending ``didChange`` to receiving the ``publishDiagnostics`` for that version (the default debounce of
50 ms included). For comparison it also times ``check_source`` on the same text in this process.

    python benchmarks/bench_lsp.py [--lines 2000] [--edits 10] [--shape dense|sparse|both] [--profile]
    python benchmarks/bench_lsp.py --file path/to/module.py

``dense``: every function holds a tape block (the worst case: everything is analysed).
``sparse``: one training step with a tape, the rest ordinary code (the common case).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import statistics
import sys
import textwrap
import time
from typing import Any, Dict, List

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from tapefix.engine import check_source

#: the first digit of a number
_NUMBER = re.compile(r"\b\d")
TAPE_BLOCK = textwrap.dedent(
    '''
    def step_{i}(w, x, targets):
        """One training step ({i})."""
        with tf.GradientTape() as tape:
            scaled = w / 0.25
            quantised = np.floor(scaled) * 0.25
            h = tf.nn.relu(x @ w + {i}.0)
            if tf.reduce_sum(h) > 0:
                h = h * 2.0
            ratio = tf.reduce_sum(h) / tf.reduce_sum(x)
            loss = tf.reduce_mean((quantised - targets) ** 2) + ratio
        grads = tape.gradient(loss, [w])
        for g in grads:
            print("gradient", g)
        return loss, grads
    '''
)
PLAIN_BLOCK = textwrap.dedent(
    '''
    def prepare_{i}(rows, scale={i}):
        """Ordinary preprocessing ({i})."""
        out = []
        for row in rows:
            if row is None:
                continue
            value = float(row) * scale
            out.append(round(value, 2))
        table = {{k: v for k, v in enumerate(out)}}
        return sorted(table.items(), key=lambda kv: kv[1])
    '''
)


def module(lines: int, shape: str) -> str:
    parts = ["import numpy as np\nimport tensorflow as tf\n"]
    count = 2
    i = 0
    if shape == "sparse":
        block = TAPE_BLOCK.format(i=0)
        parts.append(block)
        count += block.count("\n")
    while count < lines:
        block = (TAPE_BLOCK if shape == "dense" else PLAIN_BLOCK).format(i=i)
        parts.append(block)
        count += block.count("\n")
        i += 1
    return "".join(parts)


async def measure(text: str, edits: int) -> Dict[str, Any]:
    client = LanguageClient("tapefix-bench", "1")
    arrived: Dict[int, float] = {}
    counts: Dict[int, int] = {}
    waiting: Dict[int, asyncio.Future[None]] = {}

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        if params.version is None:
            return
        arrived[params.version] = time.perf_counter()
        counts[params.version] = len(params.diagnostics)
        future = waiting.get(params.version)
        if future is not None and not future.done():
            future.set_result(None)

    await client.start_io(sys.executable, "-m", "tapefix.lsp")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    uri = "file:///bench/module.py"
    loop = asyncio.get_running_loop()

    async def until(version: int) -> None:
        waiting[version] = loop.create_future()
        if version not in arrived:
            await asyncio.wait_for(waiting[version], timeout=120)

    sent = time.perf_counter()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    await until(1)
    open_ms = (arrived[1] - sent) * 1000
    timings: Dict[str, List[float]] = {"end": [], "inside": []}
    current = text
    # The function in the middle of the module that holds a tape (a step, in both shapes).
    middle = current.find("GradientTape(", len(current) // 2)
    if middle < 0:
        middle = max(current.find("GradientTape("), 0)
    for version in range(2, edits + 2):
        # One-character edits, as when typing: in a comment at the end, or the first digit of a number
        # after the tape.
        kind = "end" if version % 2 else "inside"
        if kind == "end":
            current = current + "#"
        else:
            found = _NUMBER.search(current, middle) or _NUMBER.search(current)
            assert found is not None, "the module has no number to edit"
            at = found.start()
            current = current[:at] + str((int(current[at]) + 1) % 10) + current[at + 1 :]
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=current)],
            )
        )
        await until(version)
        timings[kind].append((arrived[version] - sent) * 1000)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {"open_ms": open_ms, "edit_ms": timings, "diagnostics": counts[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--shape", choices=("dense", "sparse", "both"), default="both")
    parser.add_argument("--file", help="measure this module instead of a generated one")
    parser.add_argument("--profile", action="store_true", help="also print where check_source spends its time")
    options = parser.parse_args()
    shapes = ("sparse", "dense") if options.shape == "both" else (options.shape,)
    if options.file:
        shapes = (options.file,)
    for shape in shapes:
        text = module(options.lines, shape) if not options.file else open(options.file, encoding="utf-8").read()
        started = time.perf_counter()
        findings = check_source(text)
        engine_ms = (time.perf_counter() - started) * 1000
        result = asyncio.run(measure(text, options.edits))
        edited = ", ".join(
            f"{kind} median {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f})"
            for kind, times in result["edit_ms"].items()
        )
        print(
            f"{shape}: {text.count(chr(10))} lines, {result['diagnostics']} diagnostics; "
            f"check_source in-process {engine_ms:.0f} ms; open -> diagnostics {result['open_ms']:.0f} ms; "
            f"edit -> diagnostics over {options.edits} edits: {edited}"
        )
        assert len(findings) == result["diagnostics"]
        if options.profile:
            profile = cProfile.Profile()
            profile.runcall(check_source, text)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
