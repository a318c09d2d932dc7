"""tapefix's language server: diagnostics and quick fixes over the same engine as the command line.

Run it as ``tapefix-lsp`` (stdio). It publishes one diagnostic per finding when a document is opened,
changed (debounced) or saved; each diagnostic carries its fix in ``data``, so a quick fix needs no
second analysis. Code actions: one ``quickfix`` per fixable finding, "Ignore CODE on this line", and
``source.fixAll.tapefix`` for the whole file. Verification (``--verify``) never runs here: it starts
TensorFlow, and this server never imports it.

Settings come from ``initializationOptions`` and ``workspace/didChangeConfiguration``, either flat or
under a ``"tapefix"`` key::

    {"unsafeFixes": false, "select": ["TF1"], "ignore": ["TF103"],
     "docsBaseUrl": "https://...", "debounceMs": 50}

The project's own ``[tool.tapefix]`` configuration (tapefix/config.py, nearest ``pyproject.toml``)
applies to each document; the editor's settings act as the command line's flags on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import os
import re
import tokenize
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

try:
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.uris import to_fs_path
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError("tapefix's language server needs the lsp extra: pip install 'tapefix[lsp]'") from error

from tapefix import __version__
from tapefix import config as project_config
from tapefix.config import Overrides
from tapefix.engine import check_edited_source, check_source, fix_source
from tapefix.prefilter import SUPPRESSION
from tapefix.ruledocs import page_name
from tapefix.rules import ALL_RULES
from tapefix.types import Config, Finding, Safety, SourceError, applicable

logger = logging.getLogger(__name__)

#: Where the rule pages (docs/rules/<CODE>-<name>.md) are published; a diagnostic's code links to
#: ``DOCS_BASE_URL + page_name(rule)``. Override it with the ``docsBaseUrl`` setting (a fork, a
#: pinned tag, or a local ``file://`` checkout).
DOCS_BASE_URL = "https://github.com/tapefix/tapefix/blob/main/docs/rules/"
#: How long to wait after the last change before analysing; typing faster than this analyses once.
DEBOUNCE_MS = 50
SOURCE = "tapefix"
FIX_ALL_KIND = "source.fixAll.tapefix"
_RULES = {rule.CODE: rule for rule in ALL_RULES}
_NEWLINE = re.compile(r"\r\n|\r|\n")


# ----------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """What the editor asked for. ``None`` means "not set here": the project's configuration decides."""

    unsafe_fixes: Optional[bool] = None
    select: Optional[Tuple[str, ...]] = None
    ignore: Optional[Tuple[str, ...]] = None
    docs_base_url: str = DOCS_BASE_URL
    debounce_ms: int = DEBOUNCE_MS

    @classmethod
    def from_json(cls, value: Any, base: Optional[Settings] = None) -> Settings:
        """Settings from an LSP settings object; keys that are absent or malformed keep ``base``'s value."""
        settings = base or cls()
        if isinstance(value, dict) and isinstance(value.get("tapefix"), dict):
            value = value["tapefix"]
        if not isinstance(value, dict):
            return settings
        changes: Dict[str, Any] = {}
        # An explicit null hands the key back to the project's configuration.
        if isinstance(value.get("unsafeFixes"), bool) or ("unsafeFixes" in value and value["unsafeFixes"] is None):
            changes["unsafe_fixes"] = value["unsafeFixes"]
        for key in ("select", "ignore"):
            codes = value.get(key)
            if isinstance(codes, list) and all(isinstance(c, str) for c in codes):
                changes[key] = tuple(codes)
            elif key in value and codes is None:
                changes[key] = None
        if isinstance(value.get("docsBaseUrl"), str):
            url = value["docsBaseUrl"]
            changes["docs_base_url"] = url if url.endswith("/") else url + "/"
        debounce = value.get("debounceMs")
        if isinstance(debounce, int) and not isinstance(debounce, bool) and debounce >= 0:
            changes["debounce_ms"] = debounce
        return replace(settings, **changes)

    def overrides(self) -> Overrides:
        """The editor's settings as the command line's flags: they replace the project's keys of the
        same name; its ``extend-*`` keys and per-file-ignores still apply."""
        return Overrides(select=self.select, ignore=self.ignore, unsafe_fixes=self.unsafe_fixes)


