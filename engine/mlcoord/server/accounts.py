"""Users, roles, the audit log and the token signing key, kept in the bot's store (schema v6).

Passwords are stored as argon2id hashes (argon2-cffi); the signing key is made once (32 random
bytes) and kept in ``api_secrets`` (a SQLite store is created 0600). Neither is ever logged.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from typing import Any, Callable, Optional

import attrs
from sqlalchemy import delete, func, select, update

from mlcoord.errors import ConfigError
from mlcoord.live.database import write_transaction
from mlcoord.live.schema import api_audit, api_secrets, api_users

#: roles, each with everything the one before may do: viewer reads, trader also controls,
#: admin also reloads the config and reads the audit log
ROLES = ("viewer", "trader", "admin")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: how long a verified password is taken without hashing it again (see :meth:`Accounts.verify`)
VERIFIED_SECONDS = 60.0
#: a password shorter than this is refused
MIN_PASSWORD = 10


def role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


@attrs.frozen
class User:
    username: str
    role: str


def _hasher():
    try:
        from argon2 import PasswordHasher
    except ImportError:     # pragma: no cover - the api extra is missing
        raise ConfigError("the API needs its extra: pip install 'mlcoord[api]'") from None
    return PasswordHasher()


class Accounts:
    """The API's tables of one store (``store.engine``): users, audit rows, the signing key."""

    def __init__(self, store, clock: Callable[[], int] = time.time_ns):
        self.engine = store.engine
        self.clock = clock
        self._hasher: Any = None       # made on first use: the audit log needs no password hashing
        self._cache_key = secrets.token_bytes(32)      # this process's only: digests mean nothing elsewhere
        self._verified: dict[bytes, float] = {}

    @property
    def _hash(self):
        if self._hasher is None:
            self._hasher = _hasher()
        return self._hasher

    # -- users --------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str) -> None:
        """Create a user or change an existing one's password and role."""
        if not _USERNAME.match(username or ""):
            raise ConfigError(f"username must be 1-64 letters, digits or _.@-, got {username!r}")
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"password must have at least {MIN_PASSWORD} characters, got {len(password)}")
        now, hashed = self.clock(), self._hash.hash(password)
        with write_transaction(self.engine) as conn:
            found = conn.execute(select(api_users.c.username).where(api_users.c.username == username)).scalar()
            if found is None:
                conn.execute(api_users.insert().values(username=username, role=role, password_hash=hashed,
                                                       created_at=now, updated_at=now))
            else:
                conn.execute(update(api_users).where(api_users.c.username == username)
                             .values(role=role, password_hash=hashed, updated_at=now))

    def remove_user(self, username: str) -> bool:
        with write_transaction(self.engine) as conn:
            return bool(conn.execute(delete(api_users).where(api_users.c.username == username)).rowcount)

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            found = conn.execute(select(api_users.c.username, api_users.c.role)
                                 .order_by(api_users.c.username)).all()
        return [User(u, r) for u, r in found]

    def user_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(api_users)).scalar() or 0)

    def user(self, username: str) -> Optional[User]:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_users.c.role).where(api_users.c.username == username)).scalar()
        return None if row is None else User(username, row)

    def verify(self, username: str, password: str) -> Optional[User]:
        """The user when ``password`` is theirs, else None (an unknown user costs a hash too, so
        timing does not tell which usernames exist).

        A password verified in the last :data:`VERIFIED_SECONDS` against the same stored hash is
        not hashed again: HTTP Basic sends it with every request, and an argon2 hash per request
        (~50 ms of both cores) would take the trading thread's CPU. Only a keyed digest is kept,
        and a changed password or a removed user is seen at once (the stored hash is in the key)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.engine.connect() as conn:
            row = conn.execute(select(api_users.c.role, api_users.c.password_hash)
                               .where(api_users.c.username == username)).first()
        if row is None:
            stored = _DUMMY.get(self._hash)
        else:
            stored = row[1]
            digest = hmac.new(self._cache_key, f"{username}\0{password}\0{stored}".encode(), "sha256").digest()
            now = time.monotonic()
            if self._verified.get(digest, 0.0) > now:
                return User(username, row[0])
        try:
            self._hash.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if len(self._verified) > 1000:
            self._verified.clear()
        self._verified[digest] = now + VERIFIED_SECONDS
        return User(username, row[0])

    # -- the signing key ----------------------------------------------------------------------
    def signing_key(self) -> str:
        """The key tokens are signed with: made on first use, then read from the store."""
        with write_transaction(self.engine) as conn:
            key = conn.execute(select(api_secrets.c.value).where(api_secrets.c.name == "jwt")).scalar()
            if key is None:
                key = secrets.token_urlsafe(32)
                conn.execute(api_secrets.insert().values(name="jwt", value=key, created_at=self.clock()))
        return str(key)

    # -- the audit log ------------------------------------------------------------------------
    def audit(self, user: User, action: str, params: dict[str, Any], address: str, result: str) -> int:
        """Write one audit row; returns its id (a queued control's result is filled in later)."""
        now = self.clock()
        with write_transaction(self.engine) as conn:
            row = conn.execute(api_audit.insert().values(
                time=now, username=user.username, role=user.role, action=action,
                params=json.dumps(params, sort_keys=True, default=str), address=address, result=result,
                updated_at=now))
            key = row.inserted_primary_key
            assert key is not None, "an insert has a primary key"
            return int(key[0])

    def audit_result(self, audit_id: int, result: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(update(api_audit).where(api_audit.c.id == audit_id)
                         .values(result=result, updated_at=self.clock()))

    def audit_rows(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest rows first."""
        with self.engine.connect() as conn:
            found = conn.execute(select(api_audit).order_by(api_audit.c.id.desc())
                                 .limit(limit).offset(offset)).mappings().all()
        return [dict(r, params=json.loads(r["params"])) for r in found]


def record_results(channel, accounts: Accounts) -> None:
    """Write each applied control's result into its audit row, once per channel whoever queued it
    (the API, Telegram): both may run, the hook is installed by the first."""
    if getattr(channel, "audit_results", False):
        return
    channel.audit_results = True
    channel.results.append(lambda control, result: accounts.audit_result(control.audit_id, result)
                           if control.audit_id else None)


class _Dummy:
    """A hash to verify unknown users against (made once: hashing costs ~50 ms)."""

    value: Optional[str] = None

    def get(self, hasher) -> str:
        if self.value is None:
            self.value = hasher.hash(secrets.token_urlsafe(16))
        return self.value


_DUMMY = _Dummy()
