"""What the served API and dashboard need to be safe to run on a workstation and a network.

- Only the configured host names are answered: a web page that points a name of its own at
  127.0.0.1 (DNS rebinding) gets a 400, not the local audit trail.
- Every answer carries a Content-Security-Policy that lets a page run only the scripts and
  styles the service serves itself, and neither may be framed by another site.
- The built-in development pseudonym key is announced while in use, and refused when the API
  is reachable beyond this machine: with it, anyone can recompute pseudonyms from guessed ids.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost")
DEV_KEY_WARNING: Final = (
    "the pseudonym key is the built-in development key: anyone who reads the store can "
    "recompute a subject's pseudonym from a guessed id. Set PRIVTRAIL_PSEUDONYM_KEY to a "
    "private value before recording real data."
)
POLICY: Final = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# FastAPI writes Swagger UI's and ReDoc's pages from fixed templates, with inline parts that
# no request can change; those parts, and only on these pages, are allowed by their hashes.
DOCS_PAGES: Final = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
# ReDoc writes its styles at run time, which no hash can name, and builds its search index in
# a worker its own script makes from a blob: its page alone takes inline styles (never
# scripts) and blob workers. With a hash present a browser ignores 'unsafe-inline', so none is.
RUN_TIME_PARTS: Final = {"/redoc": {"style": ["'unsafe-inline'"], "worker": ["blob:"]}}
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.DOTALL)


class InsecureSettings(ValueError):
    """Settings the service refuses to start with; the message says which and what to do."""


def uses_dev_pseudonym_key(settings: Settings) -> bool:
    default = Settings.model_fields["pseudonym_key"].default
    return bool(settings.pseudonym_key == default)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pseudonym_key_warning(settings: Settings) -> str | None:
    """The warning to print at start while the development key is in use; InsecureSettings
    when the API would bind beyond loopback with it."""
    if not uses_dev_pseudonym_key(settings):
        return None
    if not is_loopback(settings.api_host):
        raise InsecureSettings(
            f"the API binds to {settings.api_host}, beyond this machine, with the built-in "
            "development pseudonym key: set PRIVTRAIL_PSEUDONYM_KEY to a private value"
        )
    return DEV_KEY_WARNING


def allowed_hosts(settings: Settings) -> list[str]:
    """The host names the API answers to: its own, the loopback names when bound to loopback,
    and those of `PRIVTRAIL_API_ALLOWED_HOSTS`."""
    hosts = [settings.api_host]
    if is_loopback(settings.api_host):
        hosts += LOOPBACK_NAMES
    hosts += (name.strip() for name in settings.api_allowed_hosts.split(","))
    return list(dict.fromkeys(host for host in hosts if host))


def secured(app: ASGIApp, settings: Settings) -> ASGIApp:
    """`app` behind the host check, with the security headers on every answer."""
    hosts = allowed_hosts(settings)
    if not is_loopback(settings.api_host) and hosts == [settings.api_host]:
        log.warning(
            "the API binds to %s and answers only requests addressed to that name; list the "
            "names clients use in PRIVTRAIL_API_ALLOWED_HOSTS",
            settings.api_host,
        )
    return SecurityHeaders(TrustedHostMiddleware(app, allowed_hosts=hosts))


class SecurityHeaders:
    """Adds the CSP and the anti-sniffing and anti-framing headers to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] in DOCS_PAGES:
            allowed = RUN_TIME_PARTS.get(scope["path"], {})
            await self.app(scope, receive, _hashing_inline_parts(send, allowed))
        else:
            await self.app(scope, receive, _with_headers(send, content_security_policy({})))


def content_security_policy(inline: Mapping[str, Iterable[str]]) -> str:
    """POLICY, with the sources `inline[element]` (hashes, keywords) added to `{element}-src`."""
    rules = []
    for rule in POLICY:
        directive = rule.split()[0]
        sources = inline.get(directive.removesuffix("-src"), ())
        rules.append(" ".join([rule, *sources]))
    return "; ".join(rules)


def _headers(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        # frame-ancestors' predecessor, for browsers that predate it.
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


def _with_headers(send: Send, policy: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_headers(policy)]
        await send(message)

    return sending


def _hashing_inline_parts(send: Send, allowed: Mapping[str, list[str]]) -> Send:
    # The page is small and whole before its policy is known: hold it back until the last
    # body part, then send the start with the hashes of its inline scripts and styles.
    start: list[Message] = []
    body: list[bytes] = []

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.append(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        page = b"".join(body)
        policy = content_security_policy({**inline_hashes(page), **allowed})
        await _with_headers(send, policy)(start[0])
        await send({"type": "http.response.body", "body": page})

    return sending


def inline_hashes(page: bytes) -> dict[str, list[str]]:
    """The CSP hash sources of `page`'s inline elements, by element: script and style."""
    found: dict[str, list[str]] = {}
    for match in _INLINE.finditer(page):
        digest = base64.b64encode(hashlib.sha256(match.group(2)).digest()).decode()
        found.setdefault(match.group(1).decode(), []).append(f"'sha256-{digest}'")
    return found