# ---------------------------------------------------------------------------------------- positions
class LineIndex:
    """Code-point offsets of a text to LSP positions (0-based lines, columns in the negotiated encoding).

    Lines end at ``\\r\\n``, ``\\r`` or ``\\n``, as in the LSP specification and in Python's tokenizer.
    """

    def __init__(self, text: str, encoding: str = types.PositionEncodingKind.Utf16) -> None:
        self.text = text
        self.encoding = encoding
        self.starts = [0]
        self.starts.extend(match.end() for match in _NEWLINE.finditer(text))

    def position(self, offset: int) -> types.Position:
        line = bisect.bisect_right(self.starts, offset) - 1
        return types.Position(line=line, character=self.units(self.text[self.starts[line] : offset]))

    def range(self, start: int, end: int) -> types.Range:
        return types.Range(start=self.position(start), end=self.position(end))

    def units(self, text: str) -> int:
        """The length of ``text`` in the encoding's code units."""
        if self.encoding == types.PositionEncodingKind.Utf32:
            return len(text)
        if self.encoding == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8", "surrogatepass"))
        # UTF-16: characters outside the Basic Multilingual Plane take two units.
        return len(text.encode("utf-16-le", "surrogatepass")) // 2

    def lines(self) -> List[str]:
        """The lines, each with its line ending."""
        ends = self.starts[1:] + [len(self.text)]
        return [self.text[start:end] for start, end in zip(self.starts, ends) if start < end or start == 0]


def _range_json(lsp_range: types.Range) -> Dict[str, Any]:
    return {
        "start": {"line": lsp_range.start.line, "character": lsp_range.start.character},
        "end": {"line": lsp_range.end.line, "character": lsp_range.end.character},
    }


