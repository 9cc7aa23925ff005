"""Local ports and servers that are not Ray, for the address checks: a port nothing listens on,
a listener that answers with fixed bytes (or nothing), and one that passes the HTTP/2
greeting and then says nothing."""

from __future__ import annotations

import socket
import threading


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Listener:
    """A TCP server on 127.0.0.1 that accepts and then says ``reply`` (or nothing)."""

    def __init__(self, reply: bytes | None):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.reply = reply
        self.connections = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.reply is not None:
                connection.recv(1024)
                connection.sendall(self.reply)
                connection.close()

    def close(self):
        for connection in self.connections:
            connection.close()
        self.server.close()


class HTTP2Greeter(Listener):
    """Answers the HTTP/2 greeting (a SETTINGS frame and its acknowledgement) as any gRPC
    server does, then never says anything: not Ray, but it passes the greeting check."""

    def __init__(self):
        super().__init__(None)

    def _serve(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            connection.recv(1024)
            connection.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
