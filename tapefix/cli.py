"""The command line: flags -> options -> api -> print -> exit code. No analysis here.

Exit codes: 0 nothing found (or everything fixed in place); 1 findings remain (with --diff: changes
or findings); 2 an error (a bad path, a file that does not parse), other files still processed.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence

import click

from tapefix import __version__, api, engine
from tapefix.api import FileResult, Mode
from tapefix.output import finding_line, summary
from tapefix.types import Config, Status

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _verifier(enabled: bool) -> Optional[engine.Verifier]:
    if not enabled:
        return None
    from tapefix.verify import make_verifier  # only --verify needs it

    return make_verifier()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--diff", "diff", is_flag=True, help="Print the unified diff of what would change; write nothing.")
@click.option("--check", "check", is_flag=True, help="Report findings; write nothing.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply the fixes that change semantics in a documented way.")
@click.option("--verify", is_flag=True, help="Check each fix by running it before and after under TensorFlow.")
@click.version_option(__version__, prog_name="tapefix")
def cli(paths: Sequence[str], diff: bool, check: bool, unsafe_fixes: bool, verify: bool) -> int:
    """Find and fix TensorFlow code whose gradients are silently broken.

    PATHS are files or folders (walked for .py files); `-` reads a module on stdin and writes the
    fixed module on stdout.
    """
    if diff and check:
        raise click.UsageError("--diff and --check are exclusive")
    if not paths:
        raise click.UsageError("give at least one PATH (or - for stdin)")
    mode = Mode.DIFF if diff else Mode.CHECK if check else Mode.FIX
    config = Config(unsafe_fixes=unsafe_fixes)
    try:
        verifier = _verifier(verify)
    except ImportError as error:
        click.echo(f"tapefix: error: {error}", err=True)
        return EXIT_ERROR
    if list(paths) == ["-"]:
        return _run_stdin(mode, config, verifier)
    if "-" in paths:
        raise click.UsageError("- (stdin) cannot be mixed with other paths")
    results = api.run(paths, mode, config, verifier)
    return _report(results, mode, config)


def _report(results: List[FileResult], mode: Mode, config: Config) -> int:
    status = EXIT_CLEAN
    for result in results:
        if result.error:
            where = f"{result.path}:{result.error_at}" if result.error_at else result.path
            click.echo(f"{where}: error: {result.error}", err=True)
            status = EXIT_ERROR
            continue
        if mode is Mode.DIFF and result.changed:
            click.echo(api.unified_diff(result.source, result.fixed_source, result.path), nl=False)
        for outcome in result.outcomes:
            click.echo(finding_line(result.path, outcome, mode, config.unsafe_fixes))
            remaining = mode is not Mode.FIX or outcome.status is not Status.FIXED
            if remaining and status == EXIT_CLEAN:
                status = EXIT_FINDINGS
        if mode is Mode.DIFF and result.changed and status == EXIT_CLEAN:
            status = EXIT_FINDINGS
    click.echo(summary(results, mode, config.unsafe_fixes), err=True)
    return status


def _run_stdin(mode: Mode, config: Config, verifier: Optional[engine.Verifier]) -> int:
    data = sys.stdin.buffer.read()
    try:
        decoded = api.decode(data)
        result = api.process_source(decoded.text, mode, config, verifier)
    except (api.FileError, engine.SourceError) as error:
        where = f":{error.line}:{(error.column or 0) + 1}" if isinstance(error, engine.SourceError) and error.line else ""
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
        return EXIT_FINDINGS if remaining else EXIT_CLEAN
    return _report([file_result], mode, config)


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