def _range_from_json(value: Any) -> Optional[types.Range]:
    try:
        return types.Range(
            start=types.Position(line=int(value["start"]["line"]), character=int(value["start"]["character"])),
            end=types.Position(line=int(value["end"]["line"]), character=int(value["end"]["character"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


# -------------------------------------------------------------------------------------- diagnostics
@dataclass
class Analysis:
    """The last analysis of one version of one document."""

    version: Optional[int]
    source: str
    config: Config
    findings: List[Finding] = field(default_factory=list)
    diagnostics: List[types.Diagnostic] = field(default_factory=list)
    #: the source parsed (its findings are all there are, and an edit's re-check may start from them)
    parsed: bool = False


def analyse(
    source: str,
    version: Optional[int],
    config: Config,
    settings: Settings,
    encoding: str = types.PositionEncodingKind.Utf16,
    previous: Optional[Analysis] = None,
) -> Analysis:
    """Findings and their diagnostics for one document version. A source that does not parse has none
    (the syntax error is the Python tooling's to report, and our old ranges would point at wrong code).
    With the ``previous`` analysis of the document (same configuration), only what an edit can have
    changed is analysed again (tapefix.engine.check_edited_source)."""
    try:
        if previous is not None and previous.config == config and previous.parsed:
            findings = check_edited_source(source, config, previous.source, previous.findings)
        else:
            findings = check_source(source, config)
        parsed = True
    except (SourceError, RecursionError):
        parsed = False
        findings = []
    index = LineIndex(source, encoding)
    diagnostics = [_diagnostic(finding, index, version, settings) for finding in findings]
    return Analysis(version, source, config, findings, diagnostics, parsed)


def _diagnostic(finding: Finding, index: LineIndex, version: Optional[int], settings: Settings) -> types.Diagnostic:
    rule = _RULES.get(finding.code)
    message = finding.message
    fix = finding.fix
    if fix is None and finding.no_fix_reason:
        message = f"{message} (no fix: {finding.no_fix_reason})"
    data: Dict[str, Any] = {"version": version, "line": index.position(finding.start_offset).line, "fix": None}
    if fix is not None and fix.safety is not Safety.DISPLAY_ONLY:
        data["fix"] = {
            "title": fix.description or f"Fix {finding.code}",
            "safety": fix.safety.value,
            "edits": [{"range": _range_json(index.range(e.start, e.end)), "newText": e.text} for e in fix.edits],
        }
    return types.Diagnostic(
        range=index.range(finding.start_offset, finding.end_offset),
        message=message,
        severity=types.DiagnosticSeverity.Warning,
        code=finding.code,
        code_description=types.CodeDescription(href=settings.docs_base_url + page_name(rule)) if rule else None,
        source=SOURCE,
        data=data,
    )


# ------------------------------------------------------------------------------------- code actions
def _wants(only: Optional[Sequence[str]], kind: str) -> bool:
    """Whether ``kind`` passes the request's ``context.only`` filter (a kind matches its parents)."""
    if not only:
        return True
    return any(kind == wanted or kind.startswith(wanted + ".") for wanted in only)


def suppression_edit(source: str, line: int, code: str) -> Optional[Tuple[int, int, str]]:
    """The edit (code-point start, end, text) that makes ``# tapefix: ignore[CODE]`` cover ``line``
    (0-based): merged into a tapefix comment already there, else added after the line's code or its
    comment. None when the line cannot take a comment (it ends inside a string or after a backslash)
    or is already ignored."""
    index = LineIndex(source)
    lines = index.lines()
    if line >= len(lines):
        return None
    row = line + 1
    last_code_end: Optional[int] = None
    comment: Optional[tokenize.TokenInfo] = None
    line_ends_here = False
    lines_iter = iter(lines)
    try:
        for token in tokenize.generate_tokens(lambda: next(lines_iter, "")):
            if token.start[0] > row:
                break
            if token.type == tokenize.COMMENT and token.start[0] == row:
                comment = token
            elif token.type in (tokenize.NEWLINE, tokenize.NL) and token.start[0] == row:
                line_ends_here = True
                break
            elif token.end[0] == row and token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                last_code_end = token.end[1]
    except (tokenize.TokenError, SyntaxError):
        return None
    if not line_ends_here or last_code_end is None:
        return None
    line_start = index.starts[line]
    if comment is not None:
        match = SUPPRESSION.search(comment.string)
        if match is not None:
            codes = match.group("codes")
            if codes is None:
                return None
            listed = [c.strip() for c in codes.split(",") if c.strip()]
            if any(code.startswith(c) for c in listed):
                return None
            at = line_start + comment.start[1] + match.end("codes")
            return at, at, f", {code}"
        at = line_start + comment.end[1]
        return at, at, f"  # tapefix: ignore[{code}]"
    at = line_start + last_code_end
    return at, at, f"  # tapefix: ignore[{code}]"


def _minimal_edit(old: str, new: str) -> Tuple[int, int, str]:
    """One edit that turns ``old`` into ``new``: the differing middle."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    return prefix, len(old) - suffix, new[prefix : len(new) - suffix]


# ------------------------------------------------------------------------------------------- server
class TapefixServer(LanguageServer):
    """The language server: per-document analyses, settings, and the debounced analysis loop."""

    def __init__(self) -> None:
        super().__init__("tapefix", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.settings = Settings()
        self.analyses: Dict[str, Analysis] = {}
        self.config_errors: Set[str] = set()
        self.pending: Dict[str, asyncio.Task[None]] = {}
        # One analysis at a time: they are CPU-bound, and a queue keeps the newest version's wait short.
        self.analyser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapefix-analysis")

    # ------------------------------------------------------------------ configuration
    @property
    def encoding(self) -> str:
        return str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16)

    def config_for(self, uri: str) -> Optional[Config]:
        """The configuration for one document: the project's ``[tool.tapefix]`` (nearest
        ``pyproject.toml`` above the file, read afresh) under the editor's settings. None when the
        project excludes the file."""
        overrides = self.settings.overrides()
        fs_path = to_fs_path(uri) if uri.startswith("file:") else None
        if not fs_path:
            return project_config.resolve(None, overrides, os.getcwd(), None).config
        try:
            settings = project_config.Resolver(overrides).settings_for(fs_path)
        except project_config.ConfigError as error:
            # A broken pyproject.toml must not stop the editor's analysis: say so once, use the defaults.
            if str(error) not in self.config_errors:
                self.config_errors.add(str(error))
                self.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=str(error)))
            return project_config.resolve(None, overrides, os.getcwd(), None).config
        if settings.excluded(fs_path):
            return None
        return settings.config_for(fs_path)

    # ------------------------------------------------------------------ analysis
    def schedule(self, uri: str, delay_ms: int) -> None:
        """Analyse ``uri`` after ``delay_ms``; a newer request for the same document replaces it."""
        previous = self.pending.pop(uri, None)
        if previous is not None:
            previous.cancel()
        self.pending[uri] = asyncio.ensure_future(self._analyse_later(uri, delay_ms))

    async def _analyse_later(self, uri: str, delay_ms: int) -> None:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        document = self.workspace.get_text_document(uri)
        source, version = document.source, document.version
        config = self.config_for(uri)
        if config is None:
            result = Analysis(version, source, Config(select=()))
        else:
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(
                    self.analyser,
                    analyse,
                    source,
                    version,
                    config,
                    self.settings,
                    self.encoding,
                    self.analyses.get(uri),
                )
            except Exception as error:  # a rule's bug must not take the editor's other documents down
                logger.exception("tapefix: analysing %s failed", uri)
                self.window_log_message(
                    types.LogMessageParams(type=types.MessageType.Error, message=f"tapefix: {uri}: {error!r}")
                )
                return
        current = self.workspace.text_documents.get(uri)
        if current is None or current.version != version:
            return  # closed or edited meanwhile; the newer version has its own analysis coming
        self.analyses[uri] = result
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=result.diagnostics)
        )
        if self.pending.get(uri) is asyncio.current_task():
            del self.pending[uri]

    def forget(self, uri: str) -> None:
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.analyses.pop(uri, None)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    # ------------------------------------------------------------------ code actions
    async def code_actions(self, params: types.CodeActionParams) -> List[types.CodeAction]:
        uri = params.text_document.uri
        document = self.workspace.text_documents.get(uri)
        if document is None:
            return []
        version = document.version
        only = params.context.only
        actions: List[types.CodeAction] = []
        for diagnostic in params.context.diagnostics:
            if diagnostic.source != SOURCE or not isinstance(diagnostic.code, str):
                continue
            data = self._data_for(uri, version, diagnostic)
            if data is None:
                continue  # from an older version of the document; fresh diagnostics are on their way
            fix = data.get("fix")
            if isinstance(fix, dict) and _wants(only, types.CodeActionKind.QuickFix):
                action = self._fix_action(uri, version, diagnostic, fix)
                if action is not None:
                    actions.append(action)
            if _wants(only, types.CodeActionKind.QuickFix):
                action = self._ignore_action(uri, version, document.source, diagnostic, data)
                if action is not None:
                    actions.append(action)
        if _wants(only, FIX_ALL_KIND):
            action = await self._fix_all_action(uri, version, document.source, explicit=bool(only))
            if action is not None:
                actions.append(action)
        return actions

    def _data_for(self, uri: str, version: Optional[int], diagnostic: types.Diagnostic) -> Optional[Dict[str, Any]]:
        data = diagnostic.data
        if isinstance(data, dict) and "version" in data:
            return data if data["version"] == version else None
        # A client that drops ``data``: find the diagnostic in the last analysis of this version.
        analysis = self.analyses.get(uri)
        if analysis is None or analysis.version != version:
            return None
        for published in analysis.diagnostics:
            if published.code == diagnostic.code and published.range == diagnostic.range:
                return published.data if isinstance(published.data, dict) else None
        return None

    def _edit(self, uri: str, version: Optional[int], edits: List[types.TextEdit]) -> types.WorkspaceEdit:
        capabilities = self.client_capabilities
        workspace_edit = capabilities.workspace.workspace_edit if capabilities.workspace else None
        if workspace_edit is not None and workspace_edit.document_changes:
            identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
            return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=identifier, edits=edits)])
        return types.WorkspaceEdit(changes={uri: edits})

    def _fix_action(
        self, uri: str, version: Optional[int], diagnostic: types.Diagnostic, fix: Dict[str, Any]
    ) -> Optional[types.CodeAction]:
        edits = []
        for edit in fix.get("edits", ()):
            edit_range = _range_from_json(edit.get("range")) if isinstance(edit, dict) else None
            if edit_range is None or not isinstance(edit.get("newText"), str):
                return None
            edits.append(types.TextEdit(range=edit_range, new_text=edit["newText"]))
        safe = fix.get("safety") == Safety.SAFE.value
        title = f"{diagnostic.code}: {fix.get('title', 'fix')}"
        if not safe:
            title = f"{diagnostic.code} (unsafe fix): {fix.get('title', 'fix')}"
        return types.CodeAction(
            title=title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[diagnostic],
            is_preferred=safe,
            edit=self._edit(uri, version, edits),
        )

    def _ignore_action(
        self, uri: str, version: Optional[int], source: str, diagnostic: types.Diagnostic, data: Dict[str, Any]
    ) -> Optional[types.CodeAction]:
        code = str(diagnostic.code)
        line = data.get("line")
        if not isinstance(line, int):
            return None
        edit = suppression_edit(source, line, code)
        if edit is None:
            return None
        start, end, text = edit
        index = LineIndex(source, self.encoding)
        text_edit = types.TextEdit(range=index.range(start, end), new_text=text)
        return types.CodeAction(
            title=f"Ignore {code} on this line",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=[diagnostic],
            edit=self._edit(uri, version, [text_edit]),
        )

    async def _fix_all_action(
        self, uri: str, version: Optional[int], source: str, explicit: bool
    ) -> Optional[types.CodeAction]:
        analysis = self.analyses.get(uri)
        config = self.config_for(uri)
        if config is None:
            return None
        if analysis is not None and analysis.version == version:
            # The current analysis says whether there is anything to apply; skip the work when not.
            if not any(applicable(finding, config) for finding in analysis.findings):
                return None
        elif not explicit:
            return None  # an unfiltered request on a stale analysis: not worth a full fix run
        try:
            # Never with a verifier: verification starts TensorFlow, far too slow for a request.
            result = await asyncio.get_running_loop().run_in_executor(self.analyser, fix_source, source, config)
        except (SourceError, RecursionError):
            return None
        if not result.changed:
            return None
        start, end, text = _minimal_edit(source, result.fixed_source)
        index = LineIndex(source, self.encoding)
        title = "tapefix: apply all fixes" + (" (unsafe included)" if config.unsafe_fixes else " (safe only)")
        return types.CodeAction(
            title=title,
            kind=FIX_ALL_KIND,
            edit=self._edit(uri, version, [types.TextEdit(range=index.range(start, end), new_text=text)]),
        )


def create_server() -> TapefixServer:
    """A server with every feature registered (not started)."""
    server = TapefixServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: TapefixServer, params: types.InitializeParams) -> None:
        ls.settings = Settings.from_json(params.initialization_options, ls.settings)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: TapefixServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: TapefixServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, ls.settings.debounce_ms)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: TapefixServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: TapefixServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: TapefixServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if not settings:
            settings = await _pull_settings(ls)
        ls.settings = Settings.from_json(settings, ls.settings)
        for uri in list(ls.workspace.text_documents):
            ls.schedule(uri, 0)

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND]),
    )
    async def code_action(ls: TapefixServer, params: types.CodeActionParams) -> List[types.CodeAction]:
        return await ls.code_actions(params)

    return server


async def _pull_settings(ls: TapefixServer) -> Any:
    """The ``tapefix`` section through ``workspace/configuration``, for clients that push no settings."""
    capabilities = ls.client_capabilities
    if not (capabilities.workspace and capabilities.workspace.configuration):
        return None
    try:
        values = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section="tapefix")])
        )
    except Exception as error:  # the client may refuse; the settings we have stay
        logger.warning("tapefix: workspace/configuration failed: %s", error)
        return None
    return values[0] if values else None


# ---------------------------------------------------------------------------- framing
#: the largest message body read (a whole document in ``didOpen`` fits many times over)
MAX_BODY = 64 << 20
#: seconds to wait for the rest of a body that a ``Content-Length`` may have overstated
BODY_GRACE = 0.5
_CONTENT_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
_HEADER_START = re.compile(rb"\s*content-", re.IGNORECASE)
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


class FramedReader:
    """JSON-RPC messages from a byte stream, forgiving what clients get wrong.

    Headers are matched whatever their case, and lines may end in LF alone. A ``Content-Length`` that
    overstates the body is caught when a whole JSON value has arrived and the next header follows it
    (or nothing more comes for ``BODY_GRACE`` seconds); one that understates it leaves the rest of the
    body, which is skipped up to the next ``Content-Length``. A length over ``MAX_BODY`` is never
    allocated. ``next()`` returns ``(body, problem)``; ``None`` at the end of the stream."""

    def __init__(self, read: Any) -> None:
        self._read = read  #: async () -> bytes, b"" at the end of the stream
        self._buffer = bytearray()
        self._pending: Optional[asyncio.Future[bytes]] = None
        self._eof = False

    async def _fill(self, timeout: Optional[float] = None) -> bool:
        """Read more into the buffer; False at the end of the stream or when ``timeout`` passed."""
        if self._eof:
            return False
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read())
        try:
            chunk = await asyncio.wait_for(asyncio.shield(self._pending), timeout)
        except asyncio.TimeoutError:
            return False
        self._pending = None
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def _line(self) -> Optional[bytes]:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_BODY:
                self._buffer.clear()  # a flood without line breaks: nothing in it is a header
            if not await self._fill():
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest or None

    async def next(self) -> Optional[Tuple[Optional[bytes], str]]:
        length: Optional[int] = None
        while True:
            line = await self._line()
            if line is None:
                return None
            match = _CONTENT_LENGTH.search(line)
            if match:
                length = int(match.group(1))
                continue
            if length is not None and not line.strip():
                break
        if length > MAX_BODY:
            return None if self._eof else (None, f"Content-Length {length} is over the {MAX_BODY}-byte limit")
        while len(self._buffer) < length:
            complete = _complete_value(self._buffer)
            if complete is not None and _HEADER_START.match(self._buffer, complete):
                break  # the length overstated the body: the next message has begun
            if not await self._fill(BODY_GRACE if complete is not None else None):
                if complete is None and not self._eof:
                    continue
                break
        if len(self._buffer) >= length and _complete_value(self._buffer[:length]) is None:
            # Understated, when the whole value is here already: take the value, not the length.
            complete = _complete_value(self._buffer)
            if complete is not None and complete > length:
                length = complete
        if len(self._buffer) < length:
            complete = _complete_value(self._buffer)
            length = complete if complete is not None else len(self._buffer)
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body, ""


def _complete_value(data: bytes | bytearray) -> Optional[int]:
    """The end of the JSON value ``data`` starts with, when one is complete; None otherwise."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = len(text) - len(text.lstrip())
    try:
        _, end = json.JSONDecoder().raw_decode(text, stripped)
    except ValueError:
        return None
    return len(text[:end].encode("utf-8"))


def _error(protocol: Any, msg_id: Any, code: int, message: str) -> None:
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})


def handle_body(protocol: Any, body: Optional[bytes], problem: str) -> None:
    """One framed message: handed to pygls, or answered with the JSON-RPC error it deserves. Every
    request gets a response, so a client never waits forever."""
    if body is None:
        _error(protocol, None, PARSE_ERROR, problem)
        return
    try:
        raw = json.loads(body)
    except ValueError as error:
        _error(protocol, None, PARSE_ERROR, f"the body is not JSON: {error}")
        return
    if not isinstance(raw, dict):
        _error(protocol, None, INVALID_REQUEST, "a message must be a JSON object")
        return
    msg_id = raw.get("id")
    is_request = "method" in raw and "id" in raw
    if "params" in raw and not isinstance(raw["params"], (dict, list, type(None))):
        if is_request:
            _error(protocol, msg_id, INVALID_PARAMS, "params must be an object or an array")
        return
    try:
        message = json.loads(body, object_hook=protocol.structure_message)
    except Exception as error:  # noqa: BLE001 - pygls raises its own JSON-RPC errors here
        logger.warning("tapefix: a message could not be read: %s", error)
        if is_request:
            _error(protocol, msg_id, INVALID_PARAMS, f"invalid params for {raw.get('method')}")
        return
    try:
        protocol.handle_message(message)
    except Exception as error:  # noqa: BLE001 - one bad message must not stop the server
        logger.exception("tapefix: handling a message failed")
        if is_request:
            _error(protocol, msg_id, -32603, f"internal error: {type(error).__name__}")


def serve(server: TapefixServer, stdin: Any = None, stdout: Any = None) -> None:
    """Serve over stdio like pygls's ``start_io``, with ``FramedReader``'s forgiving framing."""
    import sys
    import threading

    from pygls.io_ import StdoutWriter

    stdin = stdin or sys.stdin.buffer
    stop = server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    reading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapefix-stdin")
    read1 = getattr(stdin, "read1", None) or (lambda size: stdin.read(1))

    async def read() -> bytes:
        return await asyncio.get_running_loop().run_in_executor(reading, read1, 65536)

    async def loop() -> None:
        reader = FramedReader(read)
        while not stop.is_set():
            framed = await reader.next()
            if framed is None:
                break
            handle_body(server.protocol, *framed)

    try:
        asyncio.run(loop())
    except BrokenPipeError:
        logger.error("tapefix: the connection to the client is lost")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        reading.shutdown(wait=False)
        server.shutdown()  # type: ignore[no-untyped-call]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tapefix-lsp``: serve the Language Server Protocol over stdio."""
    parser = argparse.ArgumentParser(prog="tapefix-lsp", description=main.__doc__)
    parser.add_argument("--version", action="version", version=f"tapefix-lsp {__version__}")
    parser.add_argument("--log-file", help="write the server's log here (stdout carries the protocol)")
    options = parser.parse_args(argv)
    if options.log_file:
        logging.basicConfig(filename=options.log_file, level=logging.INFO)
    serve(create_server())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
