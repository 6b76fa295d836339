"""The built-in workloads' protocols: pure request -> answer functions, /dial and the UDP side.

http  stands in for nginx: every GET gets "Welcome to the home page of host <pod>!" (seed 001's page);
      /large?bytes=N sends N bytes (at most 10 MB) so MTU trouble shows up as a stalled transfer.
      With a volume mounted at nginx's document root, it serves that volume's files instead, as
      nginx does (static.py): the image's own page is hidden under the mount, as in a real pod.
echo  stands in for Kubernetes' agnhost netexec (e2e tests): /hostname, /clientip, /echo?msg=, /dial
      over HTTP, and hostname / clientip / echo over UDP.
Responses always close the connection: clients are curl and probes, not browsers. The HTTP side
is served by http_server.py.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from lab.engine import netns
from lab.workloads import static

MAX_HEAD = 16 * 1024
LARGE_CAP = 10 * 1024 * 1024
DIAL_TIMEOUT = 3.0
MAX_TRIES = 10
REASONS = {200: "OK", 301: "Moved Permanently", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed"}

Address = tuple[str, int]


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def parse_request(head: bytes) -> Request:
    """Parse a request line and headers (lines end in CRLF or, from nc, bare LF)."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    method, target, _version = parts
    try:
        url = urlsplit(target)
    except ValueError as e:   # e.g. "//[x": an unclosed IPv6 bracket
        raise BadRequest(f"bad request target {target[:80]!r}: {e}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Request(method.upper(), url.path or "/", dict(parse_qsl(url.query, keep_blank_values=True)), headers)


def response_head(status: int, length: int, content_type: str = "text/plain; charset=utf-8",
                  headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Server: podlab\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}"
            f"Connection: close\r\n\r\n").encode()


def response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    return response_head(status, len(body), content_type) + body


def welcome_page(pod: str) -> bytes:
    return f"Welcome to the home page of host {pod}!\n".encode()


def large_size(query: dict[str, str]) -> int:
    try:
        n = int(query.get("bytes", "1048576"))
    except ValueError:
        raise BadRequest("bytes must be a number") from None
    if n < 0:
        raise BadRequest("bytes must not be negative")
    return min(n, LARGE_CAP)


def echo_answer(pod: str, req: Request, client: Address) -> tuple[int, bytes]:
    """agnhost netexec's simple paths; /dial is handled by the caller (it needs the network)."""
    if req.path == "/hostname":
        return 200, pod.encode()
    if req.path == "/clientip":
        return 200, f"{client[0]}:{client[1]}".encode()
    if req.path == "/echo":
        return 200, req.query.get("msg", "").encode()
    return 404, b"404 page not found\n"


def udp_answer(pod: str, data: bytes, client: Address) -> bytes | None:
    """agnhost's UDP commands; unknown ones get no answer, as in agnhost."""
    text = data.decode("utf-8", "replace").strip()
    if text == "hostname":
        return pod.encode()
    if text == "clientip":
        return f"{client[0]}:{client[1]}".encode()
    if text.startswith("echo "):
        return text[5:].encode()
    return None


@dataclass(frozen=True)
class Dial:
    request: str
    protocol: str
    host: str
    port: int
    tries: int


def parse_dial(query: dict[str, str]) -> Dial:
    """The parameters of /dial, as the k8s e2e tests send them."""
    protocol = query.get("protocol", "http")
    if protocol not in ("http", "udp"):
        raise BadRequest(f"unsupported protocol {protocol!r} (http or udp)")
    host = query.get("host", "")
    try:
        socket.inet_aton(host)  # an IP: name lookups would use the root namespace's resolver
        port, tries = int(query.get("port", "")), int(query.get("tries", "1"))
    except (OSError, ValueError):
        raise BadRequest("host must be an IPv4 address, port and tries numbers") from None
    if not 0 < port < 65536 or not 0 < tries <= MAX_TRIES:
        raise BadRequest(f"port must be 1-65535 and tries 1-{MAX_TRIES}")
    return Dial(query.get("request", "hostname"), protocol, host, port, tries)


