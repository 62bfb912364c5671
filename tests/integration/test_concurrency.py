"""1000 simultaneous connections through the proxy."""
import asyncio
import os
import resource
import time

import pytest

import sdlib

N = 1000
DEADLINE_S = 60


async def _run(port, ctx, n):
    hold = asyncio.Event()
    opened = 0
    sem = asyncio.Semaphore(100)  # bound concurrent handshakes, not open conns
    results = {}

    async def one(i):
        nonlocal opened
        async with sem:
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 20)
        opened += 1
        if opened == n:
            hold.set()
        try:
            await asyncio.wait_for(hold.wait(), DEADLINE_S)
            msg = b"conn-%d-%s\n" % (i, os.urandom(8).hex().encode())
            w.write(msg)
            await w.drain()
            got = await asyncio.wait_for(r.readexactly(len(msg)), 20)
            results[i] = got == msg
            # keep all open until every one has echoed
            await asyncio.wait_for(all_done.wait(), DEADLINE_S)
        finally:
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 5)
            except Exception:
                pass

    all_done = asyncio.Event()

    async def watcher():
        while len(results) < n:
            await asyncio.sleep(0.05)
        all_done.set()

    wt = asyncio.ensure_future(watcher())
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), DEADLINE_S)
    finally:
        wt.cancel()
    return results


def test_1000_concurrent_connections(steeldoor, good_ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * N + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * N), hard))
    be = sdlib.SelectEchoBackend()
    try:
        sd = steeldoor(target=be.target, workers=2)
        t = time.monotonic()
        results = asyncio.run(_run(sd.port, good_ctx, N))
        took = time.monotonic() - t
        assert len(results) == N, "only %d of %d connections echoed" % (len(results), N)
        assert all(results.values()), "%d echoes were wrong" % sum(1 for v in results.values() if not v)
        assert be.peak_active >= N, "backend saw at most %d simultaneous connections" % be.peak_active
        print("1000 conns in %.1fs" % took)
        # all 1000 logged ok
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ok = [e for e in sd.conn_logs() if e.get("result") == "ok"]
            if len(ok) >= N:
                break
            time.sleep(0.2)
        assert len(ok) == N, "%d ok conn lines for %d connections" % (len(ok), N)
        assert sd.running()
    finally:
        be.close()
