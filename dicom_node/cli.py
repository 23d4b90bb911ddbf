"""`dicom-node`: one console command with a subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from dicom_node.config import Settings, load_settings
from dicom_node.errors import DicomNodeError

DEFAULT_CONFIG = "config/node.yaml"


def _settings(args) -> Settings:
    return load_settings(args.config)


def cmd_serve(args) -> int:
    from dicom_node.node import serve

    serve(_settings(args))
    return 0


def cmd_worker(args) -> int:
    from dicom_node.node import run_worker

    run_worker(_settings(args))
    return 0


def cmd_worklist(args) -> int:
    from dicom_node.node import open_index

    index = open_index(_settings(args))
    try:
        rows = index.worklist()
    finally:
        index.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from dicom_node.demo import print_worklist

    print_worklist(rows)
    return 0


def cmd_demo(args) -> int:
    from dicom_node.demo import run_demo

    return run_demo(_settings(args))


def cmd_status(args) -> int:
    from dicom_node.node import open_index

    index = open_index(_settings(args))
    try:
        counts = index.counts()
        skipped = {s.study_uid: s.reason for s in index.studies() if s.state == "skipped"}
    finally:
        index.close()
    counts["studies"].setdefault("skipped", 0)
    if args.json:
        print(json.dumps({**counts, "skipped_reasons": skipped}, indent=1, sort_keys=True))
        return 0
    print(f"instances: {counts['instances']}")
    print("studies:   " + ", ".join(f"{k} {v}" for k, v in sorted(counts["studies"].items())))
    print(
        "jobs:      " + (", ".join(f"{k} {v}" for k, v in sorted(counts["jobs"].items())) or "none")
    )
    print(
        "exports:   "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts["exports"].items())) or "none")
    )
    for line in counts["dead_letters"]:
        print(f"dead letter {line}")
    for uid, reason in skipped.items():
        print(f"skipped {uid}: {reason}")
    return 0


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

    p = sub.add_parser("worker", help="score queued studies and deliver results (no SCP)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="node + stand-in PACS + the samples, end to end")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="model and worker settings to use")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worklist", help="scored studies, most suspicious first")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_worklist)

    p = sub.add_parser("status", help="counts of instances, studies and jobs")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", help="validate a configuration file without starting")
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)

    from dicom_node.model_commands import add_model_commands

    add_model_commands(sub)
    return parser


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    if not verbose:  # one line per sweep, association or copied module is noise
        for noisy in ("apscheduler", "pynetdicom", "highdicom"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


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
