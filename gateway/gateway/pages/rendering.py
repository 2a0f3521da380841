"""Rendering pages: templates, the common context, CSRF and flash cookies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from gateway.pages.menu import MenuCache
from gateway.security import csrf_matches, new_csrf_token
from gateway.sessions import ActiveSession
from gateway.state import GatewayState
from kit.validation import safe_next_path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NOTICE_COOKIE = "clientele_notice"

# Flash messages travel as a key, never as text a visitor could forge.
NOTICES: dict[str, tuple[str, str]] = {
    "signed_up": ("success", "Welcome to Clientele! Check your inbox to verify your email."),
    "logged_in": ("success", "You are logged in."),
    "logged_out": ("info", "You are logged out."),
    "password_changed": ("success", "Your password was changed; other sessions were logged out."),
    "verification_sent": ("info", "A new verification link is on its way."),
    "already_verified": ("info", "Your email address is already verified."),
    "login_required": ("info", "Please log in to continue."),
    "client_archived": ("success", "The client was archived. Their history is kept."),
    "client_restored": ("success", "The client is active again."),
    "group_created": ("success", "The group was created."),
    "group_renamed": ("success", "The group was renamed."),
    "group_deleted": ("success", "The group was deleted. Its members are still your clients."),
    "members_added": ("success", "Added to the group."),
    "members_removed": (
        "success",
        "Removed from the group. Nothing they booked or bought changed.",
    ),
    "members_unchanged": ("error", "The group could not be changed. Please try again."),
    "nothing_selected": ("info", "Select at least one client first."),
    "invitation_resent": ("success", "The invitation was sent again with a new link."),
    "invitation_revoked": ("success", "The invitation was revoked; its link no longer works."),
    "invitation_quota": ("error", "Today's limit of invitation emails is reached."),
    "invitation_unchanged": ("error", "That invitation can no longer be changed."),
    "invitation_accepted": ("success", "Welcome! You are now a client."),
    "campaign_saved": ("success", "The campaign was saved as a draft."),
    "campaign_sent": ("success", "The campaign is on its way."),
    "campaign_deleted": ("success", "The draft was deleted."),
    "campaign_unchanged": ("error", "That campaign can no longer be changed."),
    "offering_saved": ("success", "The offering was saved."),
    "offering_new_version": (
        "success",
        "Saved as a new version. Clients who already bought keep the version they bought.",
    ),
    "offering_published": ("success", "The offering is published."),
    "offering_archived": ("success", "The offering was archived; it is no longer on sale."),
    "offering_unchanged": ("error", "That offering could not be changed. Please check it."),
    "collection_saved": ("success", "The collection was saved."),
    "collection_deleted": ("success", "The collection was deleted. Its offerings are unchanged."),
    "sequence_saved": ("success", "The sequence was saved."),
    "sequence_deleted": ("success", "The sequence was deleted; its remaining steps will not run."),
    "discount_created": ("success", "The discount code was created."),
    "discount_deleted": ("success", "The discount code was deleted."),
    "account_claimed": ("success", "Your password is set and you are logged in. Welcome!"),
    "refund_issued": ("success", "The refund was issued. The buyer gets an email about it."),
    "subscription_canceled": (
        "success",
        "Your subscription is canceled: it stays active until the end of the period you "
        "paid for, and nothing more will be charged.",
    ),
    "subscription_not_cancelable": (
        "error",
        "A payment plan can’t be canceled: its installments are what you agreed to pay.",
    ),
    "agreement_signed": ("success", "You signed the agreement. Your coach can see it."),
    "agreement_already_signed": ("info", "This agreement is already signed."),
    "worksheet_saved": ("success", "Your answers are saved. You can change them any time."),
    "appointment_confirm": ("success", "The appointment is confirmed. The client gets an email."),
    "appointment_decline": ("success", "The request was declined. The client gets an email."),
    "appointment_cancel": ("success", "The appointment was canceled. The client gets an email."),
    "appointment_reschedule": ("success", "The appointment was moved. The client gets an email."),
    "availability_saved": ("success", "Your availability was saved."),
    "blocked_time_added": ("success", "The time is blocked: no slot is offered in it."),
    "blocked_time_removed": ("success", "The blocked time was removed."),
    "my_appointment_canceled": ("success", "Your appointment was canceled."),
    "my_appointment_rescheduled": ("success", "Your appointment was moved to the new time."),
}


@dataclass(frozen=True)
class Notice:
    kind: str
    text: str


class Pages:
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.settings = state.settings
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            auto_reload=self.settings.dev_mode,
        )
        self._static_versions: dict[str, str] = {}
        self.menus = MenuCache(state.upstreams)

    def static_url(self, path: str) -> str:
        version = self._static_versions.get(path)
        if version is None:
            version = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:10]
            self._static_versions[path] = version
        return f"/static/{path}?v={version}"

    # -- per request ----------------------------------------------------------

    async def viewer(self, request: Request) -> ActiveSession | None:
        if not hasattr(request.state, "active_session"):
            token = request.cookies.get(self.settings.session_cookie)
            request.state.active_session = await self.state.sessions.resolve(token)
        active: ActiveSession | None = request.state.active_session
        return active

    def csrf_token(self, request: Request) -> str:
        token = getattr(request.state, "csrf_token", None)
        if token is None:
            token = request.cookies.get(self.settings.csrf_cookie) or new_csrf_token()
            request.state.csrf_token = token
        return str(token)

    def csrf_ok(self, request: Request, submitted: str | None) -> bool:
        return csrf_matches(request.cookies.get(self.settings.csrf_cookie), submitted)

    async def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        active = await self.viewer(request)
        notice_key = request.cookies.get(NOTICE_COOKIE)
        notice = context.pop("notice", None)
        if notice is None and notice_key in NOTICES:
            notice = Notice(*NOTICES[notice_key])
        csrf = self.csrf_token(request)
        values = {
            "viewer": active.principal if active else None,
            "menu": await self.menus.menu_for(active),
            "csrf_token": csrf,
            "notice": notice,
            **self._common(request, status),
            **context,
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code=status)
        response.headers["Cache-Control"] = "no-store"
        if request.cookies.get(self.settings.csrf_cookie) != csrf:
            self.set_cookie(response, self.settings.csrf_cookie, csrf, max_age=None)
        if notice_key:
            response.delete_cookie(NOTICE_COOKIE, path="/")
        return response

    def render_for_anyone(self, request: Request, template: str, **context: Any) -> str:
        """The page as every anonymous visitor sees it: no viewer, menu, notice or CSRF token.

        Being the same bytes for everyone, it may be kept in the public cache.
        """
        values = {
            "viewer": None,
            "menu": None,
            "csrf_token": None,
            "notice": None,
            **self._common(request, 200),
            **context,
        }
        return self.env.get_template(template).render(values)

    def _common(self, request: Request, status: int) -> dict[str, Any]:
        return {
            "dev_mode": self.settings.dev_mode,
            "static_url": self.static_url,
            "request_path": request.url.path,
            "public_base": self.settings.public_base_url.rstrip("/"),
            "status": status,
            "form": {},
            "errors": {},
            "error": None,
            "next": None,
            "embed": False,
        }

    # -- responses ------------------------------------------------------------

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.settings.secure_cookies,
        )

    def redirect(self, to: str, *, notice: str | None = None) -> RedirectResponse:
        response = RedirectResponse(safe_next_path(to) or "/", status_code=303)
        if notice:
            self.set_cookie(response, NOTICE_COOKIE, notice, max_age=60)
        return response
