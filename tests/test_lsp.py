"""The language server end to end: a real LSP client (pytest-lsp) drives ``tapefix.lsp`` over stdio."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from tapefix.engine import check_source
from tapefix.rules import ALL_RULES
from tapefix.types import Safety

SERVER = [sys.executable, "-m", "tapefix.lsp"]
URI = "file:///project/train.py"

FLOOR = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = np.floor(x)
"""
FLOOR_FIXED = """\
import numpy as np
import tensorflow as tf

x = tf.Variable([1.7, 2.2])
with tf.GradientTape() as tape:
    y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))
"""


def recording_client() -> LanguageClient:
    """pytest-lsp's test client, keeping every publishDiagnostics in order (waiting for "the next
    notification" can miss one that arrives while the test is busy)."""
    client = LanguageClient(converter_factory=default_converter)
    features = dict(DEFAULT_CLIENT_FEATURES)
    received: List[types.PublishDiagnosticsParams] = []

    def record(client: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        received.append(params)

    features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS] = record
    register_lsp_features(client, features)
    client.received = received  # type: ignore[attr-defined]
    return client


CONFIG = ClientServerConfig(server_command=SERVER, client_factory=recording_client)


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient) -> Any:
    yield
    await lsp_client.shutdown_session()


# ------------------------------------------------------------------------------------------ helpers
def _to_offset(text: str, position: types.Position, units: str = "utf-16") -> int:
    """A client's own reading of an LSP position (independent of the server's code)."""
    lines = re.split(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)", text)
    offset = sum(len(line) for line in lines[: position.line])
    line = lines[position.line] if position.line < len(lines) else ""
    counted = 0
    for index, char in enumerate(line):
        if counted >= position.character:
            return offset + index
        counted += 1 if units == "utf-32" else len(char.encode("utf-16-le")) // 2
    return offset + len(line.rstrip("\r\n")) if counted < position.character else offset + len(line)


def apply_edits(text: str, edits: Sequence[types.TextEdit]) -> str:
    spans = sorted((_to_offset(text, e.range.start), _to_offset(text, e.range.end), e.new_text) for e in edits)
    for start, end, new in reversed(spans):
        text = text[:start] + new + text[end:]
    return text


def apply_workspace_edit(text: str, edit: types.WorkspaceEdit, uri: str, version: int) -> str:
    assert edit.document_changes, "the server sends versioned edits to a client that supports them"
    edits: List[types.TextEdit] = []
    for change in edit.document_changes:
        assert isinstance(change, types.TextDocumentEdit)
        assert change.text_document.uri == uri
        assert change.text_document.version == version
        edits.extend(e for e in change.edits if isinstance(e, types.TextEdit))
    return apply_edits(text, edits)


async def start(client: LanguageClient, options: Optional[Dict[str, Any]] = None, encodings: Any = None) -> Any:
    capabilities = pytest_lsp.client_capabilities("visual-studio-code")
    if encodings is not None:
        capabilities.general = types.GeneralClientCapabilities(position_encodings=encodings)
    return await client.initialize_session(
        types.InitializeParams(capabilities=capabilities, initialization_options=options)
    )


def mark(client: LanguageClient) -> int:
    """A point in the client's record of publishDiagnostics: ``published`` looks only after it."""
    return len(client.received)  # type: ignore[attr-defined]


