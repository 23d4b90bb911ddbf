"""One logging set-up for every process of the node."""

from __future__ import annotations

import logging
import logging.handlers


class PeerErrorsOnOneLine(logging.Filter):
    """pynetdicom logs what a peer did wrong (a reset, a malformed PDU) with a traceback, and
    quotes what the peer sent as it came: one line with control characters escaped says it, so
    a peer can neither forge log lines nor fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("pynetdicom"):
            message = record.getMessage()
            if record.exc_info:
                message = f"{message} ({type(record.exc_info[1]).__name__})"
            record.msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            record.args = None
            record.exc_info = record.exc_text = None
        return True


FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=FORMAT,
    )
    if not verbose:  # one line per sweep, association or copied module is noise
        for noisy in ("apscheduler", "pynetdicom", "highdicom", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(PeerErrorsOnOneLine())


def log_to_file(settings) -> None:
    """This process's log file too, when `logging.file` (of the node's Settings) names one;
    rotated at `logging.max_bytes`."""
    path = settings.logging.path(settings.storage.data_dir)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=settings.logging.max_bytes, backupCount=settings.logging.backups
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(PeerErrorsOnOneLine())
    logging.getLogger().addHandler(handler)
