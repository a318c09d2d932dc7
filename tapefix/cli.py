"""The command line: flags -> options -> api -> print -> exit code. No analysis here.

Exit codes: 0 nothing found (or everything fixed in place); 1 findings remain (with --diff: changes
or findings); 2 an error (a bad path, a file that does not parse, a bad configuration), other files
still processed. ``--exit-zero`` turns 1 into 0.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, List, Optional, Sequence, Tuple

import click

from tapefix import __version__, api, formats
from tapefix.api import FileResult, Mode
from tapefix.config import ConfigError, Overrides, Resolver, code_problem
from tapefix.output import display_path, finding_line, summary
from tapefix.types import Config, ExamplesError, SourceError, Status, Verifier

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
#: Trees with more files than this get a progress bar (when stderr is a terminal).
PROGRESS_THRESHOLD = 300


def _verifier(enabled: bool, examples_from: Optional[str] = None) -> Optional[Verifier]:
    if not enabled:
        return None
    from tapefix.verify import load_examples, make_verifier  # only --verify needs it

    verifier = make_verifier()  # without TensorFlow this raises before the user's code runs
    if examples_from is not None:
        verifier.examples.update(load_examples(examples_from))
    return verifier


def _codes(ctx: click.Context, param: click.Parameter, value: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
    """``--select TF101,TF2 --select TF3`` -> ("TF101", "TF2", "TF3"), each checked."""
    if not value:
        return None
    codes = tuple(code.strip() for item in value for code in item.split(",") if code.strip())
    for code in codes:
        problem = code_problem(code)
        if problem is not None:
            raise click.BadParameter(problem, ctx=ctx, param=param)
    return codes


def _globs(ctx: click.Context, param: click.Parameter, value: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
    if not value:
        return None
    return tuple(glob.strip() for item in value for glob in item.split(",") if glob.strip())


def use_color(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--diff", "diff", is_flag=True, help="Print the unified diff of what would change; write nothing.")
@click.option("--check", "check", is_flag=True, help="Report findings; write nothing.")
@click.option(
    "--unsafe-fixes/--no-unsafe-fixes",
    default=None,
    help="Also apply the fixes that change semantics in a documented way (overrides unsafe-fixes in pyproject.toml).",
)
@click.option("--verify", is_flag=True, help="Check each fix by running it before and after under TensorFlow.")
@click.option(
    "--verify-with",
    "verify_with",
    metavar="MODULE:FUNCTION",
    help="With --verify, also run each fix on the inputs FUNCTION() returns (a mapping of names to arrays, "
    "one batch, say), wherever they match the names the fixed code reads. Runs your code.",
)
@click.option(
    "--select",
    callback=_codes,
    multiple=True,
    metavar="CODES",
    help="Only these rules (codes or prefixes, comma-separated).",
)
@click.option(
    "--ignore", callback=_codes, multiple=True, metavar="CODES", help="Leave out these rules (comma-separated)."
)
@click.option(
    "--exclude",
    callback=_globs,
    multiple=True,
    metavar="GLOBS",
    help="Leave out files and folders matching these globs.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Use this pyproject.toml's [tool.tapefix] instead of looking for one above each file.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(formats.FORMATS),
    default="text",
    show_default=True,
    help="How to report findings: text, json, sarif (GitHub code scanning) or github (workflow annotations).",
)
@click.option("--explain", metavar="CODE", help="Print a rule's documentation and exit.")
@click.option("--list-rules", is_flag=True, help="Print every rule with its fix and fix safety, and exit.")
@click.option("-q", "--quiet", is_flag=True, help="Print the findings (and diffs) only: no summary, no progress bar.")
@click.option("--exit-zero", is_flag=True, help="Exit with 0 even when findings remain (errors still exit with 2).")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    metavar="N",
    help="Analyse files in N worker processes (default: the number of cores); the output is the same.",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache (.tapefix_cache/).")
@click.version_option(__version__, prog_name="tapefix")
def cli(
    paths: Sequence[str],
    diff: bool,
    check: bool,
    unsafe_fixes: Optional[bool],
    verify: bool,
    verify_with: Optional[str],
    select: Optional[Tuple[str, ...]],
    ignore: Optional[Tuple[str, ...]],
    exclude: Optional[Tuple[str, ...]],
    config_file: Optional[str],
    output_format: str,
    explain: Optional[str],
    list_rules: bool,
    quiet: bool,
    exit_zero: bool,
    jobs: Optional[int],
    no_cache: bool,
) -> int:
    """Find and fix TensorFlow code whose gradients are silently broken.

    PATHS are files or folders (walked for .py files and .ipynb notebooks); `-` reads a module on
    stdin and writes the fixed module on stdout. Settings come from [tool.tapefix] in the nearest
    pyproject.toml; flags override them.
    """
    if explain is not None:
        return _explain(explain)
    if list_rules:
        return _list_rules(output_format)
    if diff and check:
        raise click.UsageError("--diff and --check are exclusive")
    if not paths:
        raise click.UsageError("give at least one PATH (or - for stdin)")
    if "-" in paths and list(paths) != ["-"]:
        raise click.UsageError("- (stdin) cannot be mixed with other paths")
    mode = Mode.DIFF if diff else Mode.CHECK if check else Mode.FIX
    overrides = Overrides(select, ignore, exclude, unsafe_fixes)
    try:
        resolver = Resolver(overrides, config_file)
        # Read every configuration the given paths start from now, so a bad one stops the run before any work.
        start_settings = [resolver.settings_for(p if p != "-" else os.getcwd()) for p in paths]
    except ConfigError as error:
        click.echo(f"tapefix: error: {error}", err=True)
        return EXIT_ERROR
    if verify_with is not None and not verify:
        raise click.UsageError("--verify-with needs --verify")
    try:
        verifier = _verifier(verify, verify_with)
    except (ImportError, ExamplesError) as error:
        click.echo(f"tapefix: error: {error}", err=True)
        return EXIT_ERROR
    printer = Printer(mode, start_settings[0].config, output_format, quiet, exit_zero)
    if list(paths) == ["-"]:
        return _run_stdin(mode, start_settings[0].config, verifier, printer)
    progress = Progress(sys.stderr) if not quiet and sys.stderr.isatty() else None
    try:
        results = api.run(
            paths,
            mode,
            start_settings[0].config,
            verifier,
            resolver=resolver,
            progress=progress,
            jobs=jobs,
            use_cache=not no_cache,
        )
    finally:
        if progress is not None:
            progress.close()
    return printer.report(results)


class Progress:
    """A one-line progress bar on a terminal, shown only for trees of more than PROGRESS_THRESHOLD files."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.shown = False
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if total <= PROGRESS_THRESHOLD:
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        filled = width * done // total
        self.stream.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} files")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class Printer:
    """Prints results in the chosen format and works out the exit code."""

    def __init__(self, mode: Mode, config: Config, output_format: str, quiet: bool, exit_zero: bool) -> None:
        self.mode = mode
        self.config = config
        self.output_format = output_format
        self.quiet = quiet
        self.exit_zero = exit_zero
        self.color = use_color(sys.stdout)
        self.err_color = use_color(sys.stderr)

    def exit_code(self, results: Sequence[FileResult]) -> int:
        if any(r.error for r in results):
            return EXIT_ERROR
        remaining = any(
            self.mode is not Mode.FIX or outcome.status is not Status.FIXED for r in results for outcome in r.outcomes
        )
        changed = self.mode is Mode.DIFF and any(r.changed for r in results)
        if (remaining or changed) and not self.exit_zero:
            return EXIT_FINDINGS
        return EXIT_CLEAN

    def error(self, result: FileResult) -> None:
        path = display_path(result.path)
        where = f"{path}:{result.error_at}" if result.error_at else path
        label = click.style("error", fg="red", bold=True) if self.err_color else "error"
        click.echo(f"{where}: {label}: {result.error}", err=True, color=self.err_color)

    def report(self, results: List[FileResult]) -> int:
        rendered = formats.render(self.output_format, results, self.mode, self.config)
        if rendered is not None:
            for result in results:
                if result.error:
                    self.error(result)
            click.echo(rendered, nl=False)
        else:
            for result in results:
                if result.error:
                    self.error(result)
                    continue
                path = display_path(result.path)
                if self.mode is Mode.DIFF and result.changed:
                    before, after = result.source, result.fixed_source
                    if result.notebook is not None:
                        before, after = result.notebook.unmask(before), result.notebook.unmask(after)
                    click.echo(api.unified_diff(before, after, path), nl=False)
                for outcome in result.outcomes:
                    line = finding_line(
                        path, outcome, self.mode, self.config.unsafe_fixes, notebook=result.notebook, color=self.color
                    )
                    click.echo(line, color=self.color)
        if not self.quiet:
            click.echo(summary(results, self.mode, self.config.unsafe_fixes), err=True)
        return self.exit_code(results)


