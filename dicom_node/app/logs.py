"""One logging set-up for every process of the node."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    if not verbose:  # one line per sweep, association or copied module is noise
        for noisy in ("apscheduler", "pynetdicom", "highdicom", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