def dial_json(responses: list[str], errors: list[str]) -> bytes:
    """agnhost's /dial answer: {"responses": [...]} plus "errors" when some try failed."""
    out: dict[str, list[str]] = {"responses": responses}
    if errors:
        out["errors"] = errors
    return json.dumps(out, separators=(",", ":")).encode()  # compact, as agnhost (Go) writes it


async def _dial_http(ns: str, d: Dial) -> str:
    sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, (d.host, d.port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(f"GET /{d.request} HTTP/1.1\r\nHost: {d.host}:{d.port}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read(1 << 20)
        while chunk := await reader.read(1 << 20):
            data += chunk
    finally:
        writer.close()
    _head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionError("no HTTP response")
    return body.decode("utf-8", "replace")


async def _dial_udp(ns: str, d: Dial) -> str:
    sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        sock.connect((d.host, d.port))
        await loop.sock_sendall(sock, d.request.encode())
        return (await loop.sock_recv(sock, 65536)).decode("utf-8", "replace")
    finally:
        sock.close()


async def dial(ns: str, d: Dial) -> bytes:
    """Ask another pod, from inside namespace `ns` (so it sees this pod's address)."""
    responses: list[str] = []
    errors: list[str] = []
    for _ in range(d.tries):
        try:
            attempt = _dial_http(ns, d) if d.protocol == "http" else _dial_udp(ns, d)
            responses.append(await asyncio.wait_for(attempt, DIAL_TIMEOUT))
        except asyncio.TimeoutError:
            errors.append(f"{d.protocol} {d.host}:{d.port}: timed out after {DIAL_TIMEOUT:g} s")
        except OSError as e:
            errors.append(f"{d.protocol} {d.host}:{d.port}: {os.strerror(e.errno) if e.errno else e}")
    return dial_json(responses, errors)


def head_end(data: bytes | bytearray) -> int:
    """Where the request head ends (just after its empty line), or -1 while it is incomplete.

    Lines end in CRLF or, from nc, bare LF; a head is its lines up to the first empty one.
    """
    if data[:2] == b"\r\n":
        return 2
    if data[:1] == b"\n":
        return 1
    ends = [at + len(mark) for mark in (b"\n\r\n", b"\n\n") if (at := data.find(mark)) >= 0]
    return min(ends) if ends else -1


@dataclass(frozen=True)
class LargeAnswer:
    """/large: `size` bytes after `head`, written no faster than the client reads them."""
    head: bytes
    size: int


@dataclass(frozen=True)
class DialAnswer:
    """/dial: another pod is asked first (see dial); its JSON is the body (not for HEAD)."""
    dial: Dial
    with_body: bool = True


def respond(pod: str, workload: str, head: bytes, client: Address,
            files: static.View | None = None) -> bytes | LargeAnswer | DialAnswer:
    """The answer to a request head: its bytes, or what the caller must do for /large and /dial.
    `files`: an http container's document root, when a volume is mounted there."""
    try:
        req = parse_request(head)
        if req.method not in ("GET", "HEAD"):
            return response(405, b"405 method not allowed\n")
        if workload == "http" and files is not None:
            status, body, ctype, headers = static.answer(files, req.path)
            return response_head(status, len(body), ctype, headers) + (body if req.method == "GET" else b"")
        if workload == "http" and req.path == "/large":
            n = large_size(req.query)
            head_only = response_head(200, n, "application/octet-stream")
            return LargeAnswer(head_only, n) if req.method == "GET" and n > 0 else head_only
        if workload == "http":
            status, body, ctype = 200, welcome_page(pod), "text/html"
        elif req.path == "/dial":
            return DialAnswer(parse_dial(req.query), req.method == "GET")
        else:
            status, body = echo_answer(pod, req, client)
            ctype = "text/plain; charset=utf-8"
    except BadRequest as e:
        return response(400, f"{e}\n".encode())
    return response_head(status, len(body), ctype) + (body if req.method == "GET" else b"")


class UdpEcho(asyncio.DatagramProtocol):
    """The echo workload's UDP side (agnhost's --udp-port)."""

    def __init__(self, pod: str):
        self.pod = pod
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        reply = udp_answer(self.pod, data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable for an earlier reply: not our problem
