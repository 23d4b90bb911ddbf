"""The HTTP routes: `/healthz`, `/readyz`, `/metrics` (always open); the worklist (`/`,
`/api/worklist`), study pages and result pictures; `/login`, `/logout` and `/admin` with its
actions (each a CSRF-checked POST, audited)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import REGISTRY as PROCESS_METRICS
from starlette.middleware.sessions import SessionMiddleware

from dicom_node import __version__
from dicom_node.index.records import WorklistRow
from dicom_node.web.admin import add_admin_routes
from dicom_node.web.auth import Logins, session_secret
from dicom_node.web.documents import png_of, report_rows
from dicom_node.web.health import IndexCollector, readiness
from dicom_node.web.pages import WebContext, page, user_of

OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/login")
MAX_ROWS = 500  # worklist rows on one page


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="dicom-node", version=__version__, docs_url=None, redoc_url=None)
    logins = Logins(ctx.settings.http.admin)
    registry = CollectorRegistry()
    registry.register(IndexCollector(ctx.index, ctx.model))

    @app.middleware("http")
    async def require_login(request: Request, call_next):
        path = request.url.path
        if logins.required and not path.startswith(OPEN_PATHS) and not user_of(request):
            if path.startswith("/api/"):
                return JSONResponse({"detail": "login required"}, status_code=401)
            return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
        return await call_next(request)

    # Added last, so it runs first: the session is there when the login check looks.
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(ctx.settings.storage.data_dir),
        session_cookie="dicom_node_session",
        max_age=int(ctx.settings.http.admin.session_minutes * 60),
        same_site="strict",
        https_only=False,  # TLS ends at the reverse proxy (README)
    )

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz():
        model_loaded = None if ctx.model is None else True
        checks = readiness(ctx.settings, ctx.index, ctx.loops, model_loaded)
        ready = all(c.ok for c in checks)
        return JSONResponse(
            {"ready": ready, "checks": [c.to_json() for c in checks]},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    def metrics():
        body = generate_latest(PROCESS_METRICS) + generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/worklist")
    def api_worklist(state: str = "", priority: str = "", date: str = ""):
        rows = _filtered(ctx.index.views.worklist(), state, priority, date)
        return [r.to_json() for r in rows[:MAX_ROWS]]

    @app.get("/", response_class=HTMLResponse)
    def worklist(request: Request, state: str = "", priority: str = "", date: str = ""):
        rows = _filtered(ctx.index.views.worklist(), state, priority, date)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return page(
            request,
            "worklist.html",
            rows=rows[:MAX_ROWS],
            more=max(0, len(rows) - MAX_ROWS),
            filters={"state": state, "priority": priority, "date": date},
            waiting=lambda r: _waited(r.completed_at, now),
        )

    @app.get("/studies/{study_id}", response_class=HTMLResponse)
    def study(request: Request, study_id: int):
        found = ctx.index.views.study_page(study_id)
        if found is None:
            raise HTTPException(404, f"no study #{study_id}")
        report = next((key for kind, key, _ in found.objects if kind == "sr"), None)
        try:
            rows = report_rows(ctx.storage.results.read(report)) if report else []
        except (OSError, ValueError):
            rows = []  # removed by retention, or unreadable: the page says so
        return page(
            request,
            "study.html",
            page=found,
            report_rows=rows,
            report_missing=bool(report) and not rows,
            maps=[i for i, (kind, _, _) in enumerate(found.objects) if kind == "sc"],
            durations=_durations(found.timeline),
            destinations=[d.name for d in ctx.settings.destinations],
        )

    def anomaly_map(study_id: int, n: int | None, thumbnail: bool) -> Response:
        """The study's n-th result object as a PNG (None: its first anomaly map)."""
        found = ctx.index.views.study_page(study_id)
        maps = [i for i, (kind, _, _) in enumerate(found.objects if found else ()) if kind == "sc"]
        n = maps[0] if n is None and maps else n
        if n not in maps:
            raise HTTPException(404, "no such anomaly map")
        try:
            data = ctx.storage.results.read(found.objects[n][1])
        except FileNotFoundError as exc:
            raise HTTPException(410, "removed by retention") from exc
        return Response(
            png_of(data, thumbnail),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.get("/studies/{study_id}/thumbnail.png")
    def thumbnail(study_id: int):
        return anomaly_map(study_id, None, thumbnail=True)

    @app.get("/studies/{study_id}/objects/{n}.png")
    def picture(study_id: int, n: int, thumbnail: bool = False):
        return anomaly_map(study_id, n, thumbnail)

    add_admin_routes(app, ctx, logins)
    return app


def _filtered(rows: list[WorklistRow], state: str, priority: str, date: str):
    return [
        r
        for r in rows
        if (not state or r.state.value == state)
        and (not priority or r.priority.value == priority)
        and (not date or r.study_date == date.replace("-", ""))
    ]


def _waited(since: dt.datetime | None, now: dt.datetime) -> str:
    return _duration((now - since).total_seconds()) if since else ""


def _durations(timeline) -> list[tuple[str, dt.datetime, str]]:
    """Each event with the time since the one before."""
    out, before = [], None
    for what, when in timeline:
        out.append((what, when, _duration((when - before).total_seconds()) if before else ""))
        before = when
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
