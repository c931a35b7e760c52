#!/usr/bin/env python3
"""TCP relay that adds latency (and optionally a rate limit) in user space.

Used by scripts/remote_test.sh and scripts/bench_remote.sh because this kernel has no
`netem` qdisc. Python 3.11 standard library only.

    delay_relay.py --listen HOST:PORT --connect HOST:PORT --delay-ms D [--rate-kbit R]

Delay: every chunk read from one side is written to the other side at (arrival time + D/2),
in order. D/2 is added in EACH direction, so a request/response round trip through the relay
grows by D milliseconds (the relay's own overhead, well under a millisecond, comes on top).

Rate: with --rate-kbit R each direction is a token bucket of R kbit/s (bytes leave no faster
than R*1000/8 bytes per second after their delay; the bucket holds at most --burst-bytes).
Use it only where `tc tbf` is unavailable; tbf on a veth is more faithful.

Connections: any number, each with its own connection to the target. TCP_NODELAY is set on
both sockets so the relay itself adds no Nagle delay. A half-close (EOF) from one side is
passed on as a half-close to the other side once the data before it has been delivered (at its
delayed time); the pair is closed when both directions have ended. A reset or error on either
side resets both sides (a reset read from a peer takes effect at its delayed time, after the
data before it). Backpressure: at most --queue-chunks chunks (of up to 64 KiB) wait per
direction; beyond that the relay stops reading that side.

Prints exactly one line "relay ready LISTEN -> CONNECT delay D ms" to stdout (flushed) once it
is listening (LISTEN shows the bound port, so --listen HOST:0 works). SIGTERM / SIGINT close the
listener and every connection and exit 0 within a second. Connection logs go to stderr with -v.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import sys
import time

CHUNK = 64 * 1024
EOF = b""  # queue marker: peer half-closed
RESET = None  # queue marker: peer errored / reset


def parse_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        value = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return host, value


def fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def hard_close(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0), as the peer that failed did."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class TokenBucket:
    """Bytes per second with a bounded burst; `delay_for(n)` books n bytes, returns the wait."""

    def __init__(self, kbit: float, burst: int) -> None:
        self.rate = kbit * 1000.0 / 8.0  # bytes per second
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def delay_for(self, n: int) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.one_way = args.delay_ms / 2000.0  # seconds, each direction
        self.connections: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.next_id = 0

    def log(self, msg: str) -> None:
        if self.args.verbose:
            print(f"relay: {msg}", file=sys.stderr, flush=True)

    async def pump_in(self, reader: asyncio.StreamReader, queue: asyncio.Queue) -> None:
        """Read one side; queue (deliver_at, chunk). Ends with an EOF or RESET marker."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + self.one_way, data if data else EOF))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time() + self.one_way, RESET))

    async def pump_out(self, queue: asyncio.Queue, writer: asyncio.StreamWriter,
                       bucket: TokenBucket | None) -> bool:
        """Deliver queued chunks at their time. True on a clean half-close, False on reset."""
        loop = asyncio.get_running_loop()
        while True:
            deliver_at, data = await queue.get()
            wait = deliver_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is RESET:
                return False
            if data == EOF:
                if writer.can_write_eof():
                    writer.write_eof()
                await writer.drain()
                return True
            if bucket is None:
                writer.write(data)
            else:
                for i in range(0, len(data), 4096):
                    piece = data[i:i + 4096]
                    pause = bucket.delay_for(len(piece))
                    if pause > 0:
                        await asyncio.sleep(pause)
                    writer.write(piece)
            await writer.drain()

    async def direction(self, reader, writer, name: str) -> bool:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.args.queue_chunks)
        bucket = TokenBucket(self.args.rate_kbit, self.args.burst_bytes) if self.args.rate_kbit else None
        reading = asyncio.create_task(self.pump_in(reader, queue))
        try:
            return await self.pump_out(queue, writer, bucket)
        except (ConnectionError, OSError) as err:
            self.log(f"{name}: write failed: {err!r}")
            return False
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    async def handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.next_id += 1
        cid = self.next_id
        peer = c_writer.get_extra_info("peername")
        self.writers.add(c_writer)
        nodelay(c_writer)
        task = asyncio.current_task()
        self.connections.add(task)
        s_writer = None
        pending: set[asyncio.Task] = set()
        try:
            host, port = self.args.connect
            try:
                s_reader, s_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self.args.connect_timeout)
            except (OSError, asyncio.TimeoutError) as err:
                self.log(f"#{cid} {peer}: connect {fmt_addr(host, port)} failed: {err!r}")
                return
            self.writers.add(s_writer)
            nodelay(s_writer)
            self.log(f"#{cid} {peer}: open")
            up = asyncio.create_task(self.direction(c_reader, s_writer, f"#{cid} up"))
            down = asyncio.create_task(self.direction(s_reader, c_writer, f"#{cid} down"))
            pending = {up, down}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.exception() is not None or not t.result() for t in done):
                    for t in pending:  # a reset or error: tear the pair down now
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    for w in (c_writer, s_writer):
                        hard_close(w)
                    break
            self.log(f"#{cid} {peer}: closed")
        except asyncio.CancelledError:
            pass  # shutdown; swallowed so asyncio's stream callback does not log it
        finally:
            for t in pending:
                t.cancel()
            for w in (c_writer, s_writer):
                if w is None:
                    continue
                self.writers.discard(w)
                w.close()
            self.connections.discard(task)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host, port = self.args.listen
        server = await asyncio.start_server(self.handle, host, port, reuse_address=True, backlog=128)
        bound = server.sockets[0].getsockname()
        listen = fmt_addr(host, bound[1])
        print(f"relay ready {listen} -> {fmt_addr(*self.args.connect)} delay {self.args.delay_ms:g} ms",
              flush=True)
        await stop.wait()
        server.close()
        for w in list(self.writers):
            w.transport.abort()
        for t in list(self.connections):
            t.cancel()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=1.0)
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=parse_addr, required=True, metavar="HOST:PORT")
    p.add_argument("--connect", type=parse_addr, required=True, metavar="HOST:PORT")
    p.add_argument("--delay-ms", type=float, required=True,
                   help="added round-trip delay; D/2 is added in each direction")
    p.add_argument("--rate-kbit", type=float, default=0,
                   help="per-direction rate limit in kbit/s (0 = none; prefer tc tbf)")
    p.add_argument("--burst-bytes", type=int, default=16 * 1024, help="token bucket size (default 16 KiB)")
    p.add_argument("--queue-chunks", type=int, default=256, help="chunks queued per direction before backpressure")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to reach the target")
    p.add_argument("-v", "--verbose", action="store_true", help="log connections to stderr")
    args = p.parse_args()
    if args.delay_ms < 0 or args.rate_kbit < 0:
        p.error("--delay-ms and --rate-kbit must be >= 0")
    try:
        return asyncio.run(Relay(args).run())
    except OSError as err:
        print(f"relay: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
