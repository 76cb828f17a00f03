"""Signing keys (ed25519) and the keys this user trusts.

``kiln keygen`` writes ``$KILN_CONFIG_HOME/keys/ed25519`` (PKCS#8 PEM, 0600) and its public half
``ed25519.pub``. A publisher signs a package's manifest digest (which covers the name, version,
classes, input contract, lineage and the sha256 of the weights and the ONNX graph), so a
signature vouches for every byte of the package and for what it claims to be.

Trust is a file, ``$KILN_CONFIG_HOME/trusted_keys.json``: key id -> the public key and the one
publisher it may sign for (your own key signs for any name you publish under). A load refuses a
package whose signature does not verify, or whose key is not in this file; ``--trust`` (or
``trust=True``) adds a publisher's key the first time it is seen, as ssh does with a host key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import InputError, SignatureError
from ..store.credentials import config_home
from ..store.fsutil import FileLock, atomic_write

PREFIX = "ed25519:"
CONTEXT = b"kiln-package-signature/1\x00"  # signed bytes = CONTEXT + the 32 bytes of the manifest digest
TRUST_MAX = 4 << 20


def keys_dir() -> Path:
    return config_home() / "keys"


def _private_path() -> Path:
    return keys_dir() / "ed25519"


def key_id(public: str) -> str:
    """The short name of a public key: the first 16 hex digits of the sha256 of its 32 bytes."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def _raw_public(public: str) -> bytes:
    try:
        if not isinstance(public, str) or not public.startswith(PREFIX):
            raise ValueError("no ed25519: prefix")
        raw = base64.b64decode(public[len(PREFIX) :], validate=True)
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes, not 32")
    except (ValueError, binascii.Error) as e:
        raise InputError(f"{str(public)[:60]!r} is not an ed25519 public key ({e}); 'kiln keygen' prints one") from None
    return raw


def keygen(*, force: bool = False) -> dict[str, str]:
    """Make this user's signing key (refused if one exists, unless ``force``); it is trusted at once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = _private_path()
    if path.exists() and not force:
        raise InputError(
            f"{path} already holds a signing key ({public_key()['key_id']}); packages you signed name it. "
            "Pass --force to replace it"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public = PREFIX + base64.b64encode(raw).decode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)  # the private key is 0600 from its first byte
    try:
        atomic_write(path, pem, path.parent)
        atomic_write(path.with_name("ed25519.pub"), (public + "\n").encode(), path.parent)
    finally:
        os.umask(old)
    trust(public, None, note="your own key")
    return {"key_id": key_id(public), "public": public, "path": str(path)}


def _private() -> Any:
    from cryptography.hazmat.primitives import serialization

    path = _private_path()
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise InputError(f"{path} can be read by other users; run 'chmod 600 {path}' (it is your signing key)")
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InputError("no signing key; run 'kiln keygen' once (publishing signs every package)") from None
    except ValueError as e:
        raise InputError(
            f"{path} is not an ed25519 private key ({e}); make a new one with 'kiln keygen --force'"
        ) from None


def public_key() -> dict[str, str]:
    """This user's public key and its id."""
    from cryptography.hazmat.primitives import serialization

    raw = _private().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public = PREFIX + base64.b64encode(raw).decode()
    return {"key_id": key_id(public), "public": public}


def sign(digest: str) -> str:
    """The base64 signature of a manifest digest (64 hex digits) with this user's key."""
    return base64.b64encode(_private().sign(CONTEXT + _digest_bytes(digest))).decode()


def verify(public: str, digest: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        sig = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(_raw_public(public)).verify(sig, CONTEXT + _digest_bytes(digest))
        return True
    except (InvalidSignature, ValueError, binascii.Error, InputError, TypeError):
        return False


def _digest_bytes(digest: str) -> bytes:
    if not isinstance(digest, str) or len(digest) != 64:
        raise ValueError("a manifest digest is 64 hex digits")
    return bytes.fromhex(digest)


# ---- trust ----------------------------------------------------------------------------------
def _trust_path() -> Path:
    return config_home() / "trusted_keys.json"


def trusted() -> dict[str, dict[str, Any]]:
    """key id -> {"public", "publisher" (None: any), "added", "note"}."""
    path = _trust_path()
    try:
        data = json.loads(path.read_bytes()[:TRUST_MAX])
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise InputError(
            f"{path} is not valid JSON ({e}); fix it or delete it and trust your publishers again"
        ) from None
    keys = data.get("keys") if isinstance(data, dict) else None
    return {k: v for k, v in (keys or {}).items() if isinstance(v, dict) and isinstance(v.get("public"), str)}


def trust(public: str, publisher: str | None, *, note: str = "") -> str:
    """Trust ``public`` to sign for ``publisher`` (None: for anyone, i.e. your own key). A key
    already trusted is never re-bound: your own key stays yours, and a key trusted for alice is
    not moved to whoever registered it next."""
    kid = key_id(public)
    path = _trust_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(path.with_name("trusted_keys.lock"), what="trusted keys file"):
        keys = trusted()
        old = keys.get(kid)
        if old is not None and old.get("public") == public and old.get("publisher") in (None, publisher):
            return kid  # already trusted for this publisher (or for anyone)
        if old is not None:
            who = "your own key" if old.get("publisher") is None else f"{old.get('publisher')}'s"
            raise SignatureError(
                f"key {kid} is trusted as {who} in {path}; refusing to trust it for {publisher} too. "
                "Remove its entry from that file first if this is really meant"
            )
        keys[kid] = {"public": public, "publisher": publisher, "added": int(time.time()), "note": note}
        atomic_write(path, (json.dumps({"keys": keys}, indent=2, sort_keys=True) + "\n").encode(), path.parent)
    return kid


def trusts_publisher(publisher: str) -> bool:
    """Whether some key is trusted to sign for ``publisher`` (your own key does not count)."""
    return any(v.get("publisher") == publisher for v in trusted().values())


REGISTRATION = b"kiln-key-registration/1\x00"  # signed bytes = REGISTRATION + the hub user's name


def sign_registration(user: str) -> str:
    """Proof, for a hub, that whoever registers this key for ``user`` holds its private half."""
    return base64.b64encode(_private().sign(REGISTRATION + user.encode())).decode()


def verify_registration(public: str, user: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        sig = base64.b64decode(signature, validate=True)
        Ed25519PublicKey.from_public_bytes(_raw_public(public)).verify(sig, REGISTRATION + user.encode())
        return True
    except (InvalidSignature, ValueError, binascii.Error, InputError, TypeError):
        return False


def check_signature(publisher: str, kid: str, digest: str, signature: str, where: str) -> None:
    """Raise ``SignatureError`` unless a trusted key ``kid`` of ``publisher`` signed ``digest``."""
    entry = trusted().get(kid)
    if entry is None or entry.get("publisher") not in (None, publisher):
        raise SignatureError(
            f"{where}: signed by {publisher}'s key {kid}, which you do not trust. Check the key with {publisher}, then "
            f"'kiln trust {publisher} {kid}' (or install with --trust to trust it on first use)"
        )
    if not verify(entry["public"], digest, signature):
        raise SignatureError(
            f"{where}: the signature does not verify with {publisher}'s key {kid}; the package was altered after it "
            "was signed, or the signature is forged. Do not use it; install it again from the hub"
        )
