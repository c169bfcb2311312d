"""A certified vendor's offset library, loaded with ctypes (C ABI in docs/vendor-offset-abi.md).

The state-certified offset techniques are secret and ship as binary libraries; this adapter is the only code
that touches one. "Certified" is never the library's own claim alone: the library must report a certificate
id AND the operator must pin the library's sha256 in configuration (``sha256:``), so a swapped or unpinned
library can still be used for pilot tests but never counts as certified.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from lanelets.files import file_sha256

from desensitize.errors import DesensitizeError
from desensitize.provider import OffsetProvider

ABI_VERSION = 1
_DBL_P = ctypes.POINTER(ctypes.c_double)


class VendorProvider(OffsetProvider):
    def __init__(self, library: str | None = None, sha256: str | None = None, name: str | None = None):
        if not library:
            raise DesensitizeError("offset provider 'vendor': option 'library' (path to the .so) is required")
        path = Path(library).expanduser()
        if not path.is_file():
            raise DesensitizeError(f"{path}: vendor offset library not found")
        self.path = path
        self.sha256 = file_sha256(path)
        if sha256 and sha256.lower() != self.sha256:
            raise DesensitizeError(f"{path}: sha256 {self.sha256} does not match the configured {sha256}")
        try:
            lib = ctypes.CDLL(str(path.resolve()))
        except OSError as exc:
            raise DesensitizeError(f"{path}: cannot load vendor offset library: {exc}") from None
        try:
            lib.mapsvc_offset_abi_version.restype = ctypes.c_int
            lib.mapsvc_offset_abi_version.argtypes = []
            for fn in ("mapsvc_offset_name", "mapsvc_offset_version", "mapsvc_offset_certificate"):
                getattr(lib, fn).restype = ctypes.c_char_p
                getattr(lib, fn).argtypes = []
            lib.mapsvc_offset_forward.restype = ctypes.c_int
            lib.mapsvc_offset_forward.argtypes = [ctypes.c_size_t, _DBL_P, _DBL_P, _DBL_P, _DBL_P]
        except AttributeError as exc:
            raise DesensitizeError(f"{path}: not a mapsvc offset library ({exc})") from None
        abi = lib.mapsvc_offset_abi_version()
        if abi != ABI_VERSION:
            raise DesensitizeError(f"{path}: offset ABI version {abi}, expected {ABI_VERSION}")
        self._inverse = getattr(lib, "mapsvc_offset_inverse", None)
        if self._inverse is not None:
            self._inverse.restype = ctypes.c_int
            self._inverse.argtypes = [ctypes.c_size_t, _DBL_P, _DBL_P, _DBL_P, _DBL_P]
        self._lib = lib
        self.name = name or "vendor"
        self.library_name = (lib.mapsvc_offset_name() or b"").decode("utf-8", "replace")
        self.version = (lib.mapsvc_offset_version() or b"").decode("utf-8", "replace")
        self.certificate = (lib.mapsvc_offset_certificate() or b"").decode("utf-8", "replace")
        self.certified = bool(self.certificate) and bool(sha256)

    def _call(self, fn, lon, lat):
        lon = np.ascontiguousarray(lon, dtype=np.float64)
        lat = np.ascontiguousarray(lat, dtype=np.float64)
        if lon.shape != lat.shape:
            raise DesensitizeError("vendor offset: lon and lat differ in shape")
        out_lon = np.empty_like(lon)
        out_lat = np.empty_like(lat)
        rc = fn(lon.size, lon.ctypes.data_as(_DBL_P), lat.ctypes.data_as(_DBL_P),
                out_lon.ctypes.data_as(_DBL_P), out_lat.ctypes.data_as(_DBL_P))
        if rc != 0:
            raise DesensitizeError(f"{self.path}: vendor offset library returned error {rc}")
        return out_lon, out_lat

    def forward(self, lon, lat):
        return self._call(self._lib.mapsvc_offset_forward, lon, lat)

    def inverse(self, lon, lat):
        if self._inverse is None:
            return super().inverse(lon, lat)
        return self._call(self._inverse, lon, lat)

    def describe(self) -> dict:
        # The library path is a producer-side detail; the release records identity, not location.
        return {**super().describe(), "library": self.library_name, "library_sha256": self.sha256,
                "certificate": self.certificate or None}
