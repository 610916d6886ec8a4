"""The data commands: sync, verify, flush, triggers, dead letters, rebuild. Each is the
shared prologue (`Session.open`), one use case, and its output."""

from __future__ import annotations

import argparse
import sys

from sync_pipeline.apps.cli import json_shapes
from sync_pipeline.apps.cli.output import EXIT_DRIFT, EXIT_OK, format_table, print_sync_summary, sync_exit
from sync_pipeline.apps.cli.parser import FIX_WITHOUT_ASKING
from sync_pipeline.apps.cli.progress import progress_for
from sync_pipeline.apps.cli.runner import Servers, partitions_in_range, run_drain, run_sync, run_verify
from sync_pipeline.apps.cli.session import Session, UsageError, confirm, parse_time
from sync_pipeline.core.cdc.logical import slot_name
from sync_pipeline.core.documents.diff import VerifyReport
from sync_pipeline.io import deadletters
from sync_pipeline.io.staging import StagingArea
from sync_pipeline.ops.capture import install_capture, uninstall_capture
from sync_pipeline.ops.rebuild import RebuildAborted, catch_up, describe_catch_up, rebuild, rollback
from sync_pipeline.ops.replay import ReplayError, replay
from sync_pipeline.ops.retention import purge_older_than


def servers(session: Session) -> Servers:
    return Servers(session.pg_url, session.es_url, session.settings.es)


def cmd_sync(args: argparse.Namespace) -> int:
    session = Session.open(args, one=True, servers=False)
    if args.full and (args.start or args.end):
        raise UsageError("--full cannot be combined with --start/--end")
    if not args.full and not (args.start or args.end):
        raise UsageError("give --full, or --start and/or --end")
    start = parse_time(args.start, "--start") if args.start else None
    end = parse_time(args.end, "--end") if args.end else None
    partitions_in_range(session.spec, start, end)  # an empty range stops before the preflight writes
    session.use_servers()
    prepared = session.prepare_targets()  # the preflight, whose binding and comparison the run reuses
    with progress_for(sys.stderr, plain=args.json) as listener:
        summary = run_sync(
            session.spec,
            start,
            end,
            listener=listener,
            servers=servers(session),
            engine=session.engine,
            prepared=prepared,
        )
    code = sync_exit(summary)
    if args.json:
        json_shapes.emit(json_shapes.runs_document("sync", [summary], code == EXIT_OK))
    else:
        print_sync_summary(summary)
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    session = Session.open(args)
    if args.fix and not args.yes:
        # a look first: pointed at the wrong database, a fix would delete the whole index
        preview = run_verify(session.specs, session.selected, servers=servers(session), engine=session.engine)
        drift = sum(r.missing + r.extra + r.mismatched for r in preview)
        if drift > FIX_WITHOUT_ASKING:
            for report in preview:  # with --json, stdout is for the one document
                print("\n".join(report.lines()), file=sys.stderr if args.json else sys.stdout)
            confirm(args, f"verify --fix would re-index or delete {drift:,} documents")
    reports = run_verify(
        session.specs, session.selected, fix=args.fix, servers=servers(session), engine=session.engine
    )
    # with --fix, drift found and repaired: re-check, and report what remains
    remaining = (
        run_verify(session.specs, session.selected, servers=servers(session), engine=session.engine)
        if args.fix
        else None
    )
    code = EXIT_OK if all(r.ok for r in (reports if remaining is None else remaining)) else EXIT_DRIFT
    if args.json:
        json_shapes.emit(json_shapes.verify_document(reports, remaining, code == EXIT_OK))
        return code
    for report in reports:
        print("\n".join(report.lines()))
    for report in remaining or []:
        print("after fix: " + "\n".join(report.lines()))
    return code


def cmd_triggers(args: argparse.Namespace) -> int:
    session = Session.open(args, one=True)
    spec = session.spec
    if args.install:
        report = install_capture(session.engine, spec, session.settings.locks)
        for warning in report.warnings:
            print(f"sync-pipeline: warning: {warning}", file=sys.stderr)
        what = (
            "change-buffer triggers"
            if spec.capture == "triggers"
            else (f"logical capture (slot and publication {slot_name(spec.name)})")
        )
        print(f"{spec.name}: {what} installed on {', '.join(report.tables)}")
    else:
        removed = uninstall_capture(session.engine, spec, session.settings.locks)
        print(f"{spec.name}: change capture removed from {', '.join(removed) or '(none was installed)'}")
    return EXIT_OK


def cmd_flush(args: argparse.Namespace) -> int:
    session = Session.open(args, preflight=False)
    session.preflight(mapping=True)
    summaries = []
    for spec in session.selected:
        # a rename fanning out to many documents shows its progress as a full sync does
        with progress_for(sys.stderr, plain=args.json) as listener:
            summaries.append(
                run_drain(spec, servers=servers(session), engine=session.engine, listener=listener)
            )
    code = EXIT_OK if all(sync_exit(s) == EXIT_OK for s in summaries) else EXIT_DRIFT
    if args.json:
        json_shapes.emit(json_shapes.runs_document("flush", summaries, code == EXIT_OK))
        return code
    for summary in summaries:
        print_sync_summary(summary)
    return code


