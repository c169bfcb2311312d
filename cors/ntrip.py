"""NTRIP 1.0 / 2.0 protocol, both sides, without sockets (pyrtcm's parser/reader split is the model).

Server side: request parsing, replies, sourcetable records and filters, chunked upload decoding.
Client side: ``parse_url``, ``client_request`` (GET, v1/v2, auth, GGA), ``source_request`` (v1
SOURCE / v2 POST), ``parse_reply`` (status line/head of a caster's answer), ``ChunkDecoder``
(size-limited), ``Backoff`` (the one reconnect policy) and ``read_reply`` (the only I/O here: the
reply head from an asyncio stream). GGA build/parse for both sides.

Hand-written because no kept library offers an NTRIP *caster* side (pygnssutils' server is a
20-client threaded demo with a malformed v2 reply) and pygnssutils' client is thread-based and owns
its output; NMEA building and parsing use pynmeagps.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import crcmod
from pynmeagps import NMEAReader
from pynmeagps.exceptions import NMEAMessageError, NMEAParseError, NMEATypeError

SERVER = "NTRIP mapsvc-caster/0.1"
MAX_HEADER = 8192

# --- CRC-24Q (RTCM 3 frame check) -----------------------------------------------------------------
# crcmod's C extension (~10 ns a byte): the framer checks every candidate frame a source sends, and a
# hostile source can make every third byte a candidate. pyrtcm's calc_crc24q is bit-by-bit Python.
crc24q = crcmod.mkCrcFun(0x1864CFB, initCrc=0, rev=False, xorOut=0)
try:  # crcmod silently falls back to pure Python when its extension did not build
    from crcmod import _crcfunext  # noqa: F401
    CRC_IN_C = True
except ImportError:  # pragma: no cover
    CRC_IN_C = False


def frame_ok(frame: bytes) -> bool:
    """True if an RTCM 3 frame (preamble..CRC) passes its CRC-24Q."""
    return len(frame) >= 6 and crc24q(frame[:-3]) == int.from_bytes(frame[-3:], "big")


# --- requests -------------------------------------------------------------------------------------

class ProtocolError(Exception):
    """A peer broke the NTRIP/HTTP protocol (malformed head, chunk, reply)."""


class BadRequest(ProtocolError):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str                 # GET, POST, SOURCE
    target: str                 # raw request target
    mountpoint: str             # "" for the sourcetable
    query: str                  # sourcetable filter (v2), unquoted
    http_version: str           # "HTTP/1.0", "HTTP/1.1" or "" for SOURCE
    headers: dict = field(default_factory=dict)  # lower-case names
    ntrip2: bool = False
    source_password: str = ""   # v1 SOURCE
    user: str | None = None     # Basic auth
    password: str | None = None


def split_head(buf: bytes) -> tuple[bytes, bytes] | None:
    """Split a buffer at the end of the request head (CRLFCRLF, or LFLF from sloppy clients)."""
    i = buf.find(b"\r\n\r\n")
    j = buf.find(b"\n\n")
    if i < 0 and j < 0:
        return None
    if i >= 0 and (j < 0 or i <= j):
        return buf[:i], buf[i + 4:]
    return buf[:j], buf[j + 2:]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_request(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise BadRequest(400, "undecodable request") from None
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if not parts:
        raise BadRequest(400, "empty request line")
    method = parts[0].upper()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest(400, f"malformed header line {line[:60]!r}")
        headers[name.lower()] = value.strip()
    ntrip2 = "ntrip/2" in headers.get("ntrip-version", "").lower()
    if method == "SOURCE":
        # NTRIP 1.0 server: "SOURCE <password> /<mountpoint>"; some servers omit the slash.
        if len(parts) != 3:
            raise BadRequest(400, "SOURCE needs a password and a mountpoint")
        mount = parts[2].lstrip("/")
        return Request("SOURCE", parts[2], mount, "", "", headers, False, source_password=parts[1])
    if method not in ("GET", "POST"):
        raise BadRequest(405 if len(parts) == 3 and parts[2].upper().startswith("HTTP/") else 400,
                         f"method {method[:16]!r} not supported")
    if len(parts) != 3 or not parts[2].upper().startswith("HTTP/1."):
        raise BadRequest(400, "request line must be 'METHOD /path HTTP/1.x'")
    target = parts[1]
    if target.startswith(("http://", "https://")):  # absolute form (proxies)
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if not target.startswith("/"):
        raise BadRequest(400, "request target must start with '/'")
    path, _, query = target[1:].partition("?")
    req = Request(method, parts[1], unquote(path), unquote(query), parts[2].upper(), headers, ntrip2)
    auth = headers.get("authorization")
    if auth:
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, pw = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise BadRequest(400, "malformed Basic credentials") from None
            if sep:
                req.user, req.password = user, pw
    return req


# --- replies --------------------------------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
           429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}


def _date() -> str:
    return formatdate(time.time(), usegmt=True)


def http_reply(status: int, *, ntrip2: bool, body: str = "", headers: dict | None = None) -> bytes:
    """A complete error/short reply: HTTP/1.1 for v2, HTTP/1.0 for v1 (as NTRIP 1.0 casters send)."""
    version = "HTTP/1.1" if ntrip2 else "HTTP/1.0"
    data = body.encode()
    lines = [f"{version} {status} {REASONS.get(status, 'Error')}"]
    if ntrip2:
        lines.append("Ntrip-Version: Ntrip/2.0")
    lines += [f"Server: {SERVER}", f"Date: {_date()}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    lines += ["Content-Type: text/plain", f"Content-Length: {len(data)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + data


def data_reply(ntrip2: bool) -> bytes:
    if not ntrip2:
        # NTRIP 1.0: the status line alone, then the stream (RTKLIB, BKG casters; RTKLIB clients take
        # everything after "ICY 200 OK\r\n" as data, so a blank line would reach the rover as junk)
        return b"ICY 200 OK\r\n"
    return ("HTTP/1.1 200 OK\r\nNtrip-Version: Ntrip/2.0\r\n"
            f"Server: {SERVER}\r\nDate: {_date()}\r\n"
            "Cache-Control: no-store, no-cache, max-age=0\r\nPragma: no-cache\r\n"
            "Connection: close\r\nContent-Type: gnss/data\r\nTransfer-Encoding: chunked\r\n\r\n").encode()


def source_ok_reply(ntrip2: bool) -> bytes:
    if not ntrip2:
        return b"ICY 200 OK\r\n"
    return ("HTTP/1.1 200 OK\r\nNtrip-Version: Ntrip/2.0\r\n"
            f"Server: {SERVER}\r\nDate: {_date()}\r\nConnection: close\r\n\r\n").encode()


def sourcetable_reply(table: str, ntrip2: bool) -> bytes:
    body = table.encode("latin-1", "replace")
    if ntrip2:
        head = ("HTTP/1.1 200 OK\r\nNtrip-Version: Ntrip/2.0\r\n"
                "Ntrip-Flags: st_filter,st_match\r\n"
                f"Server: {SERVER}\r\nDate: {_date()}\r\nConnection: close\r\n"
                "Content-Type: gnss/sourcetable\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        return head + b"%X\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    head = (f"SOURCETABLE 200 OK\r\nServer: {SERVER}\r\nDate: {_date()}\r\n"
            f"Connection: close\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def chunk(data: bytes) -> bytes:
    return b"%X\r\n%b\r\n" % (len(data), data)


class ChunkDecoder:
    """Incremental HTTP/1.1 chunked-body decoder (NTRIP 2.0 POST uploads and 2.0 data replies).

    A chunk over ``max_chunk`` bytes or a size line over 64 bytes raises ``BadRequest`` (400).
    """

    def __init__(self, max_chunk: int = 1 << 20):
        self._buf = bytearray()
        self._need = -1  # -1: reading a size line; >=0: bytes of chunk data still to read (+2 CRLF)
        self.max_chunk = max_chunk
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        buf = self._buf
        while not self.done:
            if self._need < 0:
                i = buf.find(b"\n")
                if i < 0:
                    if len(buf) > 64:
                        raise BadRequest(400, "chunk size line too long")
                    break
                line = bytes(buf[:i]).strip().split(b";")[0]
                del buf[:i + 1]
                if not line:
                    continue  # tolerate a stray CRLF between chunks
                try:
                    size = int(line, 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk size") from None
                if size < 0 or size > self.max_chunk:
                    raise BadRequest(400, "chunk too large")
                if size == 0:
                    self.done = True
                    break
                self._need = size
            else:
                if len(buf) < self._need:
                    break
                out += buf[:self._need]
                del buf[:self._need]
                self._need = -1
        return bytes(out)


# --- sourcetable ----------------------------------------------------------------------------------

def _field(value) -> str:
    return str(value).replace(";", ",").replace("\r", " ").replace("\n", " ")


def str_record(*fields) -> str:
    """``STR;mountpoint;identifier;format;format-details;carrier;nav-system;network;country;latitude;
    longitude;nmea;solution;generator;compression;authentication;fee;bitrate;misc`` (19 fields)."""
    if len(fields) != 18:
        raise ValueError(f"STR record needs 18 fields after the type, got {len(fields)}")
    return "STR;" + ";".join(_field(f) if str(f) != "" else "none" for f in fields)


def cas_record(host, port, identifier, operator, nmea, country, lat, lon, fallback_host="0.0.0.0",
               fallback_port=0, misc="none") -> str:
    f = ["CAS", host, port, identifier, operator, nmea, country, f"{lat:.2f}", f"{lon:.2f}",
         fallback_host, fallback_port, misc]
    return ";".join(_field(v) for v in f)


def net_record(identifier, operator, authentication="B", fee="N", web_net="none", web_str="none",
               web_reg="none", misc="none") -> str:
    f = ["NET", identifier, operator, authentication, fee, web_net, web_str, web_reg, misc]
    return ";".join(_field(v) for v in f)


def _match_one(pattern: str, value: str) -> bool:
    """One filter term of NTRIP 2.0 sourcetable filtering (st_filter / st_match)."""
    if pattern.startswith("!"):
        return not _match_one(pattern[1:], value)
    if pattern[:1] in "<>=" and pattern[1:]:
        try:
            a, b = float(value), float(pattern[1:])
        except ValueError:
            return False
        return {"<": a < b, ">": a > b, "=": a == b}[pattern[0]]
    if pattern.startswith("~"):  # st_match: approximate = case-insensitive substring
        return pattern[1:].lower() in value.lower()
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _match_field(pattern: str, value: str) -> bool:
    if "&" in pattern:
        return all(_match_field(p, value) for p in pattern.split("&"))
    return any(_match_one(p, value) for p in pattern.split("|"))


def filter_sourcetable(records: list[str], query: str) -> list[str]:
    """Keep the records matching a v2 filter such as ``STR;;;RTCM 3*;;;;;JPN`` (empty field = any).

    A query without a record type (``;;;RTCM 3*``) or with ``STR``/``CAS``/``NET`` filters that type;
    the other record types are dropped when a type is named.
    """
    query = query.strip()
    if not query:
        return records
    terms = query.split(";")
    rtype = terms[0].upper() if terms[0].upper() in ("STR", "CAS", "NET") else ""
    if not rtype and terms[0]:
        terms = ["STR"] + terms  # bare filter: applies to STR fields from the mountpoint on
        rtype = "STR"
    out = []
    for rec in records:
        fields = rec.split(";")
        if rtype and fields[0] != rtype:
            continue
        ok = True
        for i, pattern in enumerate(terms[1:], start=1):
            if not pattern:
                continue
            if i >= len(fields) or not _match_field(pattern, fields[i]):
                ok = False
                break
        if ok:
            out.append(rec)
    return out


# --- GGA --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GGA:
    lat: float
    lon: float
    height: float  # ellipsoidal: altitude + geoid separation
    quality: int


GGA_HEIGHT_M = (-1000.0, 50000.0)  # ellipsoidal heights a rover can have (Dead Sea .. stratosphere)


def parse_gga(line: bytes) -> GGA | None:
    """A position from one NMEA GGA sentence (checksum verified by pynmeagps, range checked), or None."""
    line = line.strip()
    if not line.startswith(b"$") or line[3:6] != b"GGA":
        return None
    try:
        msg = NMEAReader.parse(line + b"\r\n")
    except (NMEAParseError, NMEAMessageError, NMEATypeError, ValueError, TypeError):
        return None
    lat, lon = getattr(msg, "lat", ""), getattr(msg, "lon", "")
    if lat in ("", None) or lon in ("", None):
        return None
    alt = getattr(msg, "alt", 0.0) or 0.0
    sep = getattr(msg, "sep", 0.0) or 0.0
    try:
        gga = GGA(float(lat), float(lon), float(alt) + float(sep), int(getattr(msg, "quality", 0) or 0))
    except (TypeError, ValueError, OverflowError):
        return None
    # NaN fails every comparison: only a position on (or near) the Earth passes
    if not (abs(gga.lat) <= 90.0 and abs(gga.lon) <= 180.0 and GGA_HEIGHT_M[0] <= gga.height <= GGA_HEIGHT_M[1]):
        return None
    return gga


def make_gga(lat: float, lon: float, height: float = 0.0, quality: int = 1) -> bytes:
    """A GGA sentence (pynmeagps builds and checksums it): what a rover sends to NEAREST/VRS."""
    from pynmeagps import NMEAMessage

    msg = NMEAMessage("GP", "GGA", 0, lat=lat, lon=lon, alt=height, sep=0.0, quality=quality,
                      numSV=12, HDOP=0.8, altUnit="M", sepUnit="M")
    return msg.serialize()


def gga_from_ecef(ecef) -> bytes:
    """The GGA sentence of an ECEF position (m)."""
    from cors.geodesy import ecef_to_geodetic

    return make_gga(*ecef_to_geodetic(*ecef))


# --- client side: URLs, requests, replies, reconnect policy ----------------------------------------

DEFAULT_PORT = 2101
HANDSHAKE_TIMEOUT = 10.0   # s: connect and reply head
RECONNECT_MIN_S = 10.0     # floor: RTK2go and other public casters ban peers that reconnect faster
RECONNECT_MAX_S = 120.0


@dataclass(frozen=True)
class NtripURL:
    """Where a client connects: ``ntrip://USER:PASSWORD@HOST:PORT/MOUNT``, ``tcp://HOST:PORT`` or ``file:PATH``."""

    scheme: str
    host: str = ""
    port: int = 0
    mountpoint: str = ""
    user: str = ""
    password: str = ""
    path: str = ""

    def public(self) -> str:
        """Without credentials (for logs and listings)."""
        if self.scheme == "file":
            return f"file:{self.path}"
        mount = f"/{self.mountpoint}" if self.mountpoint else ""
        return f"{self.scheme}://{self.host}:{self.port}{mount}"


