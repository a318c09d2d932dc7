"""The pure core: source text in, findings and fixed source out. No files, no subprocesses.

``check_source`` reports; ``fix_source`` applies non-overlapping fixes, re-parses and repeats to a
fixed point. Bytes outside the rewritten nodes are never touched: fixes are text edits over the
original source, so comments, formatting and line endings survive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Type

import libcst as cst

from tapefix.analysis.lighttree import light_module
from tapefix.analysis.scope import Function, ModuleAnalysis, Scope
from tapefix.analysis.slicing import EditPlan, needed_source, plan_edit
from tapefix.analysis.syntax import tape_block_indices
from tapefix.analysis.walk import NODE_FIELDS, NOT_NODES, node_fields
from tapefix.depth import check_depth
from tapefix.layout import parse_exactly, plain_layout
from tapefix.prefilter import SUPPRESSION, might_run_under_tape
from tapefix.rule import Rule, RuleContext, TapeBlockRule, asks_tape
from tapefix.rules import ALL_RULES
from tapefix.types import (
    Config,
    Edit,
    EntryPoint,
    Finding,
    Outcome,
    Position,
    Safety,
    SourceError,
    SourceResult,
    Status,
    Verdict,
    Verifier,
    applicable,
)

MAX_PASSES = 10
#: why a finding whose fix would not parse is reported without it
BROKEN_FIX = "tapefix's fix would not parse here (a tapefix bug: please report it)"
#: Every rule, safe fixes only (Config is frozen, so one value serves every call).
DEFAULT_CONFIG = Config()


def parse(source: str) -> cst.Module:
    check_depth(source)  # libcst's native parser would crash the process on very deep input
    try:
        return parse_exactly(source)  # libcst drops some layouts, which would move every later position
    except cst.ParserSyntaxError as error:
        first = str(error.message).strip().splitlines()[0] if str(error.message).strip() else "invalid syntax"
        raise SourceError(f"does not parse: {first}", error.raw_line, error.raw_column) from None
    except RecursionError:
        raise SourceError("does not parse: nesting too deep") from None


def rules_for(config: Config) -> List[Type[Rule]]:
    return [rule for rule in ALL_RULES if config.enabled(rule.CODE)]


def check_source(
    source: str, config: Config = DEFAULT_CONFIG, entry_points: Sequence[EntryPoint] = ()
) -> List[Finding]:
    """Every finding in ``source``, in source order (suppressed ones left out). ``entry_points`` name the
    functions of this module that tapes in other modules of the project run (see tapefix.project)."""
    if not might_run_under_tape(source, entry_points):
        return []
    needed = needed_source(source, entry_points)
    rules = rules_for(config)
    if not _may_find(source, needed, rules, entry_points):
        return []
    return _analyze(source, parse(needed), rules, entry_points, needed)


def _may_find(source: str, needed: str, rules: Sequence[Type[Rule]], entry_points: Sequence[EntryPoint]) -> bool:
    """Whether the analysis of ``needed`` may find anything, asked of the tree Python's own parser builds
    (tapefix.analysis.lighttree: several times faster than libcst's, and the same nodes without the
    whitespace). Most modules have no finding: they are never parsed by libcst. A module with one, or
    whose tree the ast cannot give exactly, or where a rule asks what only the exact tree knows, is
    analysed again on libcst's tree, which makes the findings and their fixes."""
    if not plain_layout(needed):
        return True  # the exact parse checks that libcst keeps this layout (tapefix.layout)
    try:
        module, ranges = light_module(needed)  # CPython's parser and a Python walk: depth is no danger
    except Exception:  # Unsupported, or what the exact parse will report properly (too deep, invalid)
        return True
    try:
        _analyze(source, module, rules, entry_points, needed, light=ranges)
    except Exception:  # Candidate, NeedsExact, or a rule that only copes with the exact tree
        return True
    return False


