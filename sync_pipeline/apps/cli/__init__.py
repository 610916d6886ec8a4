"""`sync-pipeline`: init, validate, sync, verify and the rest from a terminal.

Exit codes: 0 ok, 1 drift or failed documents/run, 2 usage or configuration
error (bad spec, unknown table, unreachable or misconfigured server), 3 an
unexpected error (one redacted line; the traceback with --debug), 141 when the
reader of the output went away (`sync-pipeline history | head`), as a shell's
own commands end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence

EXIT_UNEXPECTED = 3
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, as `head` leaves a shell pipeline


def main(
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
    usage_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run one command. `parser` and `usage_errors` (more exceptions that exit 2) let the dev tool
    (`python -m sync_pipeline_devtools`) add its own commands to these."""
    from sync_pipeline.apps.cli.output import EXIT_USAGE
    from sync_pipeline.apps.cli.parser import build_parser
    from sync_pipeline.io.logs import log_fields
    from sync_pipeline.settings import SettingsError

    args = (parser or build_parser()).parse_args(argv)
    try:
        logger = _install_logs(args)
    except SettingsError as exc:
        print(f"sync-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    try:
        code = _run(args, usage_errors)
    finally:
        _close_session()
    seconds = round(time.perf_counter() - started, 3)
    log_fields(logger, f"{args.command}: exit {code}", command=args.command, exit_code=code, seconds=seconds)
    return code


def _close_session() -> None:
    """The command's engine, disposed of: one engine per command, closed where the command ends."""
    from sync_pipeline.apps.cli.session import Session

    if Session.current is not None:
        Session.current.close()


def _install_logs(args: argparse.Namespace) -> logging.Logger:
    """SYNC_LOG_FORMAT, validated before the command runs: JSON lines on stderr, or the text as it is."""
    from sync_pipeline.io.logs import install_cli
    from sync_pipeline.settings import log_format

    spec = getattr(args, "spec", None)
    return install_cli(
        log_format(), {"command": args.command, "spec": spec if isinstance(spec, str) else None}
    )


def _run(args: argparse.Namespace, usage_errors: tuple[type[Exception], ...]) -> int:
    from sync_pipeline.apps.cli.output import EXIT_USAGE
    from sync_pipeline.apps.cli.runner import NoPartitions
    from sync_pipeline.apps.cli.session import UsageError
    from sync_pipeline.core.spec.model import SpecError
    from sync_pipeline.core.sql.statements import SourceError
    from sync_pipeline.ops.capture import CaptureError
    from sync_pipeline.ops.rebuild import RebuildError
    from sync_pipeline.settings import SettingsError

    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader is gone: nothing more can be shown, and Python's flush at exit must not
        # print a second error about it
        with contextlib.suppress(OSError, ValueError):  # a stdout without a descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (
        UsageError,
        NoPartitions,
        SpecError,
        SourceError,
        RebuildError,
        SettingsError,
        CaptureError,
        *usage_errors,
    ) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        message = _unreachable_message(exc)
        if message is not None:
            _error(message)
            return EXIT_USAGE
        if args.debug:
            raise
        _error(f"unexpected error: {_one_line(exc)} (run with --debug for the traceback)")
        return EXIT_UNEXPECTED


def _error(message: str) -> None:
    """Why the command stopped: a line on stderr, or with SYNC_LOG_FORMAT=json an ERROR object."""
    from sync_pipeline.io.logs import LOGGER, json_enabled

    if json_enabled():
        logging.getLogger(LOGGER).error(message)
    else:
        print(f"sync-pipeline: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    """The error's type and first line, with passwords and key=value secrets masked."""
    from sync_pipeline.core.report.redact import redact

    lines = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "))


def _unreachable_message(exc: Exception) -> str | None:
    """A one-line error for a server that went away mid-command; None for anything else."""
    from sqlalchemy.exc import OperationalError

    from sync_pipeline.apps.cli.output import first_line
    from sync_pipeline.apps.cli.session import Session, pg_label
    from sync_pipeline.core.report.redact import redact_url
    from sync_pipeline.io.search import SearchConnectionError, connection_problem

    session = Session.current
    problem = connection_problem(exc, redact_url(session.es_url), session.settings.es) if session else None
    if problem:
        return problem
    if isinstance(exc, SearchConnectionError):
        return f"lost the connection to the search server at {redact_url(session.es_url) if session else '?'}"
    if isinstance(exc, OperationalError):
        return f"PostgreSQL at {pg_label(session.pg_url) if session else '?'} failed: {first_line(exc.orig)}"
    return None
