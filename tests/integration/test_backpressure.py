"""Slow readers: the proxy applies backpressure instead of buffering."""
import hashlib
import os
import select
import ssl
import threading
import time

from sdlib import BlockStream, tls_connect, peer_of

PUSH = 256 << 20
# sanitizer builds keep freed memory in quarantine: allow more there
RSS_BOUND_KIB = (64 if os.environ.get("STEELDOOR_SAN") == "1" else 16) * 1024
STALL_S = 2.0


def send_close_notify(s, timeout=10):
    """Non-blocking unwrap: sends our close_notify without waiting for the peer's."""
    s.setblocking(False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s.unwrap()
            return
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            select.select([], [s], [], 0.2)
    raise AssertionError("could not send close_notify")


def test_client_pushes_into_non_reading_backend(steeldoor, backends, good_ctx):
    go = threading.Event()

    def lazy_reader(conn, backend):
        go.wait(120)
        h = hashlib.sha256()
        n = 0
        conn.settimeout(30)
        while True:
            d = conn.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        backend.results.append((n, h.hexdigest()))

    b = backends(lazy_reader)
    sd = steeldoor(target=b.target, workers=1)
    seed = os.urandom(1 << 20)
    s = tls_connect(good_ctx, sd.port)
    peer = peer_of(s)
    try:
        assert b.wait_count(1, 5)
        time.sleep(0.3)
        base = sd.rss_kib()
        peak = base          # while the backend does not read
        peak_flow = base     # after it starts reading again
        s.setblocking(False)
        h = hashlib.sha256()
        gen = BlockStream(seed, PUSH).blocks()
        cur = memoryview(b"")
        sent = 0
        last = time.monotonic()
        t0 = time.monotonic()
        stalled_at = None
        last_rss = 0
        while sent < PUSH:
            now = time.monotonic()
            if now - last_rss > 0.1:
                if stalled_at is None:
                    peak = max(peak, sd.rss_kib())
                else:
                    peak_flow = max(peak_flow, sd.rss_kib())
                last_rss = now
            if stalled_at is None and now - last > STALL_S:
                stalled_at = sent
                # writer is blocked: hold it there a bit longer while sampling RSS
                for _ in range(10):
                    peak = max(peak, sd.rss_kib())
                    time.sleep(0.1)
                go.set()
            assert now - t0 < 90, "push did not finish (sent %d)" % sent
            if not cur:
                blk = next(gen)
                h.update(blk)
                cur = memoryview(blk)
            try:
                n = s.send(cur)
                cur = cur[n:]
                sent += n
                last = time.monotonic()
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [s], [], 0.2)
        send_close_notify(s)
    finally:
        go.set()
    assert stalled_at is not None, "the client was never blocked: %d MiB accepted with a backend that does not read" % (PUSH >> 20)
    assert stalled_at < 128 << 20, "client pushed %d MiB before blocking" % (stalled_at >> 20)
    assert peak - base < RSS_BOUND_KIB, "steeldoor RSS grew by %d KiB (base %d, peak %d) while the backend did not read" % (
        peak - base, base, peak)
    if os.environ.get("STEELDOOR_SAN") != "1":  # ASan's quarantine keeps freed buffers
        assert peak_flow - base < RSS_BOUND_KIB, "steeldoor RSS grew by %d KiB while streaming" % (
            peak_flow - base)
    # everything written arrives once the backend reads: close our side
    s.close()
    res = b.wait_results(1, timeout=30)
    assert res, "backend did not finish reading (errors %s)" % b.errors
    assert res[0][0] == PUSH, "backend got %d of %d bytes" % (res[0][0], PUSH)
    assert res[0][1] == h.hexdigest()
    print("stalled after %d MiB, rss base %d KiB peak %d KiB" % (stalled_at >> 20, base, peak))


def test_backend_pushes_into_non_reading_client(steeldoor, backends, good_ctx):
    seed = os.urandom(1 << 20)
    progress = {"sent": 0, "hash": None}

    def pusher(conn, backend):
        conn.settimeout(120)
        h = hashlib.sha256()
        for blk in BlockStream(seed, PUSH).blocks():
            h.update(blk)
            view = memoryview(blk)
            while view:
                n = conn.send(view)
                view = view[n:]
                progress["sent"] += n
        progress["hash"] = h.hexdigest()
        conn.shutdown(1)
        try:
            conn.recv(1)
        except OSError:
            pass

    b = backends(pusher)
    sd = steeldoor(target=b.target, workers=1)
    s = tls_connect(good_ctx, sd.port, timeout=30)
    peer = peer_of(s)
    assert b.wait_count(1, 5)
    time.sleep(0.2)
    base = sd.rss_kib()
    peak = base
    t0 = time.monotonic()
    last_val, last_change = -1, time.monotonic()
    stalled_at = None
    while time.monotonic() - t0 < 60:
        peak = max(peak, sd.rss_kib())
        v = progress["sent"]
        if v != last_val:
            last_val, last_change = v, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            stalled_at = v
            break
        if v >= PUSH:
            break
        time.sleep(0.1)
    assert stalled_at is not None, "backend was never blocked: sent %d MiB to a client that does not read" % (
        progress["sent"] >> 20)
    assert stalled_at < 128 << 20, "backend pushed %d MiB before blocking" % (stalled_at >> 20)
    assert peak - base < RSS_BOUND_KIB, "steeldoor RSS grew by %d KiB (base %d, peak %d)" % (peak - base, base, peak)
    # now read everything and check it
    h = hashlib.sha256()
    n = 0
    while n < PUSH:
        d = s.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    assert n == PUSH, "client got %d of %d" % (n, PUSH)
    assert h.hexdigest() == progress["hash"]
    s.close()
    e = sd.wait_conn(peer, timeout=10)
    assert e["bytes_out"] == PUSH, e
    print("stalled after %d MiB, rss base %d KiB peak %d KiB" % (stalled_at >> 20, base, peak))
