"""A socket standing in for systemd's NOTIFY_SOCKET in tests: a real AF_UNIX datagram socket
(a path, or an abstract name), and what was sent to it, each message with the time it came."""

from __future__ import annotations

import os
import pathlib
import secrets
import socket
import threading
import time


class NotifySocket:
    """Bound at once; a thread receives (so that a test can see when each message arrived,
    even while the sender's event loop is blocked). `env` is what systemd would set."""

    def __init__(self, path: pathlib.Path | None = None) -> None:
        self.name = str(path) if path is not None else f"@podium-test-{secrets.token_hex(8)}"
        address = self.name if path is not None else "\0" + self.name[1:]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.name}

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self._received.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        with self._lock:
            return [text for _, text in self._received]

    def timed(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._received)

    def assignments(self, name: str) -> list[str]:
        """Every value sent for `name` (READY, STATUS, ...), in order."""
        return [line.partition("=")[2] for text in self.messages() for line in text.split("\n")
                if line.partition("=")[0] == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        if not self.name.startswith("@"):
            with_path = pathlib.Path(self.name)
            if with_path.exists():
                os.unlink(with_path)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
