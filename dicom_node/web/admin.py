"""Logins and the administrators' actions: `/login`, `/logout`, `/admin`, and each action a
CSRF-checked POST that is audited, whether it was done or refused."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dicom_node import audit
from dicom_node.errors import DicomNodeError
from dicom_node.index.schema import ExportState
from dicom_node.web.auth import Logins, csrf_ok
from dicom_node.web.pages import WebContext, page, user_of


def add_admin_routes(app: FastAPI, ctx: WebContext, logins: Logins) -> None:
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/"):
        return page(request, "login.html", next=_local(next), error="")

    @app.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        name: str = Form(...),
        password: str = Form(...),
        next: str = Form("/"),
        csrf: str = Form(""),
    ):
        client = request.client.host if request.client else "?"
        if not logins.required:
            raise HTTPException(404, "no admin users are configured")

        def refused(outcome: str, error: str, status_code: int) -> HTMLResponse:
            audit.record("login_failed", outcome, user=name[:64], client=client)
            return page(
                request, "login.html", next=_local(next), error=error, status_code=status_code
            )

        if logins.too_many_failures(client):
            return refused("rate_limited", "Too many failed logins: wait a minute.", 429)
        if not csrf_ok(request.session, csrf) or not logins.verify(client, name, password):
            return refused("failure", "Wrong name or password.", 401)
        request.session.clear()
        request.session["user"] = name
        audit.record("login", user=name, client=client)
        return RedirectResponse(_local(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        _require_csrf(request, csrf)
        user = user_of(request)
        request.session.clear()
        audit.record("logout", user=user, client=request.client.host if request.client else "?")
        return RedirectResponse("/", status_code=303)

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request):
        dead_exports = [e for e in ctx.index.views.exports() if e.state is ExportState.DEAD]
        return page(
            request,
            "admin.html",
            dead_jobs=ctx.index.views.dead_jobs(),
            dead_exports=dead_exports,
            dead_hl7=ctx.index.views.dead_hl7(),
            paused=ctx.index.admin.scoring_paused(),
            logins_required=logins.required,
        )

    actions: dict[str, Callable[..., str]] = {
        "retry-job": lambda target, user, form: ctx.index.admin.retry_job(target, user),
        "retry-export": lambda target, user, form: ctx.index.admin.retry_export(target, user),
        "retry-hl7": lambda target, user, form: ctx.index.admin.retry_hl7(target, user),
        "resend": lambda target, user, form: ctx.index.admin.resend(
            target, _destination(ctx, form.get("destination", "")), user
        ),
        "rescore": lambda target, user, form: ctx.index.admin.rescore(target, user),
        "pause": lambda target, user, form: ctx.index.admin.pause_scoring(True, user),
        "resume": lambda target, user, form: ctx.index.admin.pause_scoring(False, user),
    }

    @app.post("/admin/{action}/{target}")
    async def admin_action(request: Request, action: str, target: int):
        form = await request.form()
        _require_csrf(request, form.get("csrf"))
        user = user_of(request)
        if not logins.required or not user:
            raise HTTPException(403, "admin actions need a login (configure http.admin.users)")
        if action not in actions:
            raise HTTPException(404, f"no action {action!r}")
        client = request.client.host if request.client else "?"
        try:
            done = actions[action](target, user, form)
        except DicomNodeError as exc:
            audit.record(
                "admin_action",
                "failure",
                user=user,
                client=client,
                action=action,
                target=target,
                reason=str(exc),
            )
            raise HTTPException(409, str(exc)) from exc
        audit.record(
            "admin_action", user=user, client=client, action=action, target=target, result=done
        )
        request.session["flash"] = done
        return RedirectResponse(str(form.get("back") or "/admin"), status_code=303)


def _require_csrf(request: Request, sent) -> None:
    if not csrf_ok(request.session, sent if isinstance(sent, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")


def _local(target: str) -> str:
    """Only paths of this site after a login: never another host."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _destination(ctx: WebContext, name: str) -> str:
    if name not in {d.name for d in ctx.settings.destinations}:
        raise DicomNodeError(f"no destination {name!r} is configured")
    return name
