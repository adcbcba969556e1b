"""Who may talk to the server. It listens on a port that any page the user's browser opens can reach
(127.0.0.1 included), so:

- the websocket must come from this server's own page (its Origin is the Host it asked), and must
  know the per-launch secret printed in the URL (as Jupyter's token): a page elsewhere has neither;
- one browser session at a time: every page gets a session cookie; while one session is connected a
  page or websocket of another is refused with a page that says so (a reload or a second tab of the
  same browser takes the session over, closing the old connection, so no two views edit one state);
- a failing request never sends its traceback to the browser: it goes to the server's log;
- an upload is limited while it arrives: a message over the limit is refused at its first chunk,
  before anything is allocated or written.
"""
from __future__ import annotations

import asyncio
import html
import logging
import secrets
import time
from urllib.parse import urlsplit

log = logging.getLogger("adiposeseg.web")
COOKIE = "adiposeseg_session"
WS_PATH = "/ws"
MESSAGE_OVERHEAD = 1 << 20


class SessionGuard:
    def __init__(self, upload_limit_bytes: int):
        self.secret = secrets.token_urlsafe(24)
        self.max_message = upload_limit_bytes + MESSAGE_OVERHEAD
        self.owner: str | None = None        # the connected session's cookie
        self.task: asyncio.Task | None = None
        self.since = ""

    # -- aiohttp
    def middleware(self):
        from aiohttp import web

        guard = self

        @web.middleware
        async def check(request, handler):
            if request.path == WS_PATH:
                return await guard._websocket(request, handler)
            if request.path in ("/", "/index.html"):
                return await guard._page(request, handler)
            return await handler(request)

        return check

    async def _page(self, request, handler):
        from aiohttp import web

        session = request.cookies.get(COOKIE)
        if self.owner is not None and session != self.owner:
            return web.Response(status=409, content_type="text/html", text=_busy_page(self.since))
        response = await handler(request)
        if not session:
            response.set_cookie(COOKIE, secrets.token_urlsafe(16), httponly=True, samesite="Strict")
        return response

    async def _websocket(self, request, handler):
        from aiohttp import web

        origin, host = request.headers.get("Origin", ""), request.headers.get("Host", "")
        if not origin or urlsplit(origin).netloc != host:
            log.warning("websocket refused: Origin %r is not this server (%r)", origin, host)
            return web.Response(status=403, text="forbidden: this server only talks to its own page\n")
        session = request.cookies.get(COOKIE)
        if not session:
            return web.Response(status=403, text="forbidden: open the page first\n")
        if self.owner is not None and session != self.owner:
            return web.Response(status=409, text="busy: another browser session is connected\n")
        if self.task is not None and not self.task.done():
            self.task.cancel()           # the same browser reloaded or opened a second tab: it takes over
        self.owner, self.task, self.since = session, asyncio.current_task(), time.strftime("%H:%M:%S")
        try:
            return await handler(request)
        finally:
            if self.task is asyncio.current_task():
                self.owner, self.task = None, None

    # -- wslink
    def bind(self, wslink_server) -> None:
        """Called with trame's wslink web server before it starts: add the checks and patch its handlers."""
        wslink_server.app.middlewares.append(self.middleware())
        for handler in getattr(wslink_server, "_ws_handlers", []):
            self._patch(handler)

    def _patch(self, handler) -> None:
        guard = self
        send_error = handler.sendWrappedError
        hello = handler.handleSystemMessage

        async def send_wrapped_error(rpcid, code, message, data=None, client_id=None):
            if isinstance(data, dict) and ("trace" in data or "exception" in data):
                log.error("request %s failed: %s\n%s", data.get("method"), data.get("exception"), data.get("trace", ""))
                data = {"method": data.get("method"), "error": "the server could not carry out this request; "
                                                              "the details are in the server's log"}
            return await send_error(rpcid, code, message, data, client_id=client_id)

        async def handle_system_message(rpcid, method, args, client_id):
            handled = await hello(rpcid, method, args, client_id)
            unchunker = handler.unchunkers.get(client_id)
            if unchunker is not None and handler.isClientAuthenticated(client_id):
                unchunker.set_max_message_size(guard.max_message)   # wslink would allow 4 GB once authenticated
            return handled

        handler.sendWrappedError = send_wrapped_error
        handler.handleSystemMessage = handle_system_message


def _busy_page(since: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>AdiposeSeg: in use</title></head><body "
            "style='font-family:sans-serif;margin:3em'><h2 id='busy'>This AdiposeSeg server is in use by another "
            f"browser session (connected since {html.escape(since)}).</h2><p>One session at a time edits a case, so "
            "that nobody saves a case another person opened. Close the other session, then reload this page.</p>"
            "</body></html>")
