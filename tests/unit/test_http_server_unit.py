"""The agent's HTTP serving (lab.workloads.http_server) on a loopback socket of this process: no root,
no namespace. Answered on the spot when the request is in, through an asyncio connection when not."""
from __future__ import annotations

import asyncio
import socket

import pytest

from lab.workloads import http_server, servers

PAGE = servers.welcome_page("web-1")


def listening() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    s.setblocking(False)
    return s


async def exchange(port: int, *pieces: bytes, pause: float = 0.0, shut: bool = False,
                   read_slowly: bool = False) -> bytes:
    """Send the pieces (pausing between them), optionally half-close, then read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()
        if shut:
            writer.write_eof()
        data = b""
        while chunk := await reader.read(65536):
            data += chunk
            if read_slowly:
                await asyncio.sleep(0.001)
        return data
    finally:
        writer.close()


def serve(workload: str, scenario):
    """Run scenario(port, listener) against a listener of a pod named web-1 running `workload`."""
    async def main():
        sock = listening()
        listener = http_server.HttpListener(sock, "web-1", workload, "unused-netns")
        try:
            return await asyncio.wait_for(scenario(sock.getsockname()[1], listener), 20)
        finally:
            listener.close()
    return asyncio.run(main())


def test_a_whole_request_is_answered_on_the_spot(monkeypatch: pytest.MonkeyPatch) -> None:
    handed = []
    monkeypatch.setattr(http_server.HttpListener, "hand_over", lambda self, conn, proto: handed.append(proto))

    async def main():
        sock = listening()
        # The requests are in before the listener accepts, as with a client that sends as soon
        # as it is connected (the kernel completes handshakes without us).
        clients = [socket.create_connection(sock.getsockname()) for _ in range(50)]
        for c in clients:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.setblocking(False)
        listener = http_server.HttpListener(sock, "web-1", "http", "unused-netns")
        loop = asyncio.get_running_loop()
        try:
            answers = []
            for c in clients:
                data = b""
                while chunk := await asyncio.wait_for(loop.sock_recv(c, 65536), 10):
                    data += chunk
                answers.append(data)
            return answers
        finally:
            listener.close()
            for c in clients:
                c.close()
    answers = asyncio.run(main())
    assert answers == [servers.response_head(200, len(PAGE), "text/html") + PAGE] * 50
    assert handed == []   # no asyncio connection was needed


def test_a_request_in_pieces_is_answered_too() -> None:
    async def scenario(port, _listener):
        return await exchange(port, b"GET /clie", b"ntip HTTP/1.1\r\n", b"Host: x\r\n\r\n", pause=0.05)
    answer = serve("echo", scenario)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body.startswith(b"127.0.0.1:")


def test_a_target_urlsplit_rejects_is_a_bad_request_and_the_next_client_is_served() -> None:
    async def scenario(port, _listener):
        bad = await exchange(port, b"GET //[x HTTP/1.1\r\nHost: x\r\n\r\n")
        good = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return bad, good
    bad, good = serve("http", scenario)
    assert bad.startswith(b"HTTP/1.1 400 ") and b"bad request target" in bad
    assert good.endswith(PAGE)


def test_a_request_that_breaks_the_server_costs_its_socket_not_the_listener(monkeypatch) -> None:
    """A bug in answering one request closes that client's socket (no fd kept) and logs it."""
    def broken(*_args):
        raise RuntimeError("boom")
    monkeypatch.setattr(http_server, "respond", broken)

    async def scenario(port, _listener):
        return await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert serve("http", scenario) == b""   # closed without an answer, not left hanging


def test_eof_before_the_head_ends_is_a_bad_request() -> None:
    async def scenario(port, _listener):
        return await exchange(port, b"GET / HTTP/1.1\r\n", shut=True)
    answer = serve("http", scenario)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b"connection closed before the request ended\n")


def test_a_head_too_large_is_a_bad_request() -> None:
    async def scenario(port, _listener):
        return await exchange(port, b"GET / HTTP/1.1\r\n", b"X-Filler: " + b"y" * servers.MAX_HEAD, pause=0.05)
    assert serve("http", scenario).endswith(b"request head too large\n")


def test_a_silent_client_is_closed_after_the_head_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "HEAD_TIMEOUT", 0.2)

    async def scenario(port, _listener):
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await exchange(port)
        return answer, loop.time() - started
    answer, took = serve("http", scenario)
    assert answer == b"" and 0.15 < took < 5


def test_large_follows_the_reader() -> None:
    async def scenario(port, _listener):
        return await exchange(port, b"GET /large?bytes=3000000 HTTP/1.1\r\n\r\n", read_slowly=True)
    head, _, body = serve("http", scenario).partition(b"\r\n\r\n")
    assert b"Content-Length: 3000000" in head and len(body) == 3000000 and set(body) == {ord("x")}


def test_a_closed_listener_accepts_nothing_more() -> None:
    async def scenario(port, listener):
        first = await exchange(port, b"GET / HTTP/1.0\n\n")
        listener.close()
        listener.close()   # twice is fine: pods are stopped by more than one path
        with pytest.raises(ConnectionRefusedError):
            await exchange(port, b"GET / HTTP/1.0\n\n")
        return first
    assert serve("http", scenario).endswith(PAGE)