async def published(
    client: LanguageClient, uri: str, version: Optional[int], after: int, timeout: float = 60
) -> List[types.Diagnostic]:
    """The diagnostics the server publishes for ``uri`` (at ``version``, unless None) after ``after``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        received: List[types.PublishDiagnosticsParams] = client.received  # type: ignore[attr-defined]
        for params in received[after:]:
            if params.uri == uri and (version is None or params.version == version):
                return list(params.diagnostics)
        assert asyncio.get_running_loop().time() < deadline, f"no diagnostics for {uri} version {version}"
        await asyncio.sleep(0.01)


async def open_document(client: LanguageClient, text: str, uri: str = URI) -> List[types.Diagnostic]:
    since = mark(client)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    return await published(client, uri, 1, since)


async def change_document(client: LanguageClient, text: str, version: int, uri: str = URI) -> List[types.Diagnostic]:
    since = mark(client)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    return await published(client, uri, version, since)


async def actions_for(
    client: LanguageClient,
    diagnostics: Sequence[types.Diagnostic],
    only: Optional[List[str]] = None,
    uri: str = URI,
) -> List[types.CodeAction]:
    where = diagnostics[0].range if diagnostics else types.Range(start=types.Position(0, 0), end=types.Position(0, 0))
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=where,
            context=types.CodeActionContext(diagnostics=list(diagnostics), only=only),
        )
    )
    actions = list(result or [])
    assert all(isinstance(action, types.CodeAction) for action in actions)
    return actions  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.asyncio
async def test_unsafe_quick_fix_round_trip(client: LanguageClient) -> None:
    await start(client)
    diagnostics = await open_document(client, FLOOR)
    assert len(diagnostics) == 1
    diagnostic = diagnostics[0]
    assert diagnostic.code == "TF101"
    assert diagnostic.source == "tapefix"
    assert diagnostic.severity == types.DiagnosticSeverity.Warning
    assert diagnostic.range == types.Range(start=types.Position(5, 8), end=types.Position(5, 19))
    assert diagnostic.code_description is not None
    assert diagnostic.code_description.href.endswith("/docs/rules/TF101-rounding-on-tensor.md")
    assert "gradient" in diagnostic.message

    actions = await actions_for(client, diagnostics)
    fixes = [a for a in actions if a.kind == types.CodeActionKind.QuickFix and "unsafe" in a.title]
    assert len(fixes) == 1
    fix = fixes[0]
    assert not fix.is_preferred, "an unsafe fix is never the preferred action"
    assert fix.edit is not None
    fixed = apply_workspace_edit(FLOOR, fix.edit, URI, 1)
    assert fixed == FLOOR_FIXED

    assert await change_document(client, fixed, 2) == []


@pytest.mark.asyncio
async def test_ignore_comment_silences_the_finding(client: LanguageClient) -> None:
    await start(client)
    text = FLOOR.replace("y = np.floor(x)", "y = np.floor(x)  # keep: quantised on purpose")
    diagnostics = await open_document(client, text)
    actions = await actions_for(client, diagnostics)
    ignore = [a for a in actions if a.title == "Ignore TF101 on this line"]
    assert len(ignore) == 1 and ignore[0].edit is not None
    ignored = apply_workspace_edit(text, ignore[0].edit, URI, 1)
    assert "    y = np.floor(x)  # keep: quantised on purpose  # tapefix: ignore[TF101]\n" in ignored
    assert await change_document(client, ignored, 2) == []


@pytest.mark.asyncio
async def test_ignore_merges_into_an_existing_tapefix_comment(client: LanguageClient) -> None:
    await start(client)
    text = FLOOR.replace("y = np.floor(x)", "y = np.floor(x)  # tapefix: ignore[TF102]")
    diagnostics = await open_document(client, text)
    assert [d.code for d in diagnostics] == ["TF101"]
    actions = await actions_for(client, diagnostics)
    (ignore,) = [a for a in actions if a.title == "Ignore TF101 on this line"]
    assert ignore.edit is not None
    merged = apply_workspace_edit(text, ignore.edit, URI, 1)
    assert "    y = np.floor(x)  # tapefix: ignore[TF102, TF101]\n" in merged
    assert await change_document(client, merged, 2) == []


@pytest.mark.asyncio
async def test_no_ignore_action_where_a_comment_would_break_the_code(client: LanguageClient) -> None:
    await start(client)
    text = FLOOR.replace("y = np.floor(x)", 'y = np.floor(x) + len("""\n""")')
    diagnostics = await open_document(client, text)
    assert [d.code for d in diagnostics] == ["TF101"]
    actions = await actions_for(client, diagnostics)
    assert not [a for a in actions if a.title.startswith("Ignore")]
    assert [a for a in actions if "unsafe" in a.title], "the fix itself is still offered"


@pytest.mark.asyncio
async def test_fix_all_respects_unsafe_setting_and_only(client: LanguageClient) -> None:
    await start(client)
    diagnostics = await open_document(client, FLOOR)
    fix_all = ["source.fixAll.tapefix"]
    assert await actions_for(client, diagnostics, only=fix_all) == [], "TF101's fix is unsafe: off by default"

    since = mark(client)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"tapefix": {"unsafeFixes": True}})
    )
    await published(client, URI, 1, since)
    (action,) = await actions_for(client, diagnostics, only=["source.fixAll"])
    assert action.kind == "source.fixAll.tapefix"
    assert action.edit is not None
    assert apply_workspace_edit(FLOOR, action.edit, URI, 1) == FLOOR_FIXED

    quick_only = await actions_for(client, diagnostics, only=[types.CodeActionKind.QuickFix])
    assert quick_only and all(a.kind == types.CodeActionKind.QuickFix for a in quick_only)
    source_only = await actions_for(client, diagnostics, only=[types.CodeActionKind.Source])
    assert [a.kind for a in source_only] == ["source.fixAll.tapefix"]


@pytest.mark.asyncio
async def test_settings_select_and_ignore(client: LanguageClient) -> None:
    await start(client, options={"ignore": ["TF101"]})
    assert await open_document(client, FLOOR) == []
    since = mark(client)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ignore": [], "select": ["TF1"]})
    )
    assert [d.code for d in await published(client, URI, 1, since)] == ["TF101"]


@pytest.mark.asyncio
async def test_project_configuration_applies_under_the_editor_settings(client: LanguageClient, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.tapefix]\nignore = ["TF101"]\nexclude = ["vendored"]\n')
    (tmp_path / "vendored").mkdir()
    module = (tmp_path / "train.py").as_uri()
    vendored = (tmp_path / "vendored" / "train.py").as_uri()
    await start(client)
    assert await open_document(client, FLOOR, uri=module) == []
    assert await open_document(client, FLOOR, uri=vendored) == [], "excluded by the project"
    since = mark(client)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"ignore": []}))
    assert [d.code for d in await published(client, module, 1, since)] == ["TF101"], "the editor's ignore replaces it"


@pytest.mark.asyncio
async def test_broken_project_configuration_is_reported_and_defaults_apply(
    client: LanguageClient, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.tapefix]\nselect = "TF1"\n')
    await start(client)
    diagnostics = await open_document(client, FLOOR, uri=(tmp_path / "train.py").as_uri())
    assert [d.code for d in diagnostics] == ["TF101"]
    assert any("pyproject.toml" in m.message and "select" in m.message for m in client.messages)


@pytest.mark.asyncio
async def test_stale_diagnostic_gets_no_edit(client: LanguageClient) -> None:
    await start(client)
    diagnostics = await open_document(client, FLOOR)
    shifted = "# a comment line moves everything down\n" + FLOOR
    await change_document(client, shifted, 2)
    # The client asks with the diagnostic of version 1: its ranges no longer fit the text.
    actions = await actions_for(client, diagnostics, only=[types.CodeActionKind.QuickFix])
    assert actions == []


@pytest.mark.asyncio
async def test_debounced_changes_publish_the_newest_version(client: LanguageClient) -> None:
    await start(client, options={"debounceMs": 200})
    await open_document(client, FLOOR)
    since = mark(client)
    for version in range(2, 6):
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=FLOOR + "#" * version + "\n")],
            )
        )
    assert [d.code for d in await published(client, URI, None, since)] == ["TF101"]
    versions = [params.version for params in client.received[since:]]  # type: ignore[attr-defined]
    assert versions == [5], "changes inside the debounce window are analysed once, at the newest version"


@pytest.mark.asyncio
async def test_save_reanalyses_and_close_clears(client: LanguageClient) -> None:
    await start(client)
    await open_document(client, FLOOR)
    since = mark(client)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI)))
    assert [d.code for d in await published(client, URI, 1, since)] == ["TF101"]
    since = mark(client)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
    )
    assert await published(client, URI, None, since) == []


EMOJI = FLOOR.replace("    y = np.floor(x)", '    s = "😀🧪"; y = np.floor(x)')


@pytest.mark.asyncio
async def test_utf16_columns_after_non_bmp_characters(client: LanguageClient) -> None:
    result = await start(client)
    assert result.capabilities.position_encoding in (None, types.PositionEncodingKind.Utf16)
    (diagnostic,) = await open_document(client, EMOJI)
    line = EMOJI.splitlines()[5]
    column = line.index("np.floor")
    assert diagnostic.range.start == types.Position(5, column + 2), "each emoji is two UTF-16 units"
    actions = await actions_for(client, [diagnostic])
    (fix,) = [a for a in actions if "unsafe" in a.title]
    assert fix.edit is not None
    fixed = apply_workspace_edit(EMOJI, fix.edit, URI, 1)
    assert '    s = "😀🧪"; y = tf.stop_gradient(tf.floor(x)) + (x - tf.stop_gradient(x))\n' in fixed
    assert await change_document(client, fixed, 2) == []


@pytest.mark.asyncio
async def test_utf32_when_the_client_prefers_it(client: LanguageClient) -> None:
    result = await start(client, encodings=[types.PositionEncodingKind.Utf32, types.PositionEncodingKind.Utf16])
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf32
    (diagnostic,) = await open_document(client, EMOJI)
    assert diagnostic.range.start == types.Position(5, EMOJI.splitlines()[5].index("np.floor"))


def _single_fix(example: Any) -> Optional[Safety]:
    findings = check_source(example.code)
    if example.expected is None or len(findings) != 1 or findings[0].fix is None:
        return None
    return findings[0].fix.safety


FIXABLE = [
    pytest.param(rule, example, _single_fix(example), id=f"{rule.CODE}-{number}")
    for rule in ALL_RULES
    for number, example in enumerate(rule.INVALID)
    if _single_fix(example) is not None
]


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def shared_client(lsp_client: LanguageClient) -> Any:
    """One server for the table below: each example is its own document."""
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


@pytest.mark.parametrize(("rule", "example", "safety"), FIXABLE)
@pytest.mark.asyncio(loop_scope="module")
async def test_every_rule_example_is_fixed_through_the_editor(
    shared_client: LanguageClient, rule: Any, example: Any, safety: Safety, request: pytest.FixtureRequest
) -> None:
    """Each rule's fixable example, fixed by its quick fix: preferred when safe, labelled when unsafe."""
    uri = f"file:///examples/{request.node.callspec.id}.py"
    diagnostics = await open_document(shared_client, example.code, uri=uri)
    assert [d.code for d in diagnostics] == [rule.CODE]
    actions = await actions_for(shared_client, diagnostics, only=[types.CodeActionKind.QuickFix], uri=uri)
    fixes = [a for a in actions if not a.title.startswith("Ignore")]
    assert len(fixes) == 1
    safe = safety is Safety.SAFE
    assert bool(fixes[0].is_preferred) is safe
    assert ("unsafe" in fixes[0].title) is not safe
    assert fixes[0].edit is not None
    fixed = apply_workspace_edit(example.code, fixes[0].edit, uri, 1)
    assert fixed == example.expected
    after = await change_document(shared_client, fixed, 2, uri=uri)
    assert [d.code for d in after] == [f.code for f in check_source(fixed)]


