"""The language server survives malformed framing and answers every request.

A real ``tapefix-lsp`` process is fed raw bytes: headers in lower case or with LF line ends, a
``Content-Length`` that lies either way or asks for 100 GB, bodies that are not JSON or not objects,
requests whose ``params`` are not an object, and a document so deep that libcst would crash. After
each, the server must still be alive and answer the next request."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

pytest.importorskip("pygls")

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
SHUTDOWN = {"jsonrpc": "2.0", "id": 99, "method": "shutdown"}


def frame(message: Any, header: str = "Content-Length", end: bytes = b"\r\n", length: Optional[int] = None) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode("utf-8")
    return f"{header}: {len(body) if length is None else length}".encode() + end + end + body


def responses(data: bytes) -> List[Dict[str, Any]]:
    """The messages the server wrote (it frames them correctly)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        out.append(json.loads(rest[:length]))
        data = rest[length:]
    return out


def talk(chunks: Sequence[bytes], until_id: Any = 99, timeout: float = 20.0) -> Tuple[bool, List[Dict[str, Any]]]:
    """Send the chunks one by one; read until the response to ``until_id`` (or the timeout)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from tapefix.lsp import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
            process.stdin.flush()
            time.sleep(0.05)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                data += chunk
                try:
                    if any(m.get("id") == until_id and "method" not in m for m in responses(data)):
                        break
                except (ValueError, StopIteration, IndexError):
                    pass  # a partial message: read on
        return process.poll() is None, responses(data)
    finally:
        process.kill()
        process.wait()


def answered(messages: List[Dict[str, Any]]) -> Dict[Any, Dict[str, Any]]:
    return {m.get("id"): m for m in messages if "method" not in m}


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([frame(INITIALIZE, header="content-length"), frame(SHUTDOWN)], id="lower-case-header"),
        pytest.param([frame(INITIALIZE, end=b"\n"), frame(SHUTDOWN, end=b"\n")], id="lf-only-headers"),
        pytest.param([frame(INITIALIZE, length=400), frame(SHUTDOWN)], id="length-overstated"),
        pytest.param([frame(INITIALIZE, length=400) + frame(SHUTDOWN)], id="length-overstated-one-write"),
        pytest.param([frame(INITIALIZE, length=20), frame(SHUTDOWN)], id="length-understated"),
    ],
)
def test_a_misframed_message_is_still_read(chunks: Sequence[bytes]) -> None:
    alive, messages = talk(chunks)
    got = answered(messages)
    assert alive
    assert 1 in got and "result" in got[1], messages
    assert 99 in got and "error" not in got[99], messages


@pytest.mark.parametrize(
    ("chunk", "code"),
    [
        pytest.param(frame(INITIALIZE, length=99_999_999_999), -32700, id="100-GB-content-length"),
        pytest.param(frame(b"{not json"), -32700, id="not-json"),
        pytest.param(frame(b"[1, 2]"), -32600, id="an-array-body"),
        pytest.param(frame(b'"a string"'), -32600, id="a-string-body"),
    ],
)
def test_a_broken_message_gets_a_parse_error_and_the_server_goes_on(chunk: bytes, code: int) -> None:
    alive, messages = talk([chunk, frame(SHUTDOWN)])
    got = answered(messages)
    assert alive
    assert got.get(None, {}).get("error", {}).get("code") == code, messages
    assert 99 in got and "error" not in got[99], messages


@pytest.mark.parametrize(
    "params",
    [pytest.param([1, 2], id="array"), pytest.param("text", id="string"), pytest.param(3, id="number")],
)
def test_a_request_with_bad_params_is_answered_with_an_error(params: Any) -> None:
    bad = {"jsonrpc": "2.0", "id": 7, "method": "textDocument/codeAction", "params": params}
    alive, messages = talk([frame(INITIALIZE), frame(bad), frame(SHUTDOWN)])
    got = answered(messages)
    assert alive
    assert got[7]["error"]["code"] in (-32602, -32600), messages
    assert 99 in got, messages


def test_a_document_too_deep_for_libcst_does_not_kill_the_server() -> None:
    text = "import tensorflow as tf\nwith tf.GradientTape() as t:\n    y = " + " + ".join(["x"] * 10_000) + "\n"
    opened = {
        "jsonrpc": "2.0",
        "method": "textDocument/didOpen",
        "params": {"textDocument": {"uri": "file:///tmp/deep.py", "languageId": "python", "version": 1, "text": text}},
    }
    initialized = {"jsonrpc": "2.0", "method": "initialized", "params": {}}
    alive, messages = talk([frame(INITIALIZE), frame(initialized), frame(opened), frame(SHUTDOWN)])
    assert alive
    assert 99 in answered(messages)
