"""Who may do what in the app: every access rule in one place, applied to every route.

A UI handler is written as ``def on_x(me: Caller, *inputs)`` and registered through one of
:class:`Access`'s rules (:meth:`~Access.user`, :meth:`~Access.reviewer`, :meth:`~Access.admin`,
:meth:`~Access.reader`); the rule resolves the caller from the login cookie on the server
(``gr.Request.username``) on every call and refuses anyone it does not admit, before the handler runs.
A client cannot name another annotator anywhere, and hiding a tab is cosmetic: the rule is the check.
The bot API resolves its caller with :meth:`Access.annotator` (any logged-in account).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

import gradio as gr

from alignment.errors import UserError
from labeling_ui.i18n import DEFAULT, LANG_COOKIE, choose, t
from labeling_ui.store import Annotator, LabelStore

#: Who may read the Reports tab (``label.reports_for``): admins only, or every account.
REPORT_READERS = ("admins", "everyone")


def request_language(request: gr.Request | None) -> str:
    """The caller's UI language (:func:`labeling_ui.i18n.choose`): the page's switch (a cookie), else the
    browser's ``Accept-Language``; English for a client that sends neither (the bot API)."""
    headers = getattr(request, "headers", None) if request is not None else None
    if headers is None:
        return DEFAULT
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie") or "")
    except CookieError:
        jar = SimpleCookie()
    picked = jar[LANG_COOKIE].value if LANG_COOKIE in jar else None
    return choose(picked, headers.get("accept-language"))


@dataclass(frozen=True)
class Caller:
    """The account a request comes from, and the language to answer it in."""

    annotator: Annotator
    lang: str

    @property
    def name(self) -> str:
        return self.annotator.name


class Access:
    """The app's access rules over ``store``'s accounts; ``reports_for`` (:data:`REPORT_READERS`) says who
    reads the Reports tab."""

    def __init__(self, store: LabelStore, reports_for: str = "admins") -> None:
        if reports_for not in REPORT_READERS:
            raise UserError(f"label.reports_for={reports_for!r} is not one of {list(REPORT_READERS)}")
        self.store = store
        self.reports_for = reports_for

    # ------------------------------------------------------------------ the rules
    def may_review(self, annotator: Annotator) -> bool:
        return annotator.is_reviewer

    def may_administer(self, annotator: Annotator) -> bool:
        return annotator.is_admin

    def may_read_reports(self, annotator: Annotator) -> bool:
        return annotator.is_admin or self.reports_for == "everyone"

    def annotator(self, request: gr.Request | None) -> Annotator:
        """The logged-in, active account the request comes from; an error for anyone else."""
        name = getattr(request, "username", None) if request is not None else None
        annotator = self.store.annotator(name)
        if annotator is None:
            raise gr.Error(t(request_language(request), "not_logged_in"), print_exception=False)
        return annotator

    # ------------------------------------------------------------------ routes
    def user(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` for any logged-in account."""
        return self._route(handler, None, "")

    def reviewer(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` for reviewers and admins."""
        return self._route(handler, self.may_review, "reviewers_only")

    def admin(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` for admins."""
        return self._route(handler, self.may_administer, "admins_only")

    def reader(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """``handler`` for those who may read the run reports (:meth:`may_read_reports`)."""
        return self._route(handler, self.may_read_reports, "reports_admins_only")

    def _route(self, handler: Callable[..., Any], allowed: Callable[[Annotator], bool] | None,
               refusal: str) -> Callable[..., Any]:
        """Gradio's event function for ``handler(me, *inputs)``: it takes the inputs and the request (which
        Gradio passes to a parameter annotated ``gr.Request``), checks the caller, then calls ``handler``."""
        inputs = list(inspect.signature(handler).parameters.values())[1:]

        def route(*args: Any) -> Any:
            *values, request = args
            annotator = self.annotator(request)
            lang = request_language(request)
            if allowed is not None and not allowed(annotator):
                raise gr.Error(t(lang, refusal), print_exception=False)
            return handler(Caller(annotator, lang), *values)

        route.__name__ = route.__qualname__ = handler.__name__
        route.__doc__ = handler.__doc__
        route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(annotation=inspect.Parameter.empty) for p in inputs]
            + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
        route.__annotations__ = {"request": gr.Request}
        return route
