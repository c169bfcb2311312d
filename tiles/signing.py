"""Ed25519 signatures over release manifests (the ``cryptography`` package): signing, verifying, keys.

Beside the store because the publisher, the compliance check (``standards``) and the vehicle client all use
it; it needs only a key directory, nothing of the service.

Keys live under ``<home>/keys`` (the service passes ``$MAPSVC_HOME``): ``<key_id>.key`` (PKCS#8 PEM, mode 0600, directory 0700) and
``<key_id>.pub`` (SubjectPublicKeyInfo PEM); ``active`` names the key new releases are signed with.
A key id is the first 32 hex digits of the SHA-256 of the raw 32-byte public key, so pinning a key id pins
the key itself (a client checks that the key it is given hashes to the pinned id).

What is signed is the canonical manifest bytes (:func:`tiles.store.manifest_bytes`, as the store keeps them
and ``GET /v1/releases/{release}`` serves them). The detached signature is the release attachment
``manifest.sig``: a small JSON document naming the algorithm, the key id and the base64 signature.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lanelets.files import write_atomic

from tiles.store import manifest_bytes

ALGORITHM = "Ed25519"
SIG_ATTACHMENT = "manifest.sig"
_KEY_ID = re.compile(r"[0-9a-f]{32}")  # always fullmatch: "$" would let a trailing newline in


class SignatureError(ValueError):
    """A signature, key or key id is missing, malformed or does not verify."""


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    public_key: Ed25519PublicKey
    created: str
    active: bool = False

    @property
    def raw(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def as_dict(self) -> dict:
        """What may be shown anywhere (never the private key)."""
        return {"key_id": self.key_id, "algorithm": ALGORITHM, "created": self.created, "active": self.active,
                "public_key": base64.b64encode(self.raw).decode(), "public_key_pem": self.pem}


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def keys_dir(home: str | os.PathLike) -> Path:
    return Path(home) / "keys"


def _check_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise SignatureError(f"not a key id (32 hex digits): {key_id!r}")
    return key_id


# -- key management -----------------------------------------------------------------------------------
def create_key(home: str | os.PathLike, *, activate: bool = True) -> PublicKey:
    """Make a new Ed25519 key pair under ``home/keys``; the private key file is created 0600 from the start."""
    d = keys_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    kid = key_id_of(public)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # O_EXCL + mode 0600: the secret never exists on disk with wider permissions, and no key is overwritten.
    fd = os.open(d / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    pub_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomic(d / f"{kid}.pub", pub_pem, 0o644)
    if activate:
        write_atomic(d / "active", kid.encode() + b"\n", 0o644)
    return _public(d, kid)


def active_key_id(home: str | os.PathLike) -> str | None:
    try:
        kid = (keys_dir(home) / "active").read_text().strip()
    except FileNotFoundError:
        return None
    return _check_id(kid)


def _public(d: Path, kid: str, active: str | None = None) -> PublicKey:
    path = d / f"{kid}.pub"
    try:
        pub = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SignatureError(f"{path}: no such public key") from None
    if not isinstance(pub, Ed25519PublicKey) or key_id_of(pub) != kid:
        raise SignatureError(f"{path}: not the Ed25519 public key of id {kid}")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
    if active is None:
        active = active_key_id(d.parent)
    return PublicKey(kid, pub, created, kid == active)


def list_keys(home: str | os.PathLike) -> list[PublicKey]:
    """Public keys under ``home/keys``, oldest first (the private halves are never loaded here)."""
    d = keys_dir(home)
    if not d.is_dir():
        return []
    active = active_key_id(home)
    ids = [p.name[:-4] for p in d.glob("*.pub") if _KEY_ID.fullmatch(p.name[:-4])]
    keys = [_public(d, kid, active) for kid in ids]
    return sorted(keys, key=lambda k: (k.created, k.key_id))


def public_key(home: str | os.PathLike, key_id: str) -> PublicKey:
    return _public(keys_dir(home), _check_id(key_id))


def ensure_key(home: str | os.PathLike) -> str:
    """The active key id, creating a first key if there is none (so the first publish can sign)."""
    kid = active_key_id(home)
    if kid is None:
        kid = create_key(home).key_id
    return kid


def _private(home: str | os.PathLike, key_id: str) -> Ed25519PrivateKey:
    path = keys_dir(home) / f"{_check_id(key_id)}.key"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SignatureError(f"{path}: no private key for key id {key_id}") from None
    if st.st_mode & 0o077:
        raise SignatureError(f"{path}: private key is readable by others (mode {st.st_mode & 0o777:o}); chmod 600")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


# -- signing and verifying -----------------------------------------------------------------------------
def sign_bytes(home: str | os.PathLike, data: bytes, key_id: str | None = None) -> dict:
    """A detached signature document for ``data`` with the given (default: active) key."""
    kid = key_id or active_key_id(home)
    if kid is None:
        raise SignatureError(f"{keys_dir(home)}: no signing key; run `mapsvc keys create`")
    sig = _private(home, kid).sign(data)
    return {"algorithm": ALGORITHM, "key_id": kid, "signature": base64.b64encode(sig).decode(),
            "manifest_sha256": hashlib.sha256(data).hexdigest()}


def signature_bytes(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def parse_signature(data: bytes) -> dict:
    try:
        doc = json.loads(data)
        ok = (isinstance(doc, dict) and doc.get("algorithm") == ALGORITHM and isinstance(doc.get("signature"), str)
              and isinstance(doc.get("key_id"), str))
        sig = base64.b64decode(doc["signature"], validate=True) if ok else b""
    except (ValueError, TypeError):
        ok, sig = False, b""
    if not ok or len(sig) != 64:
        raise SignatureError("manifest signature: not an Ed25519 signature document")
    _check_id(doc["key_id"])
    return {**doc, "raw": sig}


def verify_bytes(data: bytes, signature_doc: bytes | dict, public: Ed25519PublicKey) -> dict:
    """Check a detached signature over ``data``; returns the parsed signature, raises :class:`SignatureError`."""
    doc = signature_doc if isinstance(signature_doc, dict) else parse_signature(signature_doc)
    if "raw" not in doc:
        doc = parse_signature(signature_bytes(doc))
    if doc["key_id"] != key_id_of(public):
        raise SignatureError(f"manifest is signed with key {doc['key_id']}, not the pinned key {key_id_of(public)}")
    try:
        public.verify(doc["raw"], data)
    except InvalidSignature:
        raise SignatureError(f"manifest signature does not verify with key {doc['key_id']}: "
                             "the manifest was altered or not signed by this key") from None
    return doc


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A pinned public key from PEM, or from base64 / hex of the raw 32 bytes."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            raw = bytes.fromhex(text.decode()) if len(text) == 64 else base64.b64decode(text, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise SignatureError("not an Ed25519 public key (PEM, or base64/hex of 32 raw bytes)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("not an Ed25519 public key")
    return key


def release_signature(manifest: dict, home: str | os.PathLike) -> dict[str, tuple[bytes, bool]]:
    """The ``manifest.sig`` attachment for a release about to be published (``store.publish(attachments=...)``),
    so the release and its signature appear in one transaction. Creates the first key if there is none."""
    kid = ensure_key(home)
    return {SIG_ATTACHMENT: (signature_bytes(sign_bytes(home, manifest_bytes(manifest), kid)), False)}
