"""Who may talk to a server: which addresses are this machine's, and the token a server needs.

The one place for these rules: ``serve()``, the Flask app's ``Host`` check and the command
line all ask here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

TOKEN_COOKIE = "insights_token"


def is_loopback(host: str) -> bool:
    """Whether an address to bind (no port; IPv6 may be bracketed) is this machine's loopback.

    ``localhost`` and the 127/8 and ::1 addresses are; ``""`` and ``0.0.0.0`` (every
    interface) are not, nor is any other name: what it resolves to depends on the machine.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_is_loopback(host_header: str) -> bool:
    """Whether a ``Host`` header names this machine's loopback interface (its port ignored).

    Besides what :func:`is_loopback` accepts, the sub-domains of ``localhost``: browsers send
    them to the loopback interface only (RFC 6761), so a page elsewhere cannot use them.
    """
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.lower().endswith(".localhost") or is_loopback(host)


def token_cookie_name(token: str) -> str:
    """The cookie that remembers ``token``; named after it, so servers on other ports keep theirs.

    Cookies ignore ports: with one fixed name, opening a second server would log the browser
    out of the first.
    """
    return f"{TOKEN_COOKIE}_{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def access_token(host: str, token: str | None) -> str | None:
    """The token a server bound to ``host`` must require (None: no token).

    Loopback addresses may run without one; any other address gets the given token or a
    fresh random one (printed with the URL, as Jupyter does); ``token=""`` there is refused.
    """
    if is_loopback(host):
        return token or None
    if token == "":
        raise ValueError(f"refusing to bind {host} without a token; pass token=... or bind 127.0.0.1")
    return token if token is not None else secrets.token_urlsafe(24)


@dataclass(frozen=True)
class AccessRule:
    """Who a server answers: with a token, whoever gives it; without, loopback ``Host`` names only.

    One rule for both the Flask app (every request) and the server's thread router (which
    must not queue a request for a model before it knows the request may be answered).
    """

    token: str | None = None
    extra_hosts: frozenset[str] = field(default_factory=frozenset)

    @property
    def cookie(self) -> str:
        return token_cookie_name(self.token) if self.token else TOKEN_COOKIE

    def problem(
        self, host: str, authorization: str, query_token: str | None, cookies: Mapping[str, str]
    ) -> tuple[str, int] | None:
        """Why a request may not be answered, as (message, status), or None when it may."""
        if not self.token:
            host = host or ""
            if (
                host_is_loopback(host)
                or host.lower() in self.extra_hosts
                or host.lower().split(":")[0] in self.extra_hosts
            ):
                return None
            return (
                f"host {host[:100]!r} is not allowed: this server answers loopback names only "
                "(start it with a token to serve other hosts)",
                403,
            )
        scheme, _, value = (authorization or "").partition(" ")
        given = value.strip() if scheme.lower() in ("token", "bearer") and value.strip() else None
        given = given or query_token or cookies.get(self.cookie)
        if not given:
            return (
                "a token is required: open the URL printed by the server (…?token=…) "
                "or send 'Authorization: token <token>'",
                401,
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return ("invalid token", 403)
        return None
