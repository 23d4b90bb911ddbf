"""`dicom-node`: one console command with a subcommand per job.

Only the commands that score or train import torch (`serve`, `worker`, `demo`, and the model
commands); `status`, `worklist` and `config check` read the index and start in well under a
second.
"""

from __future__ import annotations

import argparse
import json
import sys

from dicom_node.app.logs import configure_logging
from dicom_node.config import Settings
from dicom_node.config_file import load_settings
from dicom_node.errors import DicomNodeError

DEFAULT_CONFIG = "config/node.yaml"


def _settings(args) -> Settings:
    return load_settings(args.config)


def cmd_serve(args) -> int:
    from dicom_node.app.roles import RunningNode, run_until_stopped

    settings = _settings(args)
    run_until_stopped(lambda: RunningNode(settings))
    return 0


def cmd_worker(args) -> int:
    from dicom_node.app.roles import RunningWorker, run_until_stopped

    settings = _settings(args)
    run_until_stopped(lambda: RunningWorker(settings))
    return 0


def cmd_demo(args) -> int:
    from dicom_node.app.demo import run_demo

    return run_demo(_settings(args))


def cmd_worklist(args) -> int:
    from dicom_node.index import Index

    index = Index(_settings(args).storage.effective_database_url, upgrade=False)
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

    settings = _settings(args)
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
    for name in ("studies", "jobs", "exports"):
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


def cmd_config_check(args) -> int:
    settings = load_settings(args.file)
    print(
        f"{settings.source}: valid (AE {settings.node.ae_title} on port {settings.node.port}, "
        f"data in {settings.storage.data_dir}, model {settings.model.path})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicom-node", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the node in the foreground")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="score queued studies and/or deliver results (no SCP)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="node + stand-in PACS + the samples, end to end")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="model and worker settings to use")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worklist", help="scored studies in reading order")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_worklist)

    p = sub.add_parser("status", help="counts, dead letters and the health of every loop")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", help="validate a configuration file without starting")
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)

    from dicom_node.training.commands import add_model_commands

    add_model_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except DicomNodeError as exc:
        print(f"dicom-node: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
