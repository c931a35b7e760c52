#!/usr/bin/env python3
"""Self-test of scripts/delay_relay.py on loopback (no namespaces, no root, ~15 s, light CPU).

    python3 scripts/delay_relay_test.py

Checks: round trip grows by --delay-ms, bytes arrive intact and in order, half-close is passed
on after pending data, many concurrent connections, a refused or resetting target closes the
client, the user-space rate limit, and SIGTERM with open connections exits 0 promptly.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time

RELAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delay_relay.py")
failures = 0


def check(ok: bool, what: str) -> None:
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)
    failures += 0 if ok else 1


def echo_server() -> int:
    """Echo each connection until EOF, then send b'BYE' and close. Returns the port."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.sendall(b"BYE")

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def start_relay(target_port: int, delay_ms: float, *extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, RELAY, "--listen", "127.0.0.1:0",
                             "--connect", f"127.0.0.1:{target_port}", "--delay-ms", str(delay_ms), *extra],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("relay ready 127.0.0.1:"), line
    port = int(line.split()[2].rsplit(":", 1)[1])
    return proc, port


def stop_relay(proc: subprocess.Popen) -> tuple[int | None, float]:
    t0 = time.monotonic()
    proc.terminate()
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    return code, time.monotonic() - t0


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = s.recv(n - len(out))
        if not data:
            break
        out += data
    return bytes(out)


def median_rtt(port: int, count: int = 15) -> float:
    with connect(port) as s:
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            s.sendall(b"x")
            assert recv_exact(s, 1) == b"x"
            samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def read_all(s: socket.socket) -> bytes:
    out = bytearray()
    while True:
        data = s.recv(65536)
        if not data:
            return bytes(out)
        out += data


def main() -> int:
    echo = echo_server()
    base = median_rtt(echo)
    for delay in (20, 80):
        proc, port = start_relay(echo, delay)
        rtt = median_rtt(port)
        check(abs(rtt - base - delay) < max(5.0, 0.1 * delay),
              f"delay {delay} ms: RTT {rtt:.2f} ms (direct {base:.2f} ms, added {rtt - base:.2f} ms)")
        stop_relay(proc)

    proc, port = start_relay(echo, 10)
    payload = os.urandom(3 * 1024 * 1024)
    with connect(port) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = read_all(s)
        sender.join()
    check(got == payload + b"BYE", f"3 MiB intact and in order, half-close passed on after the data ({len(got)} bytes)")

    results: list[bool] = []

    def one(i: int) -> None:
        msg = f"conn {i} ".encode() * 100
        with connect(port) as s:
            s.sendall(msg)
            s.shutdown(socket.SHUT_WR)
            results.append(read_all(s) == msg + b"BYE")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    check(len(results) == 64 and all(results),
          f"64 concurrent connections ({sum(results)} ok, {time.monotonic() - t0:.2f} s)")

    # Open connections, mid-conversation, then SIGTERM.
    held = [connect(port) for _ in range(5)]
    for s in held:
        s.sendall(b"hold")
    time.sleep(0.1)
    code, took = stop_relay(proc)
    check(code == 0 and took < 2.0, f"SIGTERM with 5 open connections: exit {code} in {took:.2f} s")
    for s in held:
        s.settimeout(3)
        try:
            read_all(s)
            ok = True
        except OSError:
            ok = True  # reset is fine too; hanging is not
        s.close()
    check(ok, "clients see close after SIGTERM")

    # Refused target: nothing listens on the port we reserve and close.
    tmp = socket.socket()
    tmp.bind(("127.0.0.1", 0))
    dead = tmp.getsockname()[1]
    tmp.close()
    proc, port = start_relay(dead, 0)
    with connect(port) as s:
        s.settimeout(5)
        t0 = time.monotonic()
        try:
            got = read_all(s)
        except OSError:
            got = b""
    check(got == b"" and time.monotonic() - t0 < 3, "refused target: client closed promptly")
    stop_relay(proc)

    # The target resets the connection: the client must not hang.
    rst = socket.socket()
    rst.bind(("127.0.0.1", 0))
    rst.listen(8)

    def reset_one() -> None:
        conn, _ = rst.accept()
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()

    threading.Thread(target=reset_one, daemon=True).start()
    proc, port = start_relay(rst.getsockname()[1], 20)
    with connect(port) as s:
        s.settimeout(5)
        s.sendall(b"hello")
        t0 = time.monotonic()
        try:
            read_all(s)
            how = "EOF"
        except ConnectionResetError:
            how = "reset"
        except OSError as err:
            how = repr(err)
    took = time.monotonic() - t0
    check(how == "reset" and took < 1, f"target reset: client sees {how} after {took:.3f} s")
    stop_relay(proc)
    rst.close()

    # User-space rate limit: 4000 kbit/s = 500 kB/s each way; 1 MB echoed takes ~2 s.
    proc, port = start_relay(echo, 0, "--rate-kbit", "4000")
    payload = os.urandom(1_000_000)
    with connect(port) as s:
        t0 = time.monotonic()
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = read_all(s)
        sender.join()
        took = time.monotonic() - t0
    check(got == payload + b"BYE" and 1.7 < took < 2.8, f"--rate-kbit 4000: 1 MB echoed in {took:.2f} s (expect ~2.0)")
    code, _ = stop_relay(proc)
    check(code == 0, "relay exit code 0")

    print(f"{'all passed' if failures == 0 else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
