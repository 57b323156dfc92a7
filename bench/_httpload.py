"""An open-loop HTTP load generator for the benchmarks: GETs at a fixed rate, bounded in time and
count, with its outcome split into phases the caller names while it runs.

    python bench/_httpload.py --mode new|keepalive --rate 700 --target 10.231.7.11:8080 \
        --target 10.231.7.12:8080 [--seconds 600] [--most 1000000] [--timeout 2] [--path /] \
        [--answer-word 0]

It runs on uvloop when installed. Request i is due at start + i / rate, whatever happened to the
ones before (open loop: a slow answer never slows the rate down, as it would in a client that
waits for each answer); the targets take turns. A request that cannot start because --max-inflight
requests are still waiting is counted as `skipped`, never queued. Late starts are measured (how far
behind its due time each request started) so the caller can check the generator kept its rate.

Modes:
- `new`: one new connection per request (`Connection: close`).
- `keepalive`: HTTP/1.1 persistent connections, one idle pool per target, as HTTP clients keep
  them: a connection goes back to its pool after a complete response that does not announce
  `Connection: close`; one whose peer already closed it while idle is dropped before use
  (`stale_dropped`); a request sent on a reused connection that gets EOF or a reset before the
  first byte of a response is sent once more on a new connection, as RFC 9112 9.3.1 allows for
  an idempotent request, and counted as `retried_closed_keepalive` (its outcome is that of the
  second attempt). Responses announcing `Connection: close` are counted (`server_close`), and
  requests sent on a reused connection too (`reused`).

Every other error (refused, reset, EOF, a malformed response), a request not answered within
--timeout seconds (connect, retry and body included) and a status outside 2xx is a failed request.
The first word of a 2xx body (or word number --answer-word, counted from 0) is tallied
(`answers`: the update bench's replicas answer with their version first; "hello from <hostname>"
with --answer-word 2 tallies replicas), at most MAX_ANSWERS distinct words, with the wall-clock
time each word was first answered in the phase (`first_answers_unix_s`).

Control: stdin lines. `phase NAME` closes the current phase and starts NAME (a request belongs to
the phase it was due in); `rate R` sends R requests per second from now on (the schedule starts
again from the moment the line is read); `stop`, or EOF on stdin, ends the run: no new request
starts, those in flight finish (each within --timeout), and one JSON object goes to stdout: per
phase its counts, its failure kinds, up to MAX_SAMPLES failures with their wall-clock time,
target and error and as many requests answered in 1 s or more (when they started, target,
seconds), the achieved rate, and percentiles of latency and of late starts. SIGTERM and SIGINT
end the run the same way. The run also ends by itself after --seconds or --most requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_ANSWERS = 32
MAX_SAMPLES = 20
HEAD_LIMIT = 64 * 1024
TICK_S = 0.001
MAX_RATE = 20_000
BODY_LIMIT = 1024 * 1024


class EarlyClose(Exception):
    """The peer closed (EOF or reset) before any byte of a response arrived."""


class Failed(Exception):
    """A failed request: its kind ('status 503', 'refused', 'timeout', ...) and detail."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail or kind