def parse_url(url: str, *, schemes=("ntrip",), what: str = "url") -> NtripURL:
    """Parse a caster/source URL; ``schemes`` are the ones the caller accepts (ntrip, tcp, file).

    Raises ``CorsError`` naming ``what`` (the option or field) on anything malformed.
    """
    from cors.errors import CorsError

    expected = {"ntrip": "ntrip://USER:PASSWORD@HOST:PORT/MOUNT", "tcp": "tcp://HOST:PORT", "file": "file:PATH"}
    if "file" in schemes and url.startswith("file:"):
        path = url[len("file:"):].removeprefix("//")
        if not path:
            raise CorsError(f"{what} {url!r}: file: needs a path")
        return NtripURL("file", path=path)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise CorsError(f"{what} {url!r}: expected " + ", ".join(expected[s] for s in schemes))
    try:
        port = parts.port or (DEFAULT_PORT if scheme == "ntrip" else 0)
    except ValueError:
        raise CorsError(f"{what} {url!r}: bad port") from None
    if not parts.hostname:
        raise CorsError(f"{what} {url!r}: missing host")
    if not port:
        raise CorsError(f"{what} {url!r}: {scheme}://HOST:PORT needs a port")
    mount = parts.path.lstrip("/")
    if scheme == "ntrip" and not mount:
        raise CorsError(f"{what} {url!r}: no mountpoint")
    return NtripURL(scheme, parts.hostname, port, mount, unquote(parts.username or ""),
                    unquote(parts.password or ""))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def client_request(url: NtripURL, version: int = 2, *, agent: str, gga: bytes | None = None) -> bytes:
    """A data request (GET /MOUNT): NTRIP 2.0 (HTTP/1.1, ``Ntrip-GGA`` header) or 1.0 (HTTP/1.0; the
    caller then writes the GGA into the stream). Basic auth when the URL has credentials."""
    if version not in (1, 2):
        raise ValueError(f"NTRIP version {version}: 1 or 2")
    lines = [f"GET /{url.mountpoint} HTTP/1.{1 if version == 2 else 0}"]
    if version == 2:
        lines += [f"Host: {url.host}:{url.port}", "Ntrip-Version: Ntrip/2.0"]
    lines.append(f"User-Agent: {agent}")
    if url.user or url.password:
        lines.append("Authorization: " + _basic(url.user, url.password))
    if version == 2 and gga:
        lines.append("Ntrip-GGA: " + gga.decode("latin-1").strip())
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def source_request(url: NtripURL, version: int = 2, *, agent: str) -> bytes:
    """An upload request: NTRIP 1.0 ``SOURCE password /MOUNT`` or 2.0 ``POST`` with a chunked body."""
    if version == 1:
        return f"SOURCE {url.password} /{url.mountpoint}\r\nSource-Agent: {agent}\r\n\r\n".encode()
    if version != 2:
        raise ValueError(f"NTRIP version {version}: 1 or 2")
    return (f"POST /{url.mountpoint} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"Ntrip-Version: Ntrip/2.0\r\nUser-Agent: {agent}\r\n"
            f"Authorization: {_basic(url.user, url.password)}\r\n"
            "Content-Type: gnss/data\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()


@dataclass(frozen=True)
class Reply:
    """A caster's answer head. ``status``: HTTP code (``ICY 200``/``SOURCETABLE 200`` give 200, an NTRIP
    1.0 ``ERROR - ...`` line 0); ``sourcetable``: the body is the table, not a stream."""

    line: str
    status: int
    headers: dict
    sourcetable: bool = False

    @property
    def ok(self) -> bool:
        """A data stream (or accepted upload) follows."""
        return self.status == 200 and not self.sourcetable

    @property
    def refused(self) -> bool:
        """Credentials or mountpoint refused: retrying the same request will not help."""
        return self.status in (401, 403, 404) or self.line.upper().startswith("ERROR")

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


def parse_reply(buf: bytes, *, eof: bool = False) -> tuple[Reply, bytes] | None:
    """(reply head, bytes after it) from the start of a caster's answer; None while incomplete.

    NTRIP 1.0 ``ICY 200 OK`` is one status line followed by data (a blank line after it is skipped);
    ``ERROR - ...`` is one line and a close. With ``eof`` an incomplete head is taken as it is.
    Raises ``ProtocolError`` when the head exceeds ``MAX_HEADER``.
    """
    if buf.startswith(b"ICY 200"):
        i = buf.find(b"\n")
        if i < 0 and not eof:
            return None
        i = len(buf) if i < 0 else i + 1
        rest = buf[i:]
        if rest.startswith(b"\r\n"):
            rest = rest[2:]
        return Reply(buf[:i].decode("latin-1").strip(), 200, {}), rest
    parts = split_head(buf)
    if parts is None:
        if len(buf) > MAX_HEADER:
            raise ProtocolError("reply head too large")
        if buf.upper().startswith(b"ERROR") and b"\n" in buf:
            parts = buf.split(b"\n", 1)
        elif eof:
            parts = (buf, b"")
        else:
            return None
    head, rest = parts
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    words = first.split()
    status = 0
    if len(words) >= 2 and (words[0].startswith("HTTP/") or words[0] in ("ICY", "SOURCETABLE")):
        status = int(words[1]) if words[1].isdigit() else 0
    table = first.startswith("SOURCETABLE") or "gnss/sourcetable" in headers.get("content-type", "").lower()
    return Reply(first, status, headers, table), rest


async def read_reply(reader, timeout: float = HANDSHAKE_TIMEOUT) -> tuple[Reply, bytes]:
    """The reply head from an asyncio ``StreamReader`` (the reader beside ``parse_reply``)."""
    import asyncio

    buf = b""
    while True:
        part = await asyncio.wait_for(reader.read(4096), timeout)
        buf += part
        parsed = parse_reply(buf, eof=not part)
        if parsed is not None:
            return parsed


class Backoff:
    """The reconnect policy of every NTRIP client here (upstream pulls, rovers, replayed stations).

    Attempts start at least ``min_s`` apart (never under ``RECONNECT_MIN_S``, a promise to public
    casters), the gap doubling while they keep failing, up to ``max_s``; a connection that ran for
    ``healthy_s`` counts as healthy and resets it.
    """

    def __init__(self, min_s: float = RECONNECT_MIN_S, max_s: float = RECONNECT_MAX_S, healthy_s: float = 60.0):
        self.min_s = max(RECONNECT_MIN_S, min_s)
        self.max_s = max(self.min_s, max_s)
        self.healthy_s = healthy_s
        self.gap = self.min_s

    def reset(self) -> None:
        self.gap = self.min_s

    def next_delay(self, ran_s: float = 0.0) -> float:
        """Seconds to wait before the next attempt, after one that began ``ran_s`` seconds ago."""
        if ran_s >= self.healthy_s:
            self.reset()
        delay = max(0.0, self.gap - ran_s)
        self.gap = min(self.gap * 2, self.max_s)
        return delay
