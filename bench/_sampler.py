"""A sampling profiler for a bench's daemon: a thread that looks at the main thread's stack every
`interval` seconds and counts each stack seen, written as collapsed stacks ("a;b;c COUNT", the
input of flame graph tools) when stopped.

Samples are taken only while the main thread holds no lock the sampler needs: the figures are
those of Python code, with time in C code (gRPC's core, SQLite) credited to the Python frame that
called it.
"""

from __future__ import annotations

import collections
import pathlib
import sys
import threading
import time

WRITE_EVERY_S = 10.0


class Sampler:
    def __init__(self, out: pathlib.Path, interval: float = 0.005, *, since: float = 0.0) -> None:
        self._out = out
        self._interval = interval
        self._since = since  # wall-clock time before which samples are not kept
        self._counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reset(self) -> None:
        """Forgets the samples so far: what is written from now on is one phase's."""
        self._counts = collections.Counter()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._write()

    def _write(self) -> None:
        lines = [f"{stack} {n}" for stack, n in self._counts.most_common()]
        self._out.write_text("\n".join(lines) + "\n")

    def _run(self) -> None:
        written = time.monotonic()
        while not self._stop.wait(self._interval):
            if time.monotonic() - written > WRITE_EVERY_S:  # a process killed keeps most of it
                self._write()
                written = time.monotonic()
            if time.time() < self._since:
                continue
            frame = sys._current_frames().get(self._main)
            names: list[str] = []
            while frame is not None:
                code = frame.f_code
                names.append(f"{pathlib.Path(code.co_filename).name}:{code.co_name}")
                frame = frame.f_back
            self._counts[";".join(reversed(names))] += 1


def top(path: pathlib.Path, n: int = 30) -> list[tuple[str, int, int]]:
    """The functions seen most in a collapsed-stack file: (function, samples it was on top,
    samples it was anywhere on the stack)."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        names = stack.split(";")
        own[names[-1]] += int(count)
        for name in set(names):
            anywhere[name] += int(count)
    return [(name, own[name], anywhere[name]) for name, _ in anywhere.most_common(n)]


if __name__ == "__main__":
    for name, mine, total in top(pathlib.Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2
                                 else 40):
        print(f"{total:7d} {mine:7d}  {name}")
