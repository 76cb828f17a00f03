"""Tokens for hubs, kept like git's credential store: one file, readable by its owner only.

``$KILN_CONFIG_HOME/credentials.json`` (default ``~/.config/kiln``) maps a hub's origin
(``http://host:port``) to a token. ``$KILN_TOKEN`` overrides it for one command (CI). The file is
written atomically with mode 0600; a file others can read is refused, as ssh refuses a key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import InputError
from .fsutil import atomic_write

FILE_MAX = 1 << 20


def config_home() -> Path:
    env = os.environ.get("KILN_CONFIG_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kiln"


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL: one token serves every repository of a hub."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{url!r} is not a hub address; expected http://HOST:PORT or https://HOST")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def _path() -> Path:
    return config_home() / "credentials.json"


def _load() -> dict[str, str]:
    path = _path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{path} can be read by other users; run 'chmod 600 {path}' (it holds tokens)")
    try:
        data = json.loads(path.read_bytes()[:FILE_MAX])
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON ({e}); fix it, or delete it and 'kiln login' again") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    return {k: v for k, v in (tokens or {}).items() if isinstance(k, str) and isinstance(v, str)}


def known_hubs() -> list[str]:
    """The origins of the hubs this user is logged in to."""
    return list(_load())


def token_for(url: str) -> str | None:
    """The token to send to the hub at ``url``: $KILN_TOKEN, else the stored one, else None."""
    env = os.environ.get("KILN_TOKEN")
    if env:
        return env
    return _load().get(origin(url))


def store_token(url: str, token: str | None) -> Path:
    """Remember (or, with None, forget) the token for the hub at ``url``."""
    tokens = _load()
    key = origin(url)
    if token is None:
        tokens.pop(key, None)
    else:
        tokens[key] = token
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp_dir = path.parent
    old = os.umask(0o077)  # the temp file is 0600 from its first byte, not chmod'ed after
    try:
        atomic_write(path, (json.dumps({"tokens": tokens}, indent=2) + "\n").encode(), tmp_dir)
    finally:
        os.umask(old)
    return path
