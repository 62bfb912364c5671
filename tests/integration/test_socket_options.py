"""Socket options on both legs of a proxied connection, read from the running
worker's own file descriptors (pidfd_getfd, Linux 5.6+, as root).

TCP_NODELAY must be on for the client's socket and the backend's: with Nagle's
algorithm a small message written while an earlier one is unacknowledged waits
for that ACK (up to the peer's 40 ms delayed-ACK timer), which stalls
request/response traffic. steeldoor sets it once on the listening socket (Linux
copies it to accepted sockets) and on every backend socket.
"""
import ctypes
import errno
import os
import socket

import pytest

import sdlib

SYS_pidfd_open = 434
SYS_pidfd_getfd = 438
_libc = ctypes.CDLL(None, use_errno=True)


def _tcp_sockets_of(pid):
    """[(local (host, port), peer (host, port) or None, TCP_NODELAY)] for every
    TCP socket of process pid."""
    pfd = _libc.syscall(SYS_pidfd_open, pid, 0)
    if pfd < 0:
        e = ctypes.get_errno()
        if e == errno.ENOSYS:
            pytest.skip("pidfd_open is not available on this kernel")
        raise OSError(e, "pidfd_open(%d)" % pid)
    out = []
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                if not os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                    continue
            except OSError:
                continue  # closed meanwhile
            dup = _libc.syscall(SYS_pidfd_getfd, pfd, int(name), 0)
            if dup < 0:
                e = ctypes.get_errno()
                if e == errno.ENOSYS:
                    pytest.skip("pidfd_getfd is not available on this kernel")
                if e == errno.EBADF:
                    continue
                raise OSError(e, "pidfd_getfd(%d, %s)" % (pid, name))
            s = socket.socket(fileno=dup)
            try:
                if s.type != socket.SOCK_STREAM or s.family not in (socket.AF_INET,
                                                                   socket.AF_INET6):
                    continue
                try:
                    peer = s.getpeername()[:2]
                except OSError:
                    peer = None
                out.append((s.getsockname()[:2], peer,
                            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            finally:
                s.close()
    finally:
        os.close(pfd)
    return out


def test_tcp_nodelay_on_both_legs(steeldoor, backends, client_ctx):
    be = backends()
    sd = steeldoor(target=be.target, workers=1)
    with sdlib.tls_connect(client_ctx(), sd.port) as s:
        assert sdlib.echo_roundtrip(s, b"nodelay?\n") == b"nodelay?\n"
        client_port = s.getsockname()[1]
        (worker,) = sd.wait_workers(1)
        socks = _tcp_sockets_of(worker)
        accepted = [x for x in socks if x[0][1] == sd.port and x[1] is not None
                    and x[1][1] == client_port]
        to_backend = [x for x in socks if x[1] is not None and x[1][1] == be.port]
        assert len(accepted) == 1, "client's socket not found in the worker: %s" % socks
        assert len(to_backend) == 1, "backend socket not found in the worker: %s" % socks
        assert accepted[0][2] != 0, "TCP_NODELAY is off on the client's socket"
        assert to_backend[0][2] != 0, "TCP_NODELAY is off on the backend socket"


def test_reading_socket_options_control():
    """Control for the helper above: on this process's own sockets it reads
    0 where the option is off and 1 where it was set."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    try:
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = {x[0]: x[2] for x in _tcp_sockets_of(os.getpid())}
        assert got[cli.getsockname()[:2]] != 0
        assert got[srv.getsockname()[:2]] == 0 or srv.getsockname() == cli.getsockname()
        assert got[lst.getsockname()[:2]] == 0
    finally:
        for x in (cli, srv, lst):
            x.close()
