#!/usr/bin/env python3
"""Floods an admin port and probes /readyz meanwhile (driven by benches/slowloris.sh).

flood ADDR N SECONDS: holds N slowloris connections (an unfinished request head, one more
  header line per connection every second; a closed connection is reopened) for SECONDS.
huge ADDR N SECONDS: N connections each send up to 380 KB of an unfinished header, then hold.
probe ADDR SECONDS: GET /readyz on a fresh connection every 20 ms (as kubelet does, 2 s
  timeout); prints count, errors, p50/p99/max ms.
"""
import asyncio, socket, sys, time


async def slow_client(host, port, stop, stats, huge):
    while time.monotonic() < stop:
        try:
            r, w = await asyncio.open_connection(host, port)
            stats["opened"] += 1
            w.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            if huge:
                chunk = b"X-Pad: " + b"a" * 4089 + b"\r\n"  # 4 KiB per line
                for _ in range(95):  # ~380 KB
                    w.write(chunk)
                    await w.drain()
            while time.monotonic() < stop:
                await asyncio.sleep(1)
                w.write(b"X-a: b\r\n")
                await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            stats["closed"] += 1
            await asyncio.sleep(0.1)


async def flood(addr, n, seconds, huge):
    host, port = addr.rsplit(":", 1)
    stop = time.monotonic() + seconds
    stats = {"opened": 0, "closed": 0}
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(slow_client(host, int(port), stop, stats, huge)))
        if i % 100 == 99:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"flood: {n} clients, {stats['opened']} connections opened, {stats['closed']} closed by the server")


def probe(addr, seconds):
    host, port = addr.rsplit(":", 1)
    lat, errors = [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.monotonic()
        try:
            s = socket.create_connection((host, int(port)), timeout=2)
            s.settimeout(2)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            s.close()
            if not data.startswith(b"HTTP/1.1 200"):
                raise OSError("status: " + data[:20].decode(errors="replace"))
            lat.append((time.monotonic() - t0) * 1000)
        except OSError:
            errors += 1
        time.sleep(0.02)
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")
    print(f"probe: {len(lat) + errors} GET /readyz, {errors} errors/timeouts (2 s), "
          f"p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, max {lat[-1] if lat else float('nan'):.2f} ms")


if __name__ == "__main__":
    mode, addr = sys.argv[1], sys.argv[2]
    if mode == "probe":
        probe(addr, float(sys.argv[3]))
    else:
        asyncio.run(flood(addr, int(sys.argv[3]), float(sys.argv[4]), mode == "huge"))
