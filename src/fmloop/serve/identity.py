"""Who is calling: each API token names an identity with a role, and that identity, never a name
in the request body, is what rate limits, trust weights, vote counting and deletion go by.

Roles, each allowed what the ones before it are:
    user       corrections of the predictions it was served
    labeller   audit labels, inputs that were never predicted, the audit queue and recent data
    admin      everything, and the model's local path on /v1/model

The tokens file (`fmloop tokens add NAME --role ROLE --file PATH` writes it) holds one identity a
line, `NAME ROLE sha256:HEX`: the SHA-256 of each token, never the token itself, so the file can be
read without handing out credentials. The server re-reads it when it changes: adding or revoking a
token needs no restart. FMLOOP_API_TOKEN, one token shared by everyone, is the identity
`shared-token` with the admin role. With neither, the server is open on loopback only and every
caller is `local` (admin), rate-limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from fmloop.core.artifacts import atomic_write_text
from fmloop.core.errors import ConfigError

log = logging.getLogger(__name__)

ROLES = ("user", "labeller", "admin")
SHARED_TOKEN_NAME = "shared-token"
LOCAL_NAME = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
_HEADER = "# fmloop API tokens: NAME ROLE sha256:HEX (the SHA-256 of each token; `fmloop tokens add` writes this)\n"


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    rate_key: str  # what the rate limit counts: the identity, or the client address when open

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"identity name {name!r}: use 1-100 letters, digits and . _ @ + - (starting with a letter or digit)"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: use one of {', '.join(ROLES)}")
    return role


def read_tokens(path: Path) -> dict[str, tuple[str, str]]:
    """{token hash: (name, role)} from a tokens file; a bad line is an error naming the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such tokens file; create it with `fmloop tokens add NAME --file {path}`")
    found: dict[str, tuple[str, str]] = {}
    names: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}, line {number}"
        if len(parts) != 3 or not re.fullmatch(r"sha256:[0-9a-f]{64}", parts[2]):
            raise ConfigError(f"{where}: expected `NAME ROLE sha256:HEX`; rewrite it with `fmloop tokens add`")
        name, role, digest = parts
        try:
            check_name(name), check_role(role)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        if name in names:
            raise ConfigError(f"{where}: {name!r} appears twice; keep one line per identity")
        names.add(name)
        found[digest] = (name, role)
    return found


def add_token(path: Path, name: str, role: str) -> str:
    """A new random token for `name` (replacing its earlier one), written to `path` as its hash;
    returns the token, which is shown once and stored nowhere."""
    check_name(name), check_role(role)
    kept = [(n, r, h) for h, (n, r) in (read_tokens(path).items() if path.exists() else []) if n != name]
    token = secrets.token_urlsafe(32)
    _write(path, [*kept, (name, role, hash_token(token))])
    return token


def revoke_token(path: Path, name: str) -> bool:
    """Remove `name` from the tokens file; False when it was not there."""
    entries = [(n, r, h) for h, (n, r) in read_tokens(path).items()]
    kept = [entry for entry in entries if entry[0] != name]
    if len(kept) == len(entries):
        return False
    _write(path, kept)
    return True


def list_tokens(path: Path) -> list[tuple[str, str]]:
    return sorted(read_tokens(path).values())


def _write(path: Path, entries: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _HEADER + "".join(f"{n} {r} {h}\n" for n, r, h in entries))
    os.chmod(path, 0o600)


class Credentials:
    """The server's credentials: a tokens file, FMLOOP_API_TOKEN, both, or neither (open)."""

    def __init__(self, tokens_file: str | None = None, shared_token: str | None = None):
        self.path = Path(tokens_file).expanduser() if tokens_file else None
        self.shared = shared_token or None
        self._tokens: dict[str, tuple[str, str]] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            if not self.path.is_file():
                raise ConfigError(f"--tokens {self.path}: no such file; create it with `fmloop tokens add NAME`")
            self._reload()

    @property
    def required(self) -> bool:
        return self.path is not None or self.shared is not None

    def identify(self, authorization: str | None, client: str) -> Identity | None:
        """The caller's identity, or None when a token is required and this one is missing or unknown."""
        if not self.required:
            return Identity(LOCAL_NAME, "admin", f"address:{client}")
        token = _bearer(authorization)
        if token is None:
            return None
        if self.shared is not None and hmac.compare_digest(token, self.shared.encode("utf-8")):
            return Identity(SHARED_TOKEN_NAME, "admin", SHARED_TOKEN_NAME)
        if self.path is not None:
            self._reload()
            # the hash of a random token is compared, so a timing difference tells nothing of the token
            entry = self._tokens.get(hash_token(token.decode("utf-8", "replace")))
            if entry is not None:
                return Identity(entry[0], entry[1], entry[0])
        return None

    def _reload(self) -> None:
        """Re-read the file when its size or time changed (a revoked token stops working at once). A
        file broken while the server runs keeps the last good set, with the error logged."""
        try:
            info = self.path.stat()
        except OSError:
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                self._tokens = read_tokens(self.path)
            except ConfigError as err:
                if self._stamp is None:
                    raise
                log.error("%s; the tokens read before stay in use", err)
            self._stamp = stamp


def _bearer(authorization: str | None) -> bytes | None:
    """The token of `Authorization: Bearer <token>` as bytes (header values arrive as latin-1)."""
    if not authorization:
        return None
    token = authorization.removeprefix("Bearer ").strip()
    return token.encode("latin-1", "replace") if token else None