def check_edited_source(
    source: str, config: Config, previous_source: str, previous_findings: Sequence[Finding]
) -> List[Finding]:
    """``check_source(source, config)`` for an editor: ``previous_findings`` are those of
    ``previous_source``, the same module before an edit, checked with the same ``config``. When the edit
    changed only top-level definitions, only they and the definitions connected to them are analysed
    again; the findings elsewhere are the previous ones, moved. Otherwise the whole module is checked."""
    if not might_run_under_tape(source):
        return []
    plan = plan_edit(previous_source, source) if might_run_under_tape(previous_source) else None
    if plan is None:
        return check_source(source, config)
    found = [
        f
        for f in _analyze(source, parse(plan.needed), rules_for(config), (), plan.needed)
        if plan.is_fresh(f.start_offset)
    ]
    for finding in previous_findings:
        if plan.is_replaced(finding.start_offset):
            continue
        moved = _moved(finding, plan)
        if moved is None:
            return check_source(source, config)  # a fix reaches into the edited text
        found.append(moved)
    return sorted(found, key=lambda f: (f.start_offset, f.end_offset, f.code))


def _moved(finding: Finding, plan: EditPlan) -> Optional[Finding]:
    """The finding where it is after the edit; None when it or its fix reaches into the edited lines."""
    start, end = plan.moved(finding.start_offset), plan.moved(finding.end_offset)
    edits: List[Edit] = []
    for edit in finding.fix.edits if finding.fix is not None else ():
        edit_start, edit_end = plan.moved(edit.start), plan.moved(edit.end)
        if edit_start is None or edit_end is None:
            return None
        edits.append(Edit(edit_start, edit_end, edit.text))
    if start is None or end is None:
        return None

    def line(position: Position, offset: int) -> Position:
        return Position(position.line + plan.lines, position.column) if offset >= plan.old_end else position

    return replace(
        finding,
        start=line(finding.start, finding.start_offset),
        end=line(finding.end, finding.end_offset),
        start_offset=start,
        end_offset=end,
        fix=replace(finding.fix, edits=tuple(edits)) if finding.fix is not None else None,
    )


def external_calls(
    source: str, entry_points: Sequence[EntryPoint] = (), wanted: Optional[Callable[[str], bool]] = None
) -> List[EntryPoint]:
    """The calls this module's recorded code makes to functions it does not define (as written, with the
    tensor-ness of their arguments), for the project index to follow into other modules; ``wanted`` keeps
    only the callees it can follow (tensor-ness is inferred only when one is kept)."""
    if not might_run_under_tape(source, entry_points):
        return []
    needed = needed_source(source, entry_points)
    try:
        module = light_module(needed)[0]  # the calls and their arguments' tensor-ness need no whitespace
    except Exception:
        module = parse(needed)
    return ModuleAnalysis(module, entry_points, infer=False).external_calls(wanted)


def _analyze(
    source: str,
    module: cst.Module,
    rules: Sequence[Type[Rule]],
    entry_points: Sequence[EntryPoint] = (),
    code: Optional[str] = None,
    light: Optional[Dict[cst.CSTNode, Tuple[int, int, int, int]]] = None,
) -> List[Finding]:
    """The findings of the rules in ``module``, parsed from ``code`` (``source``, or the part of it the
    analysis needs: tapefix.analysis.slicing); ``light``: as for ``RuleContext``."""
    analysis = ModuleAnalysis(module, entry_points)
    if not analysis.regions:
        return []
    context = RuleContext(source, module, analysis, code, light)
    _dispatch(module, context, [rule(context) for rule in rules])
    findings = _unsuppressed(source, context.findings)
    return sorted(findings, key=lambda f: (f.start_offset, f.end_offset, f.code))


