"""Ed25519 manifest signing: keys on disk, signatures, pinning formats."""
from __future__ import annotations

import base64
import os

import pytest

from tiles import signing


def test_keys_are_private_and_rotate(tmp_path):
    assert signing.list_keys(tmp_path) == [] and signing.active_key_id(tmp_path) is None
    first = signing.ensure_key(tmp_path)
    assert signing.ensure_key(tmp_path) == first  # idempotent
    second = signing.create_key(tmp_path).key_id
    assert signing.active_key_id(tmp_path) == second != first
    assert {k.key_id for k in signing.list_keys(tmp_path)} == {first, second}
    for kid in (first, second):
        assert (tmp_path / "keys" / f"{kid}.key").stat().st_mode & 0o777 == 0o600
    # an old key still verifies what it signed; the new one signs new releases
    doc_old = signing.sign_bytes(tmp_path, b"old manifest", first)
    doc_new = signing.sign_bytes(tmp_path, b"new manifest")
    assert doc_new["key_id"] == second
    assert signing.verify_bytes(b"old manifest", doc_old, signing.public_key(tmp_path, first).public_key)
    with pytest.raises(signing.SignatureError, match="not the pinned key"):
        signing.verify_bytes(b"old manifest", doc_old, signing.public_key(tmp_path, second).public_key)


def test_signature_covers_every_byte(tmp_path):
    signing.ensure_key(tmp_path)
    data = b'{"format":"mapsvc-tiles/1","level":13,"tiles":[]}'
    sig = signing.signature_bytes(signing.sign_bytes(tmp_path, data))
    pub = signing.list_keys(tmp_path)[0].public_key
    assert signing.verify_bytes(data, sig, pub)
    for i in range(0, len(data), 7):
        altered = data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:]
        with pytest.raises(signing.SignatureError):
            signing.verify_bytes(altered, sig, pub)
    for bad in (b"", b"{}", b"not json", sig.replace(b'"Ed25519"', b'"RSA"')):
        with pytest.raises(signing.SignatureError):
            signing.verify_bytes(data, bad, pub)


def test_refuses_a_world_readable_private_key(tmp_path):
    kid = signing.ensure_key(tmp_path)
    os.chmod(tmp_path / "keys" / f"{kid}.key", 0o644)
    with pytest.raises(signing.SignatureError, match="readable by others"):
        signing.sign_bytes(tmp_path, b"x")


def test_pinned_key_formats(tmp_path):
    key = signing.create_key(tmp_path)
    raw = key.raw
    for form in (key.pem.encode(), base64.b64encode(raw), raw.hex().encode()):
        assert signing.key_id_of(signing.load_public_key(form)) == key.key_id
    with pytest.raises(signing.SignatureError):
        signing.load_public_key(b"garbage")
    assert "PRIVATE" not in str(key.as_dict())


def test_client_refuses_bad_release_names(tmp_path):
    from mapsvc.client import FetchError, VehicleClient

    key = signing.create_key(tmp_path)
    c = VehicleClient("http://127.0.0.1:9", "t", tmp_path / "cache", public_key=key.pem.encode())
    for name in ("../../etc", "a/b", "", "x" * 200, "r1\n", "r1\r\n", "\nr1"):
        with pytest.raises(FetchError, match="not a release name"):
            c.fetch(49.0, 8.4, 10, release=name)
