"""The commands that set up and look after a site: `init`, `config check`, `db upgrade`,
`hash-password`, `hl7 preview`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dicom_node.config import SHIPPED_CONFIG, SHIPPED_MODEL
from dicom_node.config_file import CONFIG_VARIABLE, config_path, load_settings
from dicom_node.errors import ConfigError

CONFIG_HELP = f"configuration file (default: ${CONFIG_VARIABLE}, else every key at its default)"


def settings_of(args):
    """The settings a command's --config (or $DICOM_NODE_CONFIG, or the defaults) gives."""
    return load_settings(config_path(args.config))


def cmd_init(args) -> int:
    """A site's configuration: the documented defaults with this site's absolute data folder."""
    site = Path(args.dir).expanduser().resolve()
    target = site / "node.yaml"
    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else site / "data"
    if target.exists():
        raise ConfigError(f"{target}: already exists; not overwritten")
    text = SHIPPED_CONFIG.read_text()
    default = "  data_dir: null              #"
    if default not in text:  # the shipped file and this command must change together
        raise ConfigError(f"{SHIPPED_CONFIG}: no data_dir line to fill in")
    text = text.replace(default, f"  data_dir: {json.dumps(str(data_dir))}  #", 1)
    data_dir.mkdir(parents=True, exist_ok=True)
    site.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target} (data in {data_dir}, model {SHIPPED_MODEL.name} as shipped)")
    print(f"next: edit destinations in it, then `dicom-node config check {target}`")
    return 0


def cmd_hash_password(args) -> int:
    """A bcrypt hash for http.admin.users, from a password typed twice (or one line on stdin)."""
    import getpass

    from dicom_node.web.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise ConfigError("a password needs at least 8 characters")
    print(hash_password(password))
    return 0


def cmd_hl7_preview(args) -> int:
    """The HL7 message each HL7 destination would get for a study's newest result."""
    from dicom_node.config.hl7 import Hl7Destination
    from dicom_node.hl7.messages import render
    from dicom_node.index import Index

    settings = settings_of(args)
    index = Index(settings.storage.effective_database_url, upgrade=False)
    try:
        facts = index.hl7.facts_of(args.study)
    finally:
        index.close()
    if facts is None:
        print(f"no scored study {args.study!r} (accession, Study Instance UID or id)")
        return 1
    destinations = settings.hl7.destinations or (Hl7Destination("(none configured)", "-", 1),)
    for destination in destinations:
        print(f"# to {destination.name} ({destination.message})")
        print(render(facts, settings.hl7, destination, "PREVIEW").replace("\r", "\n"))
    return 0


def cmd_db_upgrade(args) -> int:
    from dicom_node.app.roles import open_index
    from dicom_node.index.database import HEAD_REVISION

    settings = settings_of(args)
    open_index(settings, upgrade=True).close()
    print(f"index {settings.storage.effective_database_url}: at schema revision {HEAD_REVISION}")
    return 0


def cmd_config_check(args) -> int:
    from dicom_node.app.preflight import check_world

    settings = load_settings(config_path(args.file))
    if not args.verbose:  # a refused probe is said in its problem line, once
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    finding = check_world(settings, probe=args.probe)
    for problem in finding.problems:
        print(problem.line(settings), file=sys.stderr)
    if finding.problems:
        return 1
    for note in finding.notes:
        print(f"  {note}")
    print(
        f"{settings.source or '(defaults)'}: valid (AE {settings.node.ae_title} on port "
        f"{settings.node.port}, model {settings.model.path})"
    )
    return 0


def add_site_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", help="check a configuration and what it needs of the world")
    c.add_argument("file", nargs="?", help=CONFIG_HELP)
    c.add_argument("--probe", action="store_true", help="also C-ECHO every destination")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("init", help="write a site's node.yaml (absolute paths) and data folder")
    p.add_argument("dir", help="where node.yaml goes (e.g. /etc/dicom-node)")
    p.add_argument("--data-dir", help="the data folder (default: DIR/data)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("hl7", help="HL7 tools")
    hsub = p.add_subparsers(dest="hl7_command", required=True)
    c = hsub.add_parser("preview", help="the HL7 message a study's result makes")
    c.add_argument("study", help="accession number, Study Instance UID or index id")
    c.add_argument("--config", help=CONFIG_HELP)
    c.set_defaults(func=cmd_hl7_preview)

    p = sub.add_parser("hash-password", help="bcrypt hash of an admin password for node.yaml")
    p.set_defaults(func=cmd_hash_password)

    p = sub.add_parser("db", help="index tools")
    dsub = p.add_subparsers(dest="db_command", required=True)
    c = dsub.add_parser("upgrade", help="create the index or bring it to this release's schema")
    c.add_argument("--config", help=CONFIG_HELP)
    c.set_defaults(func=cmd_db_upgrade)
