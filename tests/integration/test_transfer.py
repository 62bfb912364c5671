"""1 GiB each way, concurrently, through the proxy, with SHA-256 checks."""
import hashlib
import os
import select
import ssl
import threading
import time

import sdlib
from sdlib import BlockStream, tls_connect, peer_of

TOTAL = 1 << 30
BLOCK = 1 << 20
DEADLINE_S = 180 if os.environ.get("STEELDOOR_SAN") == "1" else 90


def source_sink_handler(total, seed):
    def handler(conn, backend):
        conn.settimeout(DEADLINE_S)
        tx = {}

        def sender():
            h = hashlib.sha256()
            n = 0
            for b in BlockStream(seed, total).blocks():
                h.update(b)
                conn.sendall(b)
                n += len(b)
            tx["hash"], tx["n"] = h.hexdigest(), n

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        h = hashlib.sha256()
        n = 0
        buf = bytearray(BLOCK)
        while n < total:
            k = conn.recv_into(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
        t.join(DEADLINE_S)
        backend.results.append({"rx_n": n, "rx_hash": h.hexdigest(), "tx_n": tx.get("n"),
                                "tx_hash": tx.get("hash")})
        # keep the connection until the client closes it
        conn.settimeout(10)
        try:
            conn.recv(1)
        except OSError:
            pass
    return handler


def test_1gib_each_way(steeldoor, backends, good_ctx):
    seed_up, seed_down = os.urandom(BLOCK), os.urandom(BLOCK)
    b = backends(source_sink_handler(TOTAL, seed_down))
    sd = steeldoor(target=b.target, workers=2)

    t0 = time.monotonic()
    s = tls_connect(good_ctx, sd.port, timeout=10)
    peer = peer_of(s)
    s.setblocking(False)
    up_hash = hashlib.sha256()
    down_hash = hashlib.sha256()
    sent = recvd = 0
    gen = BlockStream(seed_up, TOTAL).blocks()
    cur = memoryview(b"")
    last_progress = time.monotonic()
    try:
        while sent < TOTAL or recvd < TOTAL:
            now = time.monotonic()
            assert now - t0 < DEADLINE_S, "transfer too slow: up %d down %d after %.0fs" % (sent, recvd, now - t0)
            assert now - last_progress < 15, "transfer stalled: up %d down %d" % (sent, recvd)
            if sent < TOTAL and not cur:
                blk = next(gen)
                up_hash.update(blk)
                cur = memoryview(blk)
            progressed = False
            if recvd < TOTAL:
                while True:
                    try:
                        d = s.recv(1 << 20)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        break
                    except ssl.SSLWantWriteError:
                        break
                    if not d:
                        raise AssertionError("early EOF after %d bytes down" % recvd)
                    down_hash.update(d)
                    recvd += len(d)
                    progressed = True
            if cur:
                try:
                    n = s.send(cur)
                    cur = cur[n:]
                    sent += n
                    progressed = True
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
            if progressed:
                last_progress = time.monotonic()
            else:
                select.select([s] if recvd < TOTAL else [], [s] if cur else [], [], 0.5)
        elapsed = time.monotonic() - t0
    finally:
        s.setblocking(True)
        s.settimeout(5)
    res = b.wait_results(1, timeout=30)
    s.close()
    assert res, "backend never finished; errors: %s" % b.errors
    r = res[0]
    assert r["rx_n"] == TOTAL, r
    assert r["rx_hash"] == up_hash.hexdigest(), "client->backend data corrupted"
    assert r["tx_n"] == TOTAL
    assert recvd == TOTAL
    assert down_hash.hexdigest() == r["tx_hash"], "backend->client data corrupted"
    e = sd.wait_conn(peer, timeout=10)
    assert e["result"] == "ok", e
    assert e["bytes_in"] == TOTAL and e["bytes_out"] == TOTAL, e
    print("1 GiB each way in %.1fs" % elapsed)
    limit = 150 if os.environ.get("STEELDOOR_SAN") == "1" else 60
    assert elapsed < limit, "1 GiB each way took %.1fs" % elapsed