def _millis(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


@dataclass(slots=True)
class Phase:
    name: str
    started: float  # wall clock
    started_mono: float
    ended_mono: float | None = None
    sent: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    reused: int = 0
    stale_dropped: int = 0
    server_close: int = 0
    new_connections: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    failed_by_target: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    first_answers: dict[str, float] = field(default_factory=dict)  # word -> wall clock
    samples: list[list[Any]] = field(default_factory=list)
    slow_samples: list[list[Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)

    def fail(self, target: str, err: Failed, when: float) -> None:
        self.failed += 1
        self.kinds[err.kind] += 1
        self.failed_by_target[target] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append([round(when, 3), target, err.detail[:160]])

    def answer(self, body: bytes, word_index: int = 0) -> None:
        words = body.split(maxsplit=word_index + 1)
        word = words[word_index].decode(errors="replace")[:40] if len(words) > word_index else "-"
        if word not in self.answers and len(self.answers) >= MAX_ANSWERS:
            word = "(other)"
        self.answers[word] += 1
        self.first_answers.setdefault(word, time.time())

    def report(self, now_mono: float) -> dict[str, Any]:
        seconds = (self.ended_mono or now_mono) - self.started_mono
        return {
            "phase": self.name,
            "started_unix_s": round(self.started, 3),
            "duration_s": round(seconds, 3),
            "sent_count": self.sent,
            "ok_count": self.ok,
            "failed_count": self.failed,
            "skipped_count": self.skipped,
            "retried_closed_keepalive_count": self.retried,
            "reused_count": self.reused,
            "stale_dropped_count": self.stale_dropped,
            "server_close_count": self.server_close,
            "new_connections_count": self.new_connections,
            "achieved_rate_per_s": round(self.sent / seconds, 1) if seconds > 0 else None,
            "failure_kinds": dict(self.kinds),
            "failed_by_target": dict(self.failed_by_target),
            "answers": dict(self.answers),
            "first_answers_unix_s": {w: round(t, 3) for w, t in self.first_answers.items()},
            "failure_samples": self.samples,
            "slow_samples": self.slow_samples,
            "latency_p50_ms": _millis(self.latencies, 0.50),
            "latency_p99_ms": _millis(self.latencies, 0.99),
            "latency_max_ms": _millis(self.latencies, 1.0),
            "answered_in_1s_or_more_count": sum(1 for x in self.latencies if x >= 1.0),
            "late_start_p99_ms": _millis(self.late, 0.99),
            "late_start_max_ms": _millis(self.late, 1.0),
        }


@dataclass(slots=True)
class Response:
    status: int
    keep: bool  # the connection may carry another request
    body: bytes


def _error_kind(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, ConnectionResetError):
        return "reset"
    if isinstance(err, BrokenPipeError):
        return "broken pipe"
    if isinstance(err, asyncio.IncompleteReadError):
        return "eof mid-response"
    if isinstance(err, OSError):
        return f"os error {err.errno}"
    return type(err).__name__


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: bytes) -> Response:
    """Sends `request` and reads one response. EarlyClose when the peer closed before any byte
    of the response; Failed for anything else that is not a well-formed response."""
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            raise EarlyClose() from None
        raise Failed("eof mid-response", f"EOF after {len(err.partial)} bytes") from None
    except asyncio.LimitOverrunError:
        raise Failed("bad response", "response head too long") from None
    except (ConnectionResetError, BrokenPipeError):
        # Nothing of a response was read (readuntil returns nothing partial with a reset).
        raise EarlyClose() from None
    except OSError as err:
        raise Failed(_error_kind(err), repr(err)) from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Failed("bad response", f"status line {lines[0][:60]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep = parts[0] == "HTTP/1.1" and "close" not in tokens
    try:
        if "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= BODY_LIMIT:
                raise Failed("bad response", f"content-length {length}")
            body = await reader.readexactly(length)
        elif "transfer-encoding" in headers:
            raise Failed("bad response", "chunked bodies are not read by this client")
        else:  # delimited by the close
            body = await reader.read(BODY_LIMIT)
            keep = False
    except asyncio.IncompleteReadError as err:
        raise Failed("eof mid-response", f"EOF after {len(err.partial)} body bytes") from None
    except ValueError:
        raise Failed("bad response", "content-length not a number") from None
    except OSError as err:
        raise Failed(_error_kind(err), repr(err)) from None
    return Response(status, keep, body)


class Generator:
    def __init__(self, *, mode: str, rate: float, targets: list[str], path: str,
                 timeout: float, max_inflight: int, answer_word: int = 0) -> None:
        self.mode = mode
        self.rate = rate
        self.rate_changed = False  # set by set_rate(); run() starts its schedule again
        self.answer_word = answer_word
        self.targets = targets
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.requests: dict[str, bytes] = {}
        for target in targets:
            connection = "Connection: close\r\n" if mode == "new" else ""
            self.requests[target] = (f"GET {path} HTTP/1.1\r\nHost: {target}\r\n"
                                     f"User-Agent: podium-bench\r\n{connection}\r\n").encode()
        self.pools: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {
            t: [] for t in targets}
        self.phases: list[Phase] = [Phase("start", time.time(), time.monotonic())]
        self.inflight: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()

    @property
    def phase(self) -> Phase:
        return self.phases[-1]

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.rate_changed = True

    def new_phase(self, name: str) -> None:
        now = time.monotonic()
        self.phase.ended_mono = now
        self.phases.append(Phase(name, time.time(), now))

    async def _connect(self, target: str, phase: Phase
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = target.rsplit(":", 1)
        phase.new_connections += 1
        try:
            return await asyncio.open_connection(host, int(port), limit=HEAD_LIMIT)
        except OSError as err:
            raise Failed(_error_kind(err), f"connect: {err!r}") from None

    async def _new(self, target: str, phase: Phase) -> Response:
        reader, writer = await self._connect(target, phase)
        try:
            try:
                return await exchange(reader, writer, self.requests[target])
            except EarlyClose:
                raise Failed("eof before response", "closed before any response byte") from None
        finally:
            writer.close()

    def _idle(self, target: str, phase: Phase
              ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        pool = self.pools[target]
        while pool:
            reader, writer = pool.pop()
            if reader.at_eof() or writer.is_closing() or reader.exception() is not None:
                phase.stale_dropped += 1  # seen closed while idle: never sent on
                writer.close()
                continue
            return reader, writer
        return None

    async def _keepalive(self, target: str, phase: Phase) -> Response:
        conn = self._idle(target, phase)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(target, phase)
        else:
            phase.reused += 1
        reader, writer = conn
        try:
            response = await exchange(reader, writer, self.requests[target])
        except EarlyClose:
            writer.close()
            if not reused:
                raise Failed("eof before response", "closed before any response byte") from None
            phase.retried += 1
            reader, writer = await self._connect(target, phase)
            try:
                response = await exchange(reader, writer, self.requests[target])
            except EarlyClose:
                writer.close()
                raise Failed("eof before response", "closed before any response byte (retry)"
                             ) from None
        except BaseException:
            writer.close()
            raise
        if response.keep and not self.stop.is_set():
            self.pools[target].append((reader, writer))
        else:
            if not response.keep:
                phase.server_close += 1
            writer.close()
        return response

    async def _one(self, target: str, phase: Phase) -> None:
        began = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                if self.mode == "new":
                    response = await self._new(target, phase)
                else:
                    response = await self._keepalive(target, phase)
            if not 200 <= response.status <= 299:
                raise Failed(f"status {response.status}")
        except Failed as err:
            phase.fail(target, err, time.time())
            return
        except TimeoutError:
            phase.fail(target, Failed("timeout", f"no answer within {self.timeout:g} s"),
                       time.time())
            return
        except Exception as err:  # anything unforeseen is a failure too, never a crash
            phase.fail(target, Failed(_error_kind(err), repr(err)), time.time())
            return
        phase.ok += 1
        took = time.monotonic() - began
        phase.latencies.append(took)
        if took >= 1.0 and len(phase.slow_samples) < MAX_SAMPLES:
            phase.slow_samples.append([round(time.time() - took, 3), target, round(took, 3)])
        phase.answer(response.body, self.answer_word)

    def _launch(self, target: str, late: float) -> None:
        phase = self.phase
        if len(self.inflight) >= self.max_inflight:
            phase.skipped += 1
            return
        phase.sent += 1
        phase.late.append(late)
        task = asyncio.get_running_loop().create_task(self._one(target, phase))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def run(self, seconds: float, most: int) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + seconds
        interval = 1.0 / self.rate
        i = 0
        base = 0  # the request due at `start`: the schedule starts again on a change of rate
        while not self.stop.is_set() and i < most:
            now = loop.time()
            if now >= end:
                break
            if self.rate_changed:
                self.rate_changed = False
                start, base, interval = now, i, 1.0 / self.rate
            due = start + (i - base) * interval
            if due > now:
                # Never less than a tick: the loop's timers have a millisecond's resolution,
                # and a shorter sleep returns at once (the loop would spin between requests).
                await asyncio.sleep(max(min(due, end) - now, TICK_S))
                continue
            while due <= now and i < most:
                self._launch(self.targets[i % len(self.targets)], now - due)
                i += 1
                due = start + (i - base) * interval
        self.stop.set()
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=self.timeout + 1)
        for task in self.inflight:
            task.cancel()
        for pool in self.pools.values():
            for _, writer in pool:
                writer.close()
            pool.clear()
        self.phase.ended_mono = time.monotonic()


async def _control(gen: Generator) -> None:
    """Reads stdin lines until `stop` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not gen.stop.is_set():
        line = (await reader.readline()).decode().strip()
        if not line or line == "stop":
            break
        command, _, name = line.partition(" ")
        if command == "phase" and name:
            gen.new_phase(name)
        elif command == "rate":
            try:
                rate = float(name)
            except ValueError:
                rate = 0.0
            if 0 < rate <= MAX_RATE:
                gen.set_rate(rate)
            else:
                print(f"ignored {line!r}: expected rate R with 0 < R <= {MAX_RATE}",
                      file=sys.stderr, flush=True)
    gen.stop.set()


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    gen = Generator(mode=args.mode, rate=args.rate, targets=args.target, path=args.path,
                    timeout=args.timeout, max_inflight=args.max_inflight,
                    answer_word=args.answer_word)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gen.stop.set)
    control = loop.create_task(_control(gen))
    try:
        await gen.run(args.seconds, args.most)
    finally:
        control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await control
    now = time.monotonic()
    return {"mode": args.mode, "rate_per_s": args.rate, "targets": args.target,
            "timeout_s": args.timeout, "phases": [p.report(now) for p in gen.phases]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--mode", choices=("new", "keepalive"), required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--target", action="append", required=True, help="HOST:PORT (repeatable)")
    p.add_argument("--path", default="/")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--most", type=int, default=1_000_000)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--max-inflight", type=int, default=2000)
    p.add_argument("--answer-word", type=int, default=0,
                   help="which word of a 2xx body is tallied (0: the first)")
    args = p.parse_args()
    if not (0 < args.rate <= MAX_RATE and 0 < args.seconds <= 3600 and 0 < args.most <= 10_000_000
            and 0 < args.timeout <= 60 and 0 < args.max_inflight <= 20_000
            and 0 <= args.answer_word <= 100):
        p.error(f"0 < --rate <= {MAX_RATE}, 0 < --seconds <= 3600, 0 < --most <= 10^7, "
                "0 < --timeout <= 60, 0 < --max-inflight <= 20000, 0 <= --answer-word <= 100")
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(amain(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
