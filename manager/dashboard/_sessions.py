"""Dashboard logins and sessions, in memory (pure: the clock is an argument).

A browser cannot show the CLI's client certificate, so a user the Control API admitted (over
mutual TLS) asks for a login token (`Control.DashboardLogin`): it signs in once, within
TOKEN_TTL_S. Redeeming it opens a session (a random id the browser keeps in an HttpOnly cookie)
for the same identity and certificate serial, for at most SESSION_TTL_S.

Only SHA-256 digests of tokens and session ids are kept, so a lookup's timing says nothing
about a valid one, and memory holds nothing a reader could replay. At most MAX_TOKENS tokens
and MAX_SESSIONS sessions are kept: past that the oldest go first.

A session records who it is for; whether that user still exists, still holds that certificate
and with which role is read from the store on every request (the dashboard's server does
that), so removing a user ends its sessions at once, as it ends its API calls.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_TTL_S = 60.0
SESSION_TTL_S = 12 * 3600.0
MAX_TOKENS = 1_000
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Grant:
    """Who a token or session is for: the store's identity id ("user/alice"), the user's name
    and the serial of the certificate that asked for it."""

    identity_id: str
    user: str
    serial: str


@dataclass(frozen=True, slots=True)
class Session:
    key: str  # the digest of its id: what the book and the event feed know it by
    grant: Grant
    expires: float  # by the book's clock


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionBook:
    def __init__(self, *, token_ttl: float = TOKEN_TTL_S, session_ttl: float = SESSION_TTL_S,
                 max_tokens: int = MAX_TOKENS, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token_ttl = token_ttl
        self.session_ttl = session_ttl
        self._max_tokens = max_tokens
        self._max_sessions = max_sessions
        self._clock = clock
        self._tokens: dict[str, tuple[Grant, float]] = {}  # digest -> (grant, expires)
        self._sessions: dict[str, Session] = {}  # digest -> session

    def issue(self, grant: Grant) -> tuple[str, float]:
        """A new login token for `grant` and when it expires (the book's clock)."""
        now = self._clock()
        self._purge(now)
        token = secrets.token_urlsafe(32)
        expires = now + self.token_ttl
        self._tokens[digest(token)] = (grant, expires)
        while len(self._tokens) > self._max_tokens:
            del self._tokens[next(iter(self._tokens))]
        return token, expires

    def redeem(self, token: str) -> tuple[str, Session] | None:
        """Swaps a token for a new session: (session id, session); None for a token that is
        unknown, expired or used already. A token works once."""
        now = self._clock()
        found = self._tokens.pop(digest(token), None)
        if found is None or found[1] < now:
            return None
        session_id = secrets.token_urlsafe(32)
        session = Session(key=digest(session_id), grant=found[0],
                          expires=now + self.session_ttl)
        self._purge(now)
        self._sessions[session.key] = session
        while len(self._sessions) > self._max_sessions:
            del self._sessions[next(iter(self._sessions))]
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id (None: unknown, ended or expired)."""
        key = digest(session_id)
        session = self._sessions.get(key)
        if session is not None and session.expires < self._clock():
            del self._sessions[key]
            return None
        return session

    def alive(self, key: str) -> bool:
        """Whether the session with this digest is still open and in time."""
        session = self._sessions.get(key)
        return session is not None and session.expires >= self._clock()

    def end(self, key: str) -> None:
        """Ends the session with this digest (idempotent)."""
        self._sessions.pop(key, None)

    def end_identity(self, identity_id: str, keep_serials: frozenset[str] = frozenset(),
                     ) -> list[str]:
        """Ends the sessions and tokens of an identity whose certificate serial is not in
        `keep_serials` (all of them when it is empty: the identity is gone); the digests of
        the sessions ended."""
        ended = [k for k, s in self._sessions.items()
                 if s.grant.identity_id == identity_id and s.grant.serial not in keep_serials]
        for key in ended:
            del self._sessions[key]
        for key in [k for k, (g, _) in self._tokens.items()
                    if g.identity_id == identity_id and g.serial not in keep_serials]:
            del self._tokens[key]
        return ended

    def counts(self) -> tuple[int, int]:
        """(tokens, sessions) held now."""
        return len(self._tokens), len(self._sessions)

    def _purge(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._tokens.items() if expires < now]:
            del self._tokens[key]
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]
