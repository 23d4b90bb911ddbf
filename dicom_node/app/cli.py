"""`dicom-node`: one console command with a subcommand per job.

Every command that reads a configuration takes `--config FILE`; without it, the file named by
$DICOM_NODE_CONFIG; without that, the defaults (data in $XDG_DATA_HOME/dicom-node, the shipped
model). It works from any directory.

Only the commands that score or train import torch (`serve`, `worker`, `demo`, and the model
commands); `status`, `worklist` read the index and start in well under a second.

Exit status: 0 done; 1 the command ran and found something wrong (an unhealthy loop, a file
it could not score, a configuration problem); 2 it could not run (bad configuration, index
unreachable, a port taken).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from dicom_node import __version__
from dicom_node.app.logs import configure_logging, log_to_file
from dicom_node.app.site_commands import CONFIG_HELP, add_site_commands, settings_of
from dicom_node.config import SHIPPED_MODEL
from dicom_node.errors import DicomNodeError


def cmd_serve(args) -> int:
    from dicom_node.app.preflight import require_world
    from dicom_node.app.roles import RunningNode, run_until_stopped

    settings = settings_of(args)
    require_world(settings, scores=settings.worker.enabled)
    log_to_file(settings)
    run_until_stopped(lambda: RunningNode(settings))
    return 0


def cmd_worker(args) -> int:
    from dicom_node.app.preflight import require_world
    from dicom_node.app.roles import RunningWorker, run_until_stopped

    settings = settings_of(args)
    require_world(settings, scores=True)
    log_to_file(settings)
    run_until_stopped(lambda: RunningWorker(settings, args.http_port))
    return 0


def cmd_demo(args) -> int:
    from dicom_node.app.demo import run_demo

    return run_demo(settings_of(args), keep=args.keep)


def cmd_worklist(args) -> int:
    from dicom_node.index import Index

    index = Index(settings_of(args).storage.effective_database_url, upgrade=False)
    try:
        rows = index.views.worklist()
    finally:
        index.close()
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
        return 0
    from dicom_node.app.demo import print_worklist

    print_worklist(rows)
    return 0


def cmd_status(args) -> int:
    """Exit status 1 when a loop is unhealthy or the disk is low, so that monitoring can call
    it; 2 when the index cannot be read."""
    from dicom_node.index import Index
    from dicom_node.index.database import utcnow
    from dicom_node.ingest.store import free_bytes

    settings = settings_of(args)
    index = Index(settings.storage.effective_database_url, upgrade=False)
    try:
        status = index.views.status()
    finally:
        index.close()
    now = utcnow()
    report = status.to_json(now)
    free, needed = free_bytes(settings.storage.data_dir), settings.storage.min_free_bytes
    report["disk"] = {"free_bytes": free, "min_free_bytes": needed, "low": free < needed}
    unhealthy = [h for h in status.loops if h.problem(now)] or report["disk"]["low"]
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
        return 1 if unhealthy else 0
    print(f"instances: {report['instances']}")
    print(
        f"disk:      {free / 1e9:.1f} GB free in {settings.storage.data_dir} "
        f"(min_free_bytes {needed / 1e9:.1f} GB): "
        + ("LOW: C-STORE answers 0xA700" if free < needed else "ok")
    )
    for name in ("studies", "jobs", "exports", "hl7"):
        counts = ", ".join(f"{k} {v}" for k, v in report[name].items()) or "none"
        print(f"{name + ':':<11}{counts}")
    retention = settings.storage.retention_days
    print(
        f"retention: files of {status.purged_studies} studies removed "
        + (f"({retention:g} days after delivery)" if retention else "(retention_days: null, off)")
    )
    for h in status.loops:
        problem = h.problem(now)
        print(f"loop {h.loop} ({h.owner}): {'UNHEALTHY: ' + problem if problem else 'ok'}")
    for line in report["dead_letters"]:
        print(f"dead letter {line}")
    for uid, reason in report["skipped_reasons"].items():
        print(f"skipped {uid}: {reason}")
    return 1 if unhealthy else 0


def _version() -> str:
    meta = json.loads((SHIPPED_MODEL / "model.json").read_text())
    model = f"{meta['name']} {meta.get('info', {}).get('version', '')}".strip()
    return f"dicom-node {__version__} (shipped model {model}, model format {meta['format']})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-node", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the node in the foreground")
    p.add_argument("--config", help=CONFIG_HELP)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="score queued studies and/or deliver results (no SCP)")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--http-port", type=int, help="serve this worker's /healthz, /readyz, /metrics here"
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="node + stand-in PACS + the samples, end to end")
    p.add_argument("--config", help="model and worker settings to use")
    p.add_argument("--keep", action="store_true", help="keep the demo's folder (PACS, index)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worklist", help="scored studies in reading order")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_worklist)

    p = sub.add_parser("status", help="counts, dead letters and the health of every loop")
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    from dicom_node.training.commands import add_model_commands

    add_site_commands(sub)
    add_model_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not args.verbose:  # libraries' deprecation and user warnings are not the user's business
        warnings.simplefilter("ignore")
    try:
        return args.func(args)
    except DicomNodeError as exc:
        print(f"dicom-node: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dicom-node worklist | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"dicom-node: {type(exc).__name__}: {exc} (-v shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