def _dispatch(module: cst.Module, context: RuleContext, rules: Sequence[Rule]) -> None:
    """One walk of the module; calls each rule's ``visit_<Node>`` for nodes that run while a tape records
    (for a rule with ``EVERYWHERE``, for every node). The walk of tapefix.analysis.walk, written out here
    with the scope bookkeeping inline: it runs once per node of every analysed module."""
    analysis = context.analysis
    #: by node class name: the handlers for recording code, and those of rules that look at tape blocks
    #: from outside (``Rule.EVERYWHERE``), called on every node
    handlers: Dict[str, List[Callable[[cst.CSTNode], None]]] = {}
    #: with whether the handler looks only at gradient calls on a tape (``TapeBlockRule.TAPE_CALLS_ONLY``)
    everywhere: Dict[str, List[Tuple[Callable[[cst.CSTNode], None], bool]]] = {}
    shared = [context.tape_blocks()] if any(isinstance(rule, TapeBlockRule) for rule in rules) else []
    for rule in [*shared, *rules]:
        for attribute in dir(rule):
            if attribute.startswith("visit_"):
                handler = getattr(rule, attribute)
                if rule.EVERYWHERE:
                    only = attribute == "visit_Call" and getattr(rule, "TAPE_CALLS_ONLY", False)
                    everywhere.setdefault(attribute[6:], []).append((handler, only))
                else:
                    handlers.setdefault(attribute[6:], []).append(handler)
    tape_names = analysis.tape_names
    # By id: a libcst node's hash is a Python-level call.
    regions = {id(node): scope for node, scope in analysis.regions.items()}
    excluded = {id(node) for node in analysis.excluded}
    ancestors = context.ancestors
    fields_of, not_nodes = NODE_FIELDS, NOT_NODES
    function_def, class_def, call = cst.FunctionDef, cst.ClassDef, cst.Call
    direct = Scope.DIRECT

    def enter(node: cst.CSTNode, scope: Optional[Scope], function: Optional[Function]) -> None:
        ancestors.append(node)
        key = id(node)
        kind = type(node)
        if key in regions:
            scope = regions[key]
        elif key in excluded or kind is function_def or kind is class_def:
            # A def inside recording code runs only when called; if it is, it is a region of its own.
            scope = None
        if kind is function_def:
            function = analysis.function_of(node)  # type: ignore[arg-type]
        name = kind.__name__
        if scope is not None:
            found = handlers.get(name)
            if found:
                context.scope = scope
                context.recording = True
                context.function = function
                for handler in found:
                    handler(node)
        either = everywhere.get(name)
        if either:
            # Code outside any recording region runs in the function itself: its fixes are direct.
            context.scope = scope if scope is not None else direct
            context.recording = scope is not None
            context.function = function
            asks = kind is not call or asks_tape(node, tape_names)
            for handler, only in either:
                if asks or not only:
                    handler(node)
        fields = fields_of.get(kind)
        if fields is None:
            fields = node_fields(node)
        for field in fields:
            value = getattr(node, field)
            cls = value.__class__
            if cls is tuple or cls is list:
                for item in value:
                    if item.__class__ not in not_nodes:
                        enter(item, scope, function)
            elif cls not in not_nodes:
                enter(value, scope, function)
        ancestors.pop()

    enter(module, None, None)


def _unsuppressed(source: str, findings: Sequence[Finding]) -> List[Finding]:
    if "tapefix:" not in source:
        return list(findings)
    lines = source.splitlines()
    kept = []
    for finding in findings:
        line = lines[finding.start.line - 1] if finding.start.line <= len(lines) else ""
        match = SUPPRESSION.search(line)
        if match is None:
            kept.append(finding)
            continue
        codes = match.group("codes")
        if codes is not None and not any(finding.code.startswith(c.strip()) for c in codes.split(",") if c.strip()):
            kept.append(finding)
    return kept


def apply_edits(source: str, edits: Sequence[Edit]) -> str:
    """Apply non-overlapping edits (sorted by position)."""
    out = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        out.append(source[cursor : edit.start])
        out.append(edit.text)
        cursor = edit.end
    out.append(source[cursor:])
    return "".join(out)


def _choose(findings: Sequence[Finding]) -> Tuple[List[Finding], List[Edit]]:
    """Findings whose edits do not overlap those already chosen; identical edits (one import for
    several fixes) are shared."""
    chosen: List[Finding] = []
    taken: List[Edit] = []
    for finding in findings:
        assert finding.fix is not None
        new = [e for e in finding.fix.edits if e not in taken]
        if any(_overlaps(e, t) for e in new for t in taken):
            continue
        chosen.append(finding)
        taken.extend(new)
    return chosen, taken


