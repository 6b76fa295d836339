"""The built-in HTTP workloads (http, echo) of every pod, served from the agent's one asyncio loop.

`podlab check` on 100 pods sends ~10,000 requests in a second or two, each on a connection of
its own, so what a connection costs here is most of the agent's work. asyncio's streams (a
transport, a stream reader and writer and a task per connection) cost several times what the
kernel does. So a listening socket's reader accepts every connection waiting and, because a
client sends its request straight after connecting, the request is usually there already: it is
read, answered and the connection closed on the spot (accept, recv, send, close). Only the rest
becomes an asyncio connection (HttpConnection): a request still on its way, an answer bigger than
the socket takes at once (/large), and /dial, which asks another pod first.
"""
from __future__ import annotations

import asyncio
import errno
import socket
import sys

from lab.workloads.servers import (MAX_HEAD, Address, DialAnswer, LargeAnswer, dial, head_end, respond, response,
                                  response_head)
from lab.workloads.static import View

ACCEPT_BATCH = 256        # connections accepted per wake-up before other work gets a turn
ACCEPT_PAUSE = 1.0        # out of descriptors or memory: let the kernel hold the queue a while, as asyncio does
HEAD_TIMEOUT = 10.0       # a client that connects and says nothing must not hold a connection forever
REQUEST_TIMEOUT = 120.0   # nor one that never reads a large answer
CHUNK = b"x" * 65536
TOO_MANY = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class HttpListener:
    """One listening socket of one pod's http or echo container."""

    def __init__(self, sock: socket.socket, pod: str, workload: str, ns: str, files: View | None = None):
        self.sock = sock
        self.pod, self.workload, self.ns = pod, workload, ns
        self.files = files    # an http container's document root, when a volume is mounted there
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.loop.add_reader(sock.fileno(), self.accept)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, client = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in TOO_MANY:
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(ACCEPT_PAUSE, self.resume)
                    return
                continue   # e.g. ECONNABORTED: that client gave up; the next one may be fine
            try:
                self.serve(conn, client)
            except Exception as e:   # one client's request must not cost the others, nor a socket
                conn.close()
                print(f"podlab agent: {self.pod}: request from {client[0]} failed: {e!r}", file=sys.stderr)

    def resume(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self.accept)

    def serve(self, conn: socket.socket, client: Address) -> None:
        """Answer at once if the whole request is in (the accepted socket is blocking: MSG_DONTWAIT)."""
        try:
            data = conn.recv(MAX_HEAD, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            data = b""
        except OSError:
            conn.close()
            return
        end = head_end(data) if data else -1
        if end >= 0:
            answer = respond(self.pod, self.workload, data[:end], client, self.files)
            if isinstance(answer, bytes):
                try:
                    sent = conn.send(answer, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    conn.close()
                    return
                if sent == len(answer):
                    conn.close()
                    return
                answer = answer[sent:]
            self.hand_over(conn, HttpConnection(self, client, answer=answer))
        else:
            self.hand_over(conn, HttpConnection(self, client, received=data))

    def hand_over(self, conn: socket.socket, protocol: HttpConnection) -> None:
        conn.setblocking(False)
        def failed(task: asyncio.Task) -> None:
            if task.cancelled() or task.exception() is not None:
                conn.close()
        task = self.loop.create_task(self.loop.connect_accepted_socket(lambda: protocol, conn))
        task.add_done_callback(failed)


class HttpConnection(asyncio.Protocol):
    """A connection that could not be answered on the spot: its request is read, or its answer
    written, as the client sends and reads."""

    def __init__(self, listener: HttpListener, client: Address, received: bytes = b"",
                 answer: bytes | LargeAnswer | DialAnswer | None = None):
        self.listener = listener
        self.client = client
        self.received = bytearray(received)
        self.answer = answer
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self.left = 0            # /large: bytes still to write
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport   # type: ignore[assignment]
        loop = self.listener.loop
        if self.answer is None:
            self.timer = loop.call_later(HEAD_TIMEOUT, transport.close)
            self.data_received(b"")
        else:
            self.timer = loop.call_later(REQUEST_TIMEOUT, transport.abort)
            self.start(self.answer)

    def data_received(self, data: bytes) -> None:
        if self.answer is not None:
            return   # what follows the head (a body, a second request) is not read: Connection: close
        self.received += data
        end = head_end(self.received)
        if end >= 0:
            self.begin(respond(self.listener.pod, self.listener.workload, bytes(self.received[:end]), self.client,
                               self.listener.files))
        elif len(self.received) >= MAX_HEAD:
            self.begin(response(400, b"request head too large\n"))

    def eof_received(self) -> bool:
        if self.answer is None:
            self.begin(response(400, b"connection closed before the request ended\n"))
        return True   # the answer still goes out; we close when it is written

    def begin(self, answer: bytes | LargeAnswer | DialAnswer) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.listener.loop.call_later(REQUEST_TIMEOUT, self.transport.abort)   # type: ignore[union-attr]
        self.start(answer)

    def start(self, answer: bytes | LargeAnswer | DialAnswer) -> None:
        self.answer = answer
        transport = self.transport
        assert transport is not None
        if isinstance(answer, bytes):
            transport.write(answer)
            transport.close()   # after the buffer is written
        elif isinstance(answer, LargeAnswer):
            transport.write(answer.head)
            self.left = answer.size
            self.pump()
        else:
            self.task = self.listener.loop.create_task(dial(self.listener.ns, answer.dial))
            self.task.add_done_callback(self.dialled)

    def pump(self) -> None:
        """Write /large's bytes while the transport wants more (flow control: pause_writing)."""
        transport = self.transport
        while self.left > 0 and not self.paused and transport is not None and not transport.is_closing():
            transport.write(CHUNK[:self.left])
            self.left -= len(CHUNK)
        if self.left <= 0 and transport is not None:
            transport.close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def dialled(self, task: asyncio.Task) -> None:
        if task.cancelled() or self.transport is None or self.transport.is_closing():
            return
        if task.exception() is not None:
            self.transport.abort()
            return
        body: bytes = task.result()
        head = response_head(200, len(body), "application/json")
        self.transport.write(head + body if self.answer.with_body else head)   # type: ignore[union-attr]
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        self.transport = None