def test_the_table_holds_safe_and_unsafe_fixes() -> None:
    """The editor table above exercises both kinds of quick fix (it follows the rules as they grow)."""
    kinds = {param.values[2] for param in FIXABLE}
    assert kinds == {Safety.SAFE, Safety.UNSAFE}


def test_analyses_are_not_kept_alive() -> None:
    """The server analyses on every pause in typing: an analysis must not outlive its document version."""
    import libcst as cst

    from tapefix.lsp import Settings, analyse
    from tapefix.types import Config

    def modules() -> int:
        gc.collect()
        return sum(1 for thing in gc.get_objects() if isinstance(thing, cst.Module))

    before = modules()
    for version in range(3):
        analyse(FLOOR + "#" * version + "\n", version, Config(), Settings())
    assert modules() == before


MODULE_REPORT = """\
import atexit, json, sys

REPORT = sys.argv[1]

def report():
    with open(REPORT, "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(report)
from tapefix.lsp import main
sys.argv = sys.argv[:1]
main()
"""


@pytest.mark.asyncio
async def test_never_imports_tensorflow(tmp_path: Path) -> None:
    """A whole session (analysis, quick fixes, fix-all) in a server process that reports its modules on
    exit: no TensorFlow, and not even the verifier (so ``--verify`` cannot run inside a request)."""
    report = tmp_path / "modules.json"
    config = ClientServerConfig(
        server_command=[sys.executable, "-c", MODULE_REPORT, str(report)], client_factory=recording_client
    )
    lsp = await config.start()
    assert isinstance(lsp, LanguageClient)
    try:
        await start(lsp, options={"unsafeFixes": True})
        diagnostics = await open_document(lsp, FLOOR)
        kinds = {action.kind for action in await actions_for(lsp, diagnostics)}
        assert kinds == {types.CodeActionKind.QuickFix, "source.fixAll.tapefix"}
        await lsp.shutdown_session()
    finally:
        await lsp.stop()
    loaded = json.loads(report.read_text())
    assert "tapefix.lsp" in loaded and "pygls" in loaded, "the report comes from the server"
    assert not {"tensorflow", "keras", "tf_keras"} & {name.split(".")[0] for name in loaded}
    assert not [name for name in loaded if name.startswith("tapefix.verify")]


def test_console_script() -> None:
    completed = subprocess.run(["tapefix-lsp", "--version"], capture_output=True, text=True, check=True)
    assert completed.stdout.startswith("tapefix-lsp ")


def test_missing_extra_names_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["pygls"] = None
        try:
            import tapefix.lsp
        except ImportError as error:
            print(error)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "tapefix[lsp]" in completed.stdout