def _overlaps(a: Edit, b: Edit) -> bool:
    if a.start == a.end or b.start == b.end:
        # Insertions clash only when they insert at the same place, or inside the other edit.
        return (a.start == b.start) or (b.start < a.start < b.end) or (a.start < b.start < a.end)
    return a.start < b.end and b.start < a.end


def _shift(offset: int, edits: Sequence[Edit]) -> Optional[int]:
    """Where ``offset`` lands after ``edits``; None when an edit rewrote it."""
    delta = 0
    for edit in edits:
        if edit.end <= offset and not (edit.start == edit.end == offset):
            delta += len(edit.text) - (edit.end - edit.start)
        elif edit.start <= offset < edit.end:
            return None
    return offset + delta


def fix_source(
    source: str,
    config: Config = DEFAULT_CONFIG,
    verifier: Optional[Verifier] = None,
    entry_points: Sequence[EntryPoint] = (),
) -> SourceResult:
    """Apply every applicable fix to a fixed point; report what happened to each finding.

    With a ``verifier``, each fix is verified before it is applied; a fix that fails is not applied.
    ``entry_points`` are as for ``check_source``.
    """
    rules = rules_for(config)
    if not might_run_under_tape(source, entry_points):
        return SourceResult(source, source, ())
    current = source
    needed = needed_source(source, entry_points)
    if not _may_find(source, needed, rules, entry_points):
        return SourceResult(source, source, ())
    findings = _analyze(current, parse(needed), rules, entry_points, needed)
    original = list(findings)
    # Where each original finding now starts (None once an edit rewrote it).
    where: List[Optional[int]] = [f.start_offset for f in original]
    status: Dict[int, Status] = {}
    verdicts: Dict[int, Verdict] = {}
    extra: List[Outcome] = []
    # Fixes not to try again: (code, where the finding starts now). Keyed on the place, not on the
    # fix, whose edit offsets move when earlier edits land.
    rejected: Set[Tuple[str, int]] = set()
    #: the fixes that landed: the pass, the tape block (by order in the module), the verdict, the finding
    landed: List[Tuple[int, Optional[int], Optional[Verdict], Finding]] = []
    #: the text at each finding first seen in a later pass, in the source of that pass
    texts: Dict[int, str] = {}
    for passes in range(MAX_PASSES):
        candidates = [f for f in findings if applicable(f, config) and (f.code, f.start_offset) not in rejected]
        if not candidates:
            break
        chosen, _ = _choose(candidates)
        pass_verdicts: Dict[int, Verdict] = {}
        if verifier is not None:
            results = verifier(current, chosen)
            passed = []
            for finding, verdict in zip(chosen, results):
                pass_verdicts[id(finding)] = verdict
                if verdict.passed:
                    passed.append(finding)
                else:
                    rejected.add((finding.code, finding.start_offset))
                    _record(original, where, finding, Status.REJECTED, verdict, status, verdicts, extra)
            chosen, _ = _choose(passed)
        if not chosen:
            continue
        _, edits = _choose(chosen)
        candidate_source = apply_edits(current, edits)
        try:
            needed = needed_source(candidate_source, entry_points)
            new_module = parse(needed)
        except SourceError:
            # A fix that yields code that does not parse is a tapefix bug: never write it, and say so. The
            # fixes that do not parse even alone are reported; the others are tried again in the next pass.
            broken = [f for f in chosen if not _parses(apply_edits(current, f.fix.edits), entry_points)]  # type: ignore[union-attr]
            for finding in broken or chosen:
                rejected.add((finding.code, finding.start_offset))
                unfixed = replace(finding, fix=None, no_fix_reason=BROKEN_FIX)
                _record(original, where, unfixed, Status.MANUAL, None, status, verdicts, extra)
            continue
        for finding in chosen:
            before = len(extra)
            _record(original, where, finding, Status.FIXED, pass_verdicts.get(id(finding)), status, verdicts, extra)
            if len(extra) > before:
                texts[id(extra[-1])] = current[finding.start_offset : finding.end_offset]
        if verifier is not None:
            blocks = tape_block_indices(current, [f.start_offset for f in chosen])
            landed.extend((passes, block, pass_verdicts.get(id(f)), f) for f, block in zip(chosen, blocks))
        edits_sorted = sorted(edits, key=lambda e: (e.start, e.end))
        where = [None if w is None else _shift(w, edits_sorted) for w in where]
        rejected = {
            (code, shifted) for (code, offset) in rejected if (shifted := _shift(offset, edits_sorted)) is not None
        }
        current = candidate_source
        findings = _analyze(current, new_module, rules, entry_points, needed)
    # A finding whose place an earlier fix rewrote, found again in the rewritten code and fixed there
    # (np.floor in an if that became a tf.where): one finding, fixed, not one open and one fixed.
    for outcome in list(extra):
        if outcome.status is not Status.FIXED:
            continue
        for index, finding in enumerate(original):
            if (
                where[index] is None
                and index not in status
                and finding.code == outcome.finding.code
                and source[finding.start_offset : finding.end_offset] == texts.get(id(outcome))
            ):
                status[index] = Status.FIXED
                if outcome.verdict is not None:
                    verdicts[index] = outcome.verdict
                extra.remove(outcome)
                break
    vouched = _vouched_by_later_passes(landed)
    verdicts = {index: vouched.get(id(verdict), verdict) for index, verdict in verdicts.items()}
    extra = [replace(o, verdict=vouched.get(id(o.verdict), o.verdict)) for o in extra]
    outcomes = []
    for index, finding in enumerate(original):
        state = status.get(index)
        if state is Status.MANUAL:  # its fix would not parse
            finding = replace(finding, fix=None, no_fix_reason=BROKEN_FIX)
        if state is None:
            state = (
                Status.FIXABLE
                if finding.fix is not None and finding.fix.safety is not Safety.DISPLAY_ONLY
                else Status.MANUAL
            )
        outcomes.append(Outcome(finding, state, verdicts.get(index)))
    outcomes.extend(extra)
    return SourceResult(source, current, tuple(outcomes))


