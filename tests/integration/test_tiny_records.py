"""Tiny TLS records must not amplify (issue 16).

A client sending one-byte TLS records used to make steeldoor issue one
backend write per record: what was decrypted in one event must be
coalesced into one send. The client here writes N one-byte records into a
MemoryBIO and sends all of them in one sendall; the backend counts its
recv() calls and the TCP data segments it received (TCP_INFO), which both
must stay far below N, and checks every byte arrived, in order.
"""
import socket
import ssl
import struct
import threading
import time

import pytest

import sdlib

N = 2000
TCPI_DATA_SEGS_IN = 152  # offset in struct tcp_info (Linux >= 4.6)


def _data_segs_in(sock):
    try:
        ti = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return None
    if len(ti) < TCPI_DATA_SEGS_IN + 4:
        return None
    return struct.unpack_from("<I", ti, TCPI_DATA_SEGS_IN)[0]


def _counting(expect):
    """Backend: receives `expect` bytes, counting recv() calls; records
    (calls, data segments, bytes) and answers one byte."""
    def handler(conn, backend):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf, calls = bytearray(), 0
        conn.settimeout(10)
        while len(buf) < expect and calls < 10 * expect:
            d = conn.recv(65536)
            calls += 1
            if not d:
                break
            buf += d
        segs = _data_segs_in(conn)
        with backend.lock:
            backend.results.append((calls, segs, bytes(buf)))
        conn.sendall(b"K")
        while conn.recv(4096):
            pass
    return handler


def tiny_burst(ctx, port, payload):
    """Handshake, then len(payload) one-byte records sent in one burst."""
    r = sdlib.RawTLS(ctx, port)
    try:
        r.handshake()
        for i in range(len(payload)):
            r.obj.write(payload[i:i + 1])  # one record per call
        wire = r.outg.read()
        r.sock.sendall(wire)
        got = r.recv_exact(1, timeout=10)
        return wire, got
    finally:
        r.close()


@pytest.mark.parametrize("ver", ["TLSv1_2", "TLSv1_3"])
@pytest.mark.parametrize("workers", [1, 2])
def test_tiny_records_coalesced(steeldoor, backends, client_ctx, ver, workers):
    v = getattr(ssl.TLSVersion, ver)
    ctx = client_ctx(min_version=v, max_version=v)
    payload = bytes((i * 7 + 3) % 256 for i in range(N))
    be = backends(_counting(N))
    sd = steeldoor(target=be.target, workers=workers)
    wire, got = tiny_burst(ctx, sd.port, payload)
    assert got == b"K"
    # the client really sent N records: at least header + 1 byte + AEAD tag each
    assert len(wire) >= N * (5 + 1 + 16), len(wire)
    res = be.wait_results(1, timeout=5)
    assert res, "the backend got nothing"
    calls, segs, data = res[0]
    assert data == payload, "bytes lost or reordered (%d of %d)" % (len(data), N)
    # one send per event: a handful of sends for the burst, never one per record
    assert calls <= N // 100, "backend needed %d recv() calls (%s TCP data segments) for " \
        "%d one-byte records" % (calls, segs, N)
    if segs is not None:
        assert segs <= N // 100, "backend received %d TCP data segments for %d one-byte " \
                                "records" % (segs, N)
    print("tiny records %s workers=%d: %d records -> %d backend recv() calls, %s data "
          "segments" % (ver, workers, N, calls, segs))


def test_tiny_records_interleaved_with_replies(steeldoor, echo_backend, good_ctx):
    """Request/response with small records still answers each request at once
    (coalescing never waits for more input)."""
    sd = steeldoor(target=echo_backend.target)
    r = sdlib.RawTLS(good_ctx, sd.port)
    try:
        r.handshake()
        t0 = time.monotonic()
        for i in range(50):
            msg = b"q%02d" % i
            for j in range(len(msg)):
                r.obj.write(msg[j:j + 1])
            r.sock.sendall(r.outg.read())
            assert r.recv_exact(len(msg), timeout=5) == msg
        took = time.monotonic() - t0
    finally:
        r.close()
    assert took < 5, "50 small round trips took %.2fs" % took
