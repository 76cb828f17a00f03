"""The hub's metadata: users, tokens, repositories and who may do what, change requests.

``Meta`` is the interface the rest of the hub uses; ``SQLiteMeta`` is the embedded default (one
file, WAL, one connection per thread), so a later PostgreSQL implementation replaces one class.
Tokens are stored as the sha256 of their secret (they are random, 256-bit: a slow hash adds
nothing) and shown once, when made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import BadName, InputError, StateError

ROLES = ("read", "write", "admin")
SCOPES = ROLES
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "kiln_"


RESERVED = frozenset(
    {"api", "datasets", "static", "login", "logout", "models", "spaces", "packages"}
)  # the hub's own paths


def check_name(name: str, what: str) -> str:
    """A user or repository name: one path segment that any tool can carry unchanged."""
    bad = not isinstance(name, str) or not _NAME.match(name) or ".." in name or name.endswith((".", ".lock"))
    if not bad and what != "repository name" and name.lower() in RESERVED:
        raise BadName(f"{what} {name!r} is reserved for the hub's own pages; pick another")
    if bad:
        raise BadName(
            f"{what} {str(name)[:80]!r} is not allowed; use 1-64 letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (no '..', no '/')"
        )
    return name


def rank(role: str | None) -> int:
    """0 for no access, then read < write < admin."""
    return ROLES.index(role) + 1 if role in ROLES else 0


@dataclass(frozen=True)
class Token:
    id: str
    user: str
    scopes: tuple[str, ...]
    expires: int | None

    def allows(self, role: str) -> bool:
        return max(rank(s) for s in self.scopes) >= rank(role)


@dataclass(frozen=True)
class RepoInfo:
    owner: str
    name: str
    private: bool
    description: str
    created: int

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "full_name": self.full_name}


class Meta(Protocol):
    """What the hub stores besides repositories."""

    def add_user(self, name: str, *, admin: bool = False) -> None: ...
    def users(self) -> list[dict[str, Any]]: ...
    def is_admin(self, user: str) -> bool: ...
    def new_token(self, user: str, scopes: tuple[str, ...], *, days: float | None, note: str) -> str: ...
    def check_token(self, token: str) -> Token | None: ...
    def revoke_token(self, token_id: str) -> bool: ...
    def tokens(self, user: str) -> list[dict[str, Any]]: ...
    def add_repo(self, owner: str, name: str, *, private: bool, description: str) -> RepoInfo: ...
    def repo(self, owner: str, name: str) -> RepoInfo | None: ...
    def repos(self) -> list[RepoInfo]: ...
    def set_role(self, owner: str, name: str, user: str, role: str | None) -> None: ...
    def role(self, info: RepoInfo, user: str | None) -> str | None: ...
    def collaborators(self, owner: str, name: str) -> dict[str, str]: ...
    def add_request(self, owner: str, name: str, fields: dict[str, Any]) -> int: ...
    def requests(self, owner: str, name: str, state: str | None = None) -> list[dict[str, Any]]: ...
    def request(self, owner: str, name: str, number: int) -> dict[str, Any] | None: ...
    def update_request(self, owner: str, name: str, number: int, fields: dict[str, Any]) -> None: ...
    def add_comment(self, owner: str, name: str, number: int, author: str, body: str) -> None: ...
    def approve(self, owner: str, name: str, number: int, user: str) -> None: ...
    def add_key(self, user: str, key_id: str, public: str) -> None: ...
    def keys(self, user: str) -> dict[str, str]: ...
    def add_version(self, fields: dict[str, Any]) -> None: ...
    def versions(self, owner: str, name: str) -> list[dict[str, Any]]: ...
    def version(self, owner: str, name: str, version: str) -> dict[str, Any] | None: ...
    def count_download(self, owner: str, name: str, version: str) -> None: ...
    def packages(self) -> list[dict[str, Any]]: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS users(name TEXT PRIMARY KEY, admin INTEGER NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), hash TEXT NOT NULL,
  scopes TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER, revoked INTEGER, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repos(owner TEXT NOT NULL REFERENCES users(name), name TEXT NOT NULL,
  private INTEGER NOT NULL, description TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY(owner, name));
CREATE TABLE IF NOT EXISTS collaborators(owner TEXT NOT NULL, name TEXT NOT NULL, user TEXT NOT NULL,
  role TEXT NOT NULL, PRIMARY KEY(owner, name, user));
CREATE TABLE IF NOT EXISTS requests(owner TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL,
  source TEXT NOT NULL, target TEXT NOT NULL, title TEXT NOT NULL, author TEXT NOT NULL, state TEXT NOT NULL,
  created INTEGER NOT NULL, updated INTEGER NOT NULL, merged_commit TEXT, base TEXT, head TEXT,
  PRIMARY KEY(owner, name, number));
CREATE TABLE IF NOT EXISTS comments(id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, name TEXT NOT NULL,
  number INTEGER NOT NULL, author TEXT NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS approvals(owner TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL,
  user TEXT NOT NULL, created INTEGER NOT NULL, PRIMARY KEY(owner, name, number, user));
CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name), public TEXT NOT NULL,
  created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions(owner TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
  sha256 TEXT NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL, publisher TEXT NOT NULL, key TEXT NOT NULL,
  signature TEXT NOT NULL, manifest TEXT NOT NULL, created INTEGER NOT NULL, downloads INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(owner, name, version));
"""
VERSION_FIELDS = ("owner", "name", "version", "sha256", "size", "digest", "publisher", "key", "signature", "manifest")
REQUEST_FIELDS = ("source", "target", "title", "author", "state", "created", "updated", "merged_commit", "base", "head")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SQLiteMeta:
    """``Meta`` in one SQLite file (WAL: readers never wait for the one writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db().execute(sql, args).fetchall()]

    def _run(self, sql: str, *args: Any) -> int:
        try:
            return self._db().execute(sql, args).rowcount
        except sqlite3.IntegrityError as e:
            raise InputError(f"the hub refused this change ({e})") from None

    # ---- users and tokens ---------------------------------------------------------------
    def add_user(self, name: str, *, admin: bool = False) -> None:
        check_name(name, "user name")
        # Names differ by more than case: on a case-insensitive disk Alice/x and alice/x are one folder.
        if self._rows("SELECT 1 FROM users WHERE lower(name)=lower(?)", name):
            raise StateError(f"user {name!r} already exists; 'kiln hub token add {name}' makes another token")
        self._run("INSERT INTO users VALUES (?,?,?)", name, int(admin), int(time.time()))

    def users(self) -> list[dict[str, Any]]:
        return self._rows("SELECT name, admin, created FROM users ORDER BY name")

    def is_admin(self, user: str) -> bool:
        return bool(self._rows("SELECT 1 FROM users WHERE name=? AND admin=1", user))

    def new_token(self, user: str, scopes: tuple[str, ...], *, days: float | None, note: str = "") -> str:
        if not self._rows("SELECT 1 FROM users WHERE name=?", user):
            raise InputError(f"no user {user!r} on this hub; 'kiln hub user add {user}' first")
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InputError(f"token scopes {list(scopes)} must be some of: {', '.join(SCOPES)}")
        tid, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        expires = int(time.time() + days * 86400) if days else None
        self._run(
            "INSERT INTO tokens VALUES (?,?,?,?,?,?,NULL,?)",
            tid,
            user,
            _hash(secret),
            ",".join(scopes),
            int(time.time()),
            expires,
            note,
        )
        return f"{TOKEN_PREFIX}{tid}_{secret}"

    def check_token(self, token: str) -> Token | None:
        """The token's owner and scopes, or None if it is unknown, wrong, expired or revoked."""
        if not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        tid, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
        rows = self._rows("SELECT user, hash, scopes, expires, revoked FROM tokens WHERE id=?", tid)
        if not rows:
            return None
        r = rows[0]
        if not hmac.compare_digest(r["hash"], _hash(secret)) or r["revoked"]:
            return None
        if r["expires"] is not None and r["expires"] < time.time():
            return None
        return Token(tid, r["user"], tuple(r["scopes"].split(",")), r["expires"])

    def revoke_token(self, token_id: str) -> bool:
        return self._run("UPDATE tokens SET revoked=? WHERE id=? AND revoked IS NULL", int(time.time()), token_id) > 0

    def tokens(self, user: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, scopes, created, expires, revoked, note FROM tokens WHERE user=? ORDER BY created", user
        )

    # ---- repositories and roles ---------------------------------------------------------
    def add_repo(self, owner: str, name: str, *, private: bool, description: str = "") -> RepoInfo:
        check_name(owner, "owner")
        check_name(name, "repository name")
        if not self._rows("SELECT 1 FROM users WHERE name=?", owner):
            raise InputError(f"no user {owner!r} on this hub to own {owner}/{name}")
        if self._rows("SELECT 1 FROM repos WHERE lower(owner)=lower(?) AND lower(name)=lower(?)", owner, name):
            raise StateError(f"repository {owner}/{name} already exists (names differ by more than case)")
        self._run("INSERT INTO repos VALUES (?,?,?,?,?)", owner, name, int(private), description, int(time.time()))
        info = self.repo(owner, name)
        assert info is not None
        return info

    def repo(self, owner: str, name: str) -> RepoInfo | None:
        rows = self._rows("SELECT * FROM repos WHERE owner=? AND name=?", owner, name)
        return _info(rows[0]) if rows else None

    def repos(self) -> list[RepoInfo]:
        return [_info(r) for r in self._rows("SELECT * FROM repos ORDER BY owner, name")]

    def set_role(self, owner: str, name: str, user: str, role: str | None) -> None:
        if role is not None and role not in ROLES:
            raise InputError(f"role {role!r} is not one of: {', '.join(ROLES)}")
        if not self._rows("SELECT 1 FROM users WHERE name=?", user):
            raise InputError(f"no user {user!r} on this hub")
        self._run("DELETE FROM collaborators WHERE owner=? AND name=? AND user=?", owner, name, user)
        if role is not None:
            self._run("INSERT INTO collaborators VALUES (?,?,?,?)", owner, name, user, role)

    def role(self, info: RepoInfo, user: str | None) -> str | None:
        """What ``user`` (None: anonymous) may do in a repository: None, read, write or admin."""
        if user is not None and (user == info.owner or self.is_admin(user)):
            return "admin"
        granted = None
        if user is not None:
            rows = self._rows(
                "SELECT role FROM collaborators WHERE owner=? AND name=? AND user=?", info.owner, info.name, user
            )
            granted = rows[0]["role"] if rows else None
        if granted is None and not info.private:
            return "read"
        return granted

    def collaborators(self, owner: str, name: str) -> dict[str, str]:
        rows = self._rows("SELECT user, role FROM collaborators WHERE owner=? AND name=? ORDER BY user", owner, name)
        return {r["user"]: r["role"] for r in rows}

    # ---- change requests ----------------------------------------------------------------
    def add_request(self, owner: str, name: str, fields: dict[str, Any]) -> int:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # the next number, and the row, in one transaction
        try:
            row = db.execute(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM requests WHERE owner=? AND name=?", (owner, name)
            ).fetchone()
            number = int(row[0])
            values = [fields.get(k) for k in REQUEST_FIELDS]
            db.execute(
                f"INSERT INTO requests (owner, name, number, {', '.join(REQUEST_FIELDS)}) "
                f"VALUES (?,?,?{',?' * len(REQUEST_FIELDS)})",
                (owner, name, number, *values),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return number

    def requests(self, owner: str, name: str, state: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM requests WHERE owner=? AND name=?" + (" AND state=?" if state else "")
        args = (owner, name, state) if state else (owner, name)
        return [self._with_reviews(r) for r in self._rows(sql + " ORDER BY number DESC", *args)]

    def request(self, owner: str, name: str, number: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM requests WHERE owner=? AND name=? AND number=?", owner, name, number)
        if not rows:
            return None
        r = self._with_reviews(rows[0])
        r["comments"] = self._rows(
            "SELECT author, body, created FROM comments WHERE owner=? AND name=? AND number=? ORDER BY id",
            owner,
            name,
            number,
        )
        return r

    def _with_reviews(self, r: dict[str, Any]) -> dict[str, Any]:
        rows = self._rows(
            "SELECT user FROM approvals WHERE owner=? AND name=? AND number=? ORDER BY created",
            r["owner"],
            r["name"],
            r["number"],
        )
        return {**r, "approvals": [a["user"] for a in rows]}

    def update_request(self, owner: str, name: str, number: int, fields: dict[str, Any]) -> None:
        keys = [k for k in fields if k in REQUEST_FIELDS]
        sets = ", ".join(f"{k}=?" for k in keys)
        self._run(
            f"UPDATE requests SET {sets} WHERE owner=? AND name=? AND number=?",
            *[fields[k] for k in keys],
            owner,
            name,
            number,
        )

    def add_comment(self, owner: str, name: str, number: int, author: str, body: str) -> None:
        self._run(
            "INSERT INTO comments (owner, name, number, author, body, created) VALUES (?,?,?,?,?,?)",
            owner,
            name,
            number,
            author,
            body,
            int(time.time()),
        )

    def approve(self, owner: str, name: str, number: int, user: str) -> None:
        self._run("INSERT OR IGNORE INTO approvals VALUES (?,?,?,?,?)", owner, name, number, user, int(time.time()))

    # ---- the registry: signing keys and package versions --------------------------------
    def add_key(self, user: str, key_id: str, public: str) -> None:
        self._run("INSERT OR IGNORE INTO keys VALUES (?,?,?,?)", key_id, user, public, int(time.time()))
        rows = self._rows("SELECT user FROM keys WHERE id=?", key_id)  # after the insert: a racing one is seen
        if rows and rows[0]["user"] != user:
            raise StateError(f"key {key_id} belongs to another user of this hub; make your own with 'kiln keygen'")

    def keys(self, user: str) -> dict[str, str]:
        return {
            r["id"]: r["public"] for r in self._rows("SELECT id, public FROM keys WHERE user=? ORDER BY created", user)
        }

    def add_version(self, fields: dict[str, Any]) -> None:
        """Record a published version; versions never change, so a second publish is refused."""
        owner, name, version = fields["owner"], fields["name"], fields["version"]
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # the case check and the insert as one step
        try:
            clash = db.execute(
                "SELECT owner, name FROM versions WHERE lower(owner)=lower(?) AND lower(name)=lower(?) "
                "AND (owner!=? OR name!=?) LIMIT 1",
                (owner, name, owner, name),
            ).fetchone()
            if clash:
                raise StateError(f"package {clash[0]}/{clash[1]} exists; names differ by more than case")
            if db.execute(
                "SELECT 1 FROM versions WHERE owner=? AND name=? AND version=?", (owner, name, version)
            ).fetchone():
                raise StateError(
                    f"{owner}/{name} {version} is already published and versions never change; publish a new version"
                )
            db.execute(
                f"INSERT INTO versions({','.join(VERSION_FIELDS)}, created) VALUES ({','.join('?' * len(VERSION_FIELDS))}, ?)",
                (*(fields[k] for k in VERSION_FIELDS), int(time.time())),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def versions(self, owner: str, name: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM versions WHERE owner=? AND name=? ORDER BY created", owner, name)

    def version(self, owner: str, name: str, version: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM versions WHERE owner=? AND name=? AND version=?", owner, name, version)
        return rows[0] if rows else None

    def count_download(self, owner: str, name: str, version: str) -> None:
        self._run(
            "UPDATE versions SET downloads=downloads+1 WHERE owner=? AND name=? AND version=?", owner, name, version
        )

    def packages(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT owner, name, count(*) AS versions, sum(downloads) AS downloads, max(created) AS updated "
            "FROM versions GROUP BY owner, name ORDER BY owner, name"
        )


def _info(r: dict[str, Any]) -> RepoInfo:
    return RepoInfo(r["owner"], r["name"], bool(r["private"]), r["description"], r["created"])
