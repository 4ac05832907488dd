"""Tokens and login limits: short-lived access tokens, refresh tokens and websocket tokens (JWT,
HS256, signed with the store's key), and a failed-login limit per address.

Each token names its use (``typ``): an access token is refused where a refresh or websocket token
is expected and the other way round, so a websocket token leaked from a URL opens nothing else.
The user's role is read from the store on every request, so removing a user or changing their
role takes effect at once, whatever tokens they hold.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import Callable, Optional

import jwt

from mlcoord.server.accounts import User

ACCESS, REFRESH, WEBSOCKET = "access", "refresh", "ws"
#: a websocket token's life: long enough to open the socket, not to be worth stealing
WS_TOKEN_SECONDS = 60
_ALGORITHM = "HS256"


class TokenError(Exception):
    """A token that is malformed, tampered with, expired or of the wrong use."""


class Tokens:
    def __init__(self, key: str, *, access_seconds: int, refresh_seconds: int,
                 clock: Callable[[], float] = time.time):
        self._key = key
        self.access_seconds, self.refresh_seconds = access_seconds, refresh_seconds
        self.clock = clock

    def issue(self, user: User, typ: str) -> tuple[str, int]:
        """A token of use ``typ`` for ``user`` and its life in seconds."""
        life = {ACCESS: self.access_seconds, REFRESH: self.refresh_seconds, WEBSOCKET: WS_TOKEN_SECONDS}[typ]
        now = int(self.clock())
        claims = {"sub": user.username, "typ": typ, "iat": now, "exp": now + life, "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), life

    def read(self, token: str, typ: str) -> str:
        """The username a valid token of use ``typ`` names; TokenError otherwise."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM],
                                options={"require": ["exp", "sub", "typ"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({type(exc).__name__})") from None
        if claims.get("typ") != typ:
            raise TokenError(f"a {claims.get('typ')!r} token where a {typ!r} token is needed")
        if not isinstance(claims["exp"], int) or claims["exp"] <= self.clock():
            raise TokenError("token expired")       # checked on the injected clock, not PyJWT's
        return str(claims["sub"])


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window`` seconds from one address; then every
    attempt from it is refused (429) until the oldest failure leaves the window."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.attempts, self.window, self.clock = attempts, window, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        found = self._failures.setdefault(address, deque())
        cutoff = self.clock() - self.window
        while found and found[0] <= cutoff:
            found.popleft()
        return found

    def retry_after(self, address: str) -> Optional[float]:
        """Seconds until ``address`` may try again (None: it may now)."""
        found = self._recent(address)
        if len(found) < self.attempts:
            return None
        return max(0.0, found[0] + self.window - self.clock())

    def failed(self, address: str) -> None:
        self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
