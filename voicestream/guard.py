"""The server's door: every request and WebSocket is checked here, once, before
any handler sees it (an ASGI middleware around the whole app).

Any web page open in the user's browser can send requests to a server on
127.0.0.1, so a tokenless loopback server is safe only with these rules:

1. **Host** must be a name the server answers for: the loopback names, the bound
   address, or one of ``[server] allowed_hosts`` (``*``: any). Anything else is
   421: a page on ``evil.example`` whose DNS name was re-pointed at 127.0.0.1
   (DNS rebinding) reaches the port but is turned away, page and ``/metrics``
   included.
2. **Origin**, when a browser sends one, must be the server's own
   (``http://`` + the Host) or one of ``[server] allowed_origins``: else 403.
   ``Origin: null`` (a sandboxed frame, a file) is never the server's own.
3. **Sec-Fetch-Site** ``cross-site`` or ``same-site`` (another port of
   127.0.0.1 is the same *site*) on the API is 403 unless the Origin is allowed:
   it covers requests a browser sends without an Origin (an ``<audio src>``).
   The page's own files may be linked to from anywhere.
4. **A body** (POST) must say ``Content-Type: application/json``, which no
   cross-site form or ``no-cors`` fetch can send without a CORS preflight: 415.
5. **The token**, when the server has one: ``Authorization: Bearer TOKEN`` (the
   scheme in any case, the token compared in constant time), on all but the page,
   its files and ``/healthz``: 401. The ``/v1/talk`` socket may send it as its
   first frame instead (:mod:`voicestream.talk` checks it).

Rules 1-4 hold with or without a token. A refusal is one JSON line. Every
response carries :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# On every response: nothing is sniffed into another type, and the page runs only
# its own files and is never framed by another page (clickjacking).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/", "/healthz")  # no token needed (and "/web/...": the page's files)


def host_name(host: str) -> str:
    """The name in a Host header, without its port, lower case (IPv6 unbracketed)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(
        self,
        app: App,
        *,
        bound: str,
        token: str | None,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.hosts = {host_name(h) for h in (*LOOPBACK_NAMES, bound, *allowed_hosts)}
        self.any_host = "*" in self.hosts
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        if refused is None:
            await self.app(scope, receive, secured)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refused[1]})
        else:
            await respond(secured, *refused)

    def refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """(status, message, headers) when the request must be refused, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.any_host and host_name(host) not in self.hosts:
            return 421, "this server does not answer for that host name (server.allowed_hosts)", {}
        origin = headers.get("origin")
        path = scope["path"]
        page = scope["type"] == "http" and (path == "/" or path.startswith("/web/"))
        if origin is not None and not self.allowed(origin, host):
            return 403, "requests from other web pages are refused (server.allowed_origins)", {}
        site = headers.get("sec-fetch-site", "")
        if site in ("cross-site", "same-site") and not page and origin not in self.origins:
            return 403, "requests from other web pages are refused (server.allowed_origins)", {}
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, "send the body as JSON, with 'Content-Type: application/json'", {}
        # /v1/talk takes the token as its first frame too (a browser cannot send a
        # header on a WebSocket): voicestream.talk checks it, header or frame.
        talk = scope["type"] == "websocket" and path == "/v1/talk"
        needs_token = self.token is not None and not page and not talk and path not in OPEN_PATHS
        if needs_token and not self.authorized(headers.get("authorization", "")):
            return (
                401,
                "this server needs a token: send 'Authorization: Bearer TOKEN'",
                {"WWW-Authenticate": "Bearer"},
            )
        return None

    def allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme == "http" and parts.netloc == host.strip().lower() != ""

    def authorized(self, header: str) -> bool:
        assert self.token is not None
        return bearer(header, self.token)


def bearer(header: str, token: str) -> bool:
    """Whether an Authorization header is ``Bearer TOKEN`` (the scheme in any case)."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and same_token(given.strip(), token)


def same_token(given: str, token: str) -> bool:
    """``given == token``, compared in constant time."""
    return hmac.compare_digest(given.encode(), token.encode())


async def respond(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    """A one-line JSON error, sent straight to the ASGI server."""
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