def _vouched_by_later_passes(
    landed: Sequence[Tuple[int, Optional[int], Optional[Verdict], Finding]],
) -> Dict[int, Verdict]:
    """Verdicts of fixes whose tape block's gradient was not back yet when they were checked, where a
    fix of a later pass in the same block (made visible by them: ``np.mean`` of what ``model.predict``
    returned) brought the whole block's gradients back: by ``id`` of the old verdict, the new one."""
    out: Dict[int, Verdict] = {}
    for passes, block, verdict, _ in landed:
        if block is None or verdict is None or not verdict.passed or verdict.level == "tape block":
            continue
        if "not back yet" not in verdict.reason:
            continue
        for later_pass, later_block, later, later_finding in landed:
            if later_pass > passes and later_block == block and later is not None and later.passed:
                if later.level != "tape block":
                    continue
                reason = verdict.reason.split("; the whole tape block's gradient is not back yet", 1)[0]
                out[id(verdict)] = replace(
                    verdict,
                    reason=f"{reason}; whole tape block: gradients back with the next pass's fixes "
                    f"({later_finding.code} at line {later_finding.start.line} of that pass)",
                    level="tape block",
                )
                break
    return out


def _parses(source: str, entry_points: Sequence[EntryPoint]) -> bool:
    try:
        parse(needed_source(source, entry_points))
    except SourceError:
        return False
    return True


def _record(
    original: Sequence[Finding],
    where: Sequence[Optional[int]],
    finding: Finding,
    state: Status,
    verdict: Optional[Verdict],
    status: Dict[int, Status],
    verdicts: Dict[int, Verdict],
    extra: List[Outcome],
) -> None:
    for index, start in enumerate(where):
        if start == finding.start_offset and original[index].code == finding.code and index not in status:
            status[index] = state
            if verdict is not None:
                verdicts[index] = verdict
            return
    # A finding that only an earlier fix made visible.
    extra.append(Outcome(replace(finding), state, verdict))