def cmd_dead_letters(args: argparse.Namespace) -> int:
    if args.json and args.action != "list":
        raise UsageError(f"--json is for dead-letters list, not {args.action}")
    session = Session.open(args, preflight=False)
    if args.action == "list":
        with session.engine.begin() as conn:
            rows = deadletters.list_dead_letters(conn, args.spec, args.limit)
        if args.json:
            json_shapes.emit(json_shapes.dead_letters_document(rows, args.limit))
            return EXIT_OK
        print(
            format_table(
                ["id", "spec", "partition", "doc id", "error", "at"],
                [
                    [
                        r["id"],
                        r["spec"],
                        r["partition"] or "",
                        r["doc_id"],
                        f"{r['error'].get('type')}: {str(r['error'].get('reason'))[:60]}",
                        r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                    ]
                    for r in rows
                ],
            )
            if rows
            else "no dead letters"
        )
        return EXIT_OK
    if args.action == "purge":
        confirm(args, f"purge every dead letter{f' of spec {args.spec}' if args.spec else ''}")
        with session.engine.begin() as conn:
            removed = deadletters.purge(conn, args.spec)
        print(f"purged {removed} dead letters")
        return EXIT_OK
    session.preflight()
    es = session.es()
    still_failing = 0
    for spec in session.selected:
        try:
            replayed, failing = replay(session.engine, es, spec)
        except ReplayError as exc:
            print(f"sync-pipeline: {exc}", file=sys.stderr)
            return EXIT_DRIFT
        still_failing += failing
        print(f"{spec.name}: {replayed} replayed, {failing} still refused")
    return EXIT_OK if still_failing == 0 else EXIT_DRIFT


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Exit 0: swapped at 0 drift (or rolled back and caught up); 1: not swapped, the reason on
    stderr, the old index still serving; 2 (RebuildError, via main): nothing to roll back to."""
    session = Session.open(args, one=True)
    spec, engine, es = session.spec, session.engine, session.es()
    alias = spec.target.index
    confirm(
        args,
        f"point {alias} back at its previous index"
        if args.rollback
        else f"rebuild {alias} into a new index and swap the alias (the old index is deleted after the swap)",
    )
    if args.rollback:
        current, previous = rollback(es, spec)
        print(f"{alias}: alias moved back from {current} to {previous}")
        # the older index missed what happened since it was swapped out: bring it up to date
        caught = catch_up(engine, es, spec, "rollback")
        print("caught up: " + describe_catch_up(caught))
        left = caught.repaired
        return EXIT_DRIFT if left and (left.failed or left.conflicts or left.dead_lettered) else EXIT_OK
    with progress_for(sys.stderr) as listener:

        def on_pass(number: int, report: VerifyReport) -> None:
            listener("finished", {})  # the fill's bar or lines end here, the passes below them
            print(
                f"repair pass {number}: {report.drift} drifting; {describe_catch_up(report)}", file=sys.stderr
            )

        try:
            report = rebuild(
                engine,
                es,
                spec,
                on_batch=lambda b: listener("batch", {"docs": b.docs, "failed": b.failed}),
                on_pass=on_pass,
            )
        except RebuildAborted as exc:
            # the new index did not verify: not a usage error, so not exit 2
            print(f"sync-pipeline: {alias}: not swapped: {exc}", file=sys.stderr)
            return EXIT_DRIFT
    assert report.before_swap is not None and report.after_swap is not None
    print(
        f"{alias}: {', '.join(report.old_indices) or '(nothing)'} → {report.new_index} "
        f"({report.filled.indexed:,} documents, {report.seconds:.1f}s); old index kept for --rollback"
    )
    print(f"verified before swap (pass {len(report.passes)}): {report.before_swap.lines()[0]}")
    print("caught up after swap: " + describe_catch_up(report.after_swap))
    if report.problems:
        print(
            f"sync-pipeline: {alias}: swapped, but the catch-up left {', '.join(report.problems)}",
            file=sys.stderr,
        )
        return EXIT_DRIFT
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    session = Session.open(args, preflight=False)
    days = session.settings.retention_days if args.older_than_days is None else args.older_than_days
    if days < 0:
        raise UsageError("--older-than-days must be 0 or more")
    which = f"spec {args.spec}" if args.spec else "every spec"
    confirm(args, f"delete dead letters and staged files of {which} older than {days:g} days")
    purged = purge_older_than(
        session.engine,
        StagingArea(session.settings.staging_dir),
        days,
        session.spec.name if args.spec else None,
    )
    print(f"purged {purged.dead_letters} dead letters and {purged.staged_files} staged files")
    return EXIT_OK
