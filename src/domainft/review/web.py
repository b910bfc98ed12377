"""The review page: Starlette on uvicorn, pages rendered on the server with Jinja2 (templates/review/).

No accounts, so the page guards itself instead: it listens on 127.0.0.1 only; it answers only requests whose
Host is 127.0.0.1:PORT or localhost:PORT (a foreign Host is a DNS-rebinding page talking to it); a write
(POST) needs the token this server start put in the page, a form-encoded body, and no foreign Origin or
cross-site Sec-Fetch-Site; every value is autoescaped and the Content-Security-Policy lets only the page's
own script file run.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import UserError
from ..plan import Plan
from ..resources import folder
from .pairs import (
    FILTER_KEYS,
    JUDGE_STATUSES,
    SPLIT_CHOICES,
    STATUSES,
    RunData,
    matches,
    parse_filters,
)

LIST_LIMIT = 500  # rows in the pair list; the filters narrow a larger run
STATIC = {"review.css": "text/css", "review.js": "text/javascript"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make Chromium send `Origin: null` on our own posts
    "cache-control": "no-store",
}


class Guard:
    """ASGI middleware: refuse a foreign Host (400) and a cross-site write (403); add the security headers."""

    def __init__(self, app: ASGIApp, port: int):
        self.app = app
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = None
        if headers.get("host", "").lower() not in self.hosts:
            refusal = PlainTextResponse("refused: this page answers only at 127.0.0.1 or localhost on its port",
                                        status_code=400)
        elif scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin.lower() not in self.origins:
                refusal = PlainTextResponse("refused: a write from another origin", status_code=403)
            elif headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                refusal = PlainTextResponse("refused: a cross-site write", status_code=403)
        if refusal is not None:
            return await self._with_headers(refusal)(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                                        if k.encode() not in names)]
            await send(message)

        await self.app(scope, receive, send_secured)

    @staticmethod
    def _with_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response


def _filters_query(filters: dict[str, str], **extra: str) -> str:
    return urlencode({**{k: v for k, v in filters.items() if k in FILTER_KEYS}, **extra})


def make_app(plan: Plan, port: int, *, token: str | None = None) -> Starlette:
    data = RunData(plan)
    data.check()
    token = token or secrets.token_urlsafe(32)  # per server start: a page from an earlier start cannot write
    templates_dir = folder("templates") / "review"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("page.html")

    def render(query: dict[str, str], message: str = "", status_code: int = 200) -> HTMLResponse:
        filters, notes = parse_filters(query)
        views = data.views()
        shown = [v for v in views if matches(v, filters)]
        wanted = query.get("pair")
        current = next((v for v in shown if v.id == wanted), None) or next(
            (v for v in shown if v.status == "pending"), shown[0] if shown else None)
        index = shown.index(current) if current else -1
        counts = {s: sum(v.status == s for v in views) for s in STATUSES}
        html = page.render(
            plan=plan, token=token, filters=filters, notes=[*notes, *([message] if message else [])],
            views=shown[:LIST_LIMIT], shown=len(shown), total=len(views), counts=counts,
            left_here=sum(v.status == "pending" for v in shown), current=current,
            support=current.support() if current else None,
            prev_id=shown[index - 1].id if index > 0 else None,
            next_id=shown[index + 1].id if 0 <= index < len(shown) - 1 else None,
            docs=sorted({v.file for v in views}), statuses=STATUSES, judge_statuses=JUDGE_STATUSES,
            split_choices=SPLIT_CHOICES, query=_filters_query(filters), journal=_shown_path(data.journal.path),
        )
        return HTMLResponse(html, status_code=status_code)

    async def index(request: Request) -> Response:
        return await run_in_threadpool(render, dict(request.query_params))

    async def decide(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return PlainTextResponse("refused: a write must be a form post", status_code=415)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                             keep_blank_values=True).items()}
        if not secrets.compare_digest(form.get("token", ""), token):
            return PlainTextResponse("refused: stale or missing page token; reload the page", status_code=403)
        return await run_in_threadpool(_decide, form)

    def _decide(form: dict[str, str]) -> Response:
        filters, _ = parse_filters(parse_qs_flat(form.get("filters", "")))
        pid, action = form.get("pair_id", ""), form.get("action", "")
        pairs = data.raw_pairs()
        if pid not in pairs:
            return render({**filters, "pair": pid}, f"no pair '{pid}' in this run", status_code=404)
        try:
            data.journal.decide(pairs[pid], action, instruction=form.get("instruction"), output=form.get("output"))
        except UserError as exc:
            return render({**filters, "pair": pid}, exc.one_line(), status_code=400)
        # Next: the first pair after this one that the filters still show, waiting for a decision if any is.
        after = [v for v in data.views() if matches(v, filters)]
        order = list(pairs).index(pid)
        later = [v for v in after if v.order > order]
        pick = next((v for v in later if v.status == "pending"), None) or (later[0] if later else None) or next(
            (v for v in after if v.status == "pending"), None)
        target = _filters_query(filters, **({"pair": pick.id} if pick else {}))
        return RedirectResponse(f"/?{target}", status_code=303)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(templates_dir / name, media_type=STATIC[name])

    app = Starlette(routes=[
        Route("/", index, methods=["GET"]),
        Route("/decide", decide, methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
    ])
    app.add_middleware(Guard, port=port)
    return app


def _shown_path(path: Path) -> Path:
    """Relative to where the command was started, as the user typed the recipe, when it is below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def parse_qs_flat(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query).items()}


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: one the system picks). Only loopback: there are no accounts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})", where="--port",
                        hint="pick another port, or leave --port out for a free one") from None
    sock.listen(64)
    return sock


def serve(plan: Plan, *, port: int = 0, announce: Callable[[str], None] = print) -> None:
    """Serve the review page until Ctrl+C."""
    import uvicorn

    sock = bind(port)
    port = sock.getsockname()[1]
    app = make_app(plan, port)
    announce(f"http://127.0.0.1:{port}/")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