def _explain(code: str) -> int:
    from tapefix.ruledocs import render
    from tapefix.rules import ALL_RULES

    for rule in ALL_RULES:
        if code.upper() == rule.CODE or code == rule.NAME:
            click.echo(render(rule), nl=False)
            return EXIT_CLEAN
    known = ", ".join(rule.CODE for rule in ALL_RULES)
    click.echo(f"tapefix: error: --explain: no rule {code!r}; known rules: {known}", err=True)
    return EXIT_ERROR


def _list_rules(output_format: str) -> int:
    from tapefix.rules import ALL_RULES

    rows = [
        (rule.CODE, rule.NAME, "yes" if rule.has_fix() else "report only", rule.SAFETY.value, rule.MESSAGE)
        for rule in ALL_RULES
    ]
    if output_format == "json":
        import json

        keys = ("code", "name", "fix", "safety", "message")
        click.echo(json.dumps([dict(zip(keys, row)) for row in rows], indent=2))
        return EXIT_CLEAN
    header = ("Code", "Name", "Fix", "Safety", "Message")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    return EXIT_CLEAN


def _run_stdin(mode: Mode, config: Config, verifier: Optional[Verifier], printer: Printer) -> int:
    data = sys.stdin.buffer.read()
    try:
        decoded = api.decode(data)
        result = api.process_source(decoded.text, mode, config, verifier)
    except (api.FileError, SourceError) as error:
        where = f":{error.line}:{(error.column or 0) + 1}" if isinstance(error, SourceError) and error.line else ""
        click.echo(f"-{where}: error: {error}", err=True)
        if mode is Mode.FIX:
            sys.stdout.buffer.write(data)  # an editor piping through tapefix must not lose the buffer
        return EXIT_ERROR
    file_result = FileResult("-", result.outcomes, result.source, result.fixed_source)
    if mode is Mode.FIX:
        sys.stdout.buffer.write(api.encode(result.fixed_source, decoded))
        sys.stdout.flush()
        for outcome in result.outcomes:
            click.echo(finding_line("-", outcome, mode, config.unsafe_fixes), err=True)
        remaining = any(o.status is not Status.FIXED for o in result.outcomes)
        return EXIT_FINDINGS if remaining and not printer.exit_zero else EXIT_CLEAN
    return printer.report([file_result])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` and return the exit code (tests call this directly)."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="tapefix", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        return int(exit_.exit_code)
    except click.ClickException as error:
        error.show()
        return EXIT_ERROR
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return int(code) if isinstance(code, int) else EXIT_CLEAN


def entry_point() -> None:
    sys.exit(main())
