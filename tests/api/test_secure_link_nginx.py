"""The documented production layout for real: nginx's secure_link checks the signed, expiring tile URLs the
API issues (docs/serving.md), serving the store's blobs directly."""
from __future__ import annotations

import base64
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time

import pytest
import requests

from .conftest import LiveServer, auth


@pytest.fixture
def nginx(api_home, store, tmp_path):
    if shutil.which("nginx") is None:
        pytest.skip("nginx not installed")
    from benchmarks.bench_http import NGINX_CONF

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "test-secret-" + os.urandom(4).hex()
    (tmp_path / "tiles").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user=f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else "", workers=1,
        tmp=tmp_path, port=port, tiles=tmp_path / "tiles", blobs=store.blob_dir, secret=secret))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url + "/blobs/x", timeout=1)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"nginx did not start: {proc.stderr.read().decode()[-1000:]}")
            time.sleep(0.05)
    yield url, secret
    proc.terminate()
    proc.wait(10)


def test_signed_urls_checked_by_nginx(api_home, store, nginx):
    url, secret = nginx
    api = LiveServer({"HOME": str(api_home["home"]), "SECURE_LINK_SECRET": secret,
                      "SECURE_LINK_BASE": url + "/blobs", "SECURE_LINK_TTL": 60})
    try:
        h = auth(api_home["tokens"]["vehicle"])
        for entry in store.manifest("r1")["tiles"][:3]:
            # the vehicle follows the API's redirect to nginx and gets the tile's exact bytes
            r = requests.get(f"{api.url}/v1/releases/r1/tiles/{entry['id']}?redirect=1", headers=h, timeout=10)
            assert r.status_code == 200 and r.url.startswith(url + "/blobs/")
            assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        signed = requests.get(f"{api.url}/v1/releases/r1/tiles/{entry['id']}/url", headers=h, timeout=10).json()["url"]
        assert requests.get(signed, timeout=10).status_code == 200
        # altered signature, altered expiry, another blob under the same signature, no signature: 403
        assert requests.get(signed.replace("md5=", "md5=A"), timeout=10).status_code == 403
        assert requests.get(signed.replace("expires=", "expires=9"), timeout=10).status_code == 403
        other = store.manifest("r1")["tiles"][0]["sha256"]
        swapped = signed.replace(entry["sha256"], other).replace(entry["sha256"][:2] + "/", other[:2] + "/")
        assert requests.get(swapped, timeout=10).status_code == 403
        assert requests.get(signed.split("?")[0], timeout=10).status_code == 403
        # an expired URL: 410
        from mapsvc.api.securelink import sign

        expired, _ = sign(url + "/blobs", entry["sha256"], secret, -10)
        assert requests.get(expired, timeout=10).status_code == 410
        # nothing outside the blob directory, even when signed
        uri = "/blobs/../catalogue.sqlite"
        exp = int(time.time()) + 60
        md5 = base64.urlsafe_b64encode(hashlib.md5(f"{exp}{uri} {secret}".encode()).digest()).rstrip(b"=").decode()
        r = requests.get(f"{url}{uri}?md5={md5}&expires={exp}", timeout=10)
        assert r.status_code in (400, 403, 404) and b"SQLite" not in r.content
    finally:
        api.close()
