"""What every page shares: the context it reads and the template it is rendered with (the
user, the CSRF token and a one-time message in every page)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dicom_node import __version__
from dicom_node.config import Settings
from dicom_node.index import Index
from dicom_node.index.records import LoopHealth
from dicom_node.storage import Storage
from dicom_node.web.auth import csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass(frozen=True)
class WebContext:
    """What the pages read: the node's settings, index and storage, and this process's own
    loops and model."""

    settings: Settings
    index: Index
    storage: Storage
    loops: Callable[[], list[LoopHealth]]
    model: dict[str, str] | None  # name, version; None where this process scores nothing


def page(request: Request, template: str, status_code: int = 200, **values) -> HTMLResponse:
    session = request.session
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": user_of(request),
            "csrf": csrf_token(session),
            "flash": session.pop("flash", ""),
            "version": __version__,
            **values,
        },
        status_code=status_code,
    )


def user_of(request: Request) -> str | None:
    return request.session.get("user")
