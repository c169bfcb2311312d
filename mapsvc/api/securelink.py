"""Signed, expiring tile URLs that nginx's ``secure_link`` module checks (see docs/serving.md).

nginx computes ``md5("$secure_link_expires$uri SECRET")`` (``secure_link_md5``), base64url without padding;
MD5 is the only digest that module offers. The URL points at the content-addressed blob, which is immutable,
so nginx and any CDN in front can cache it for good while access stays bound to the API's token check.
"""
from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import urlsplit


def blob_uri(sha256: str) -> str:
    """Path of a blob below the served blob root (the store's ``blobs/sha256`` layout)."""
    return f"/{sha256[:2]}/{sha256}.osm.gz"


def sign(base: str, sha256: str, secret: str, ttl: int, now: float | None = None) -> tuple[str, int]:
    expires = int(now if now is not None else time.time()) + int(ttl)
    url = base.rstrip("/") + blob_uri(sha256)
    uri = urlsplit(url).path
    digest = hashlib.md5(f"{expires}{uri} {secret}".encode()).digest()
    token = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{url}?md5={token}&expires={expires}", expires
