#!/usr/bin/python3
"""bench/run.py - steeldoor against nginx, HAProxy and stunnel, on loopback.

Runs by `make bench` (see docs/benchmarks.md); standard library only.

For every server: a fresh process with ONE worker, the same ECDSA P-256
certificates (made with `steeldoor pki`), TLS 1.3 with X25519, a client
certificate required and verified, TCP proxying to the same backend
(bench/backend.c). The load generator (bench/loadgen.c) runs each phase;
the server's CPU time is read from /proc/PID/stat for every process of that
server just before and just after the phase, so the load generator's own
cost never counts. Each figure is the median over the runs, and is also
given as a ratio to nginx's (and, in the JSON, to HAProxy's; the CPU per
one-byte record of the `tiny` phase is printed as a ratio to HAProxy's too).

The `http` phase runs against a second instance of each server, configured
for HTTP/1.1 (steeldoor `serve --http`, nginx's http module, HAProxy's
`mode http`) in front of `backend --http`, each setting the client
certificate in a request header; stunnel has no HTTP mode and is left out of
that phase (not applicable). Its CPU per request is also given as a ratio to
the best of nginx and HAProxy.

The second-factor phases (`http-apikey`, `http-jwt`; issue 14) are steeldoor
only: in every run, beside its plain HTTP-mode instance (which first runs the
`http` phase as every server does), one instance with `--api-keys` (a keys
file of 51 keys made with `steeldoor apikey new`) and one with `--jwks` (an
ES256 key; the token is certificate-bound, RFC 8705), the load generator
sending `Authorization: Bearer ...` on every request. The three are then
measured in turn, in slices (AUTH_SLICES), so that noise from other work on
the machine falls on all of them alike; each second factor is reported as
the ratio of its CPU per request to the plain instance's slices of the same
run (median of the runs), against the issue's limit of x1.03. The JWT is
minted with the `openssl` command line, so this script still needs nothing
but the standard library.

The client-mode phases (`connect-full`, `connect-resumed`,
`connect-keepalive`; issue 15) measure each server as a CLIENT: the load
generator speaks plain TCP (`loadgen --plain`) to the server's client mode
(steeldoor `connect`, stunnel `client = yes`, HAProxy `server ... ssl crt`,
nginx's stream `proxy_ssl`), which opens a mutual-TLS connection to a fixed
upstream in front of the same backend (nginx's stream module requiring
client certificates; `--connect-upstream steeldoor` for `steeldoor serve`),
presenting the client certificate and verifying the upstream's against the
CA and the name localhost. Two upstreams run for the whole bench: one that
issues no session tickets (every handshake of connect-full is full,
whatever the proxy's session reuse) and one that does (connect-resumed and
connect-keepalive). The proxies' configurations are the same in all three
phases, with session reuse on. Only the proxy's processes are measured;
the upstream's log tells how many of the phase's handshakes resumed (none
may in connect-full; in connect-resumed steeldoor must resume at least 90%,
and a peer that resumes less is noted, its figure kept). Figures are also
given as a ratio to the best of the three peers (CONNECT_GOALS).
`--connect-check` adds a one-off check: every proxy pointed at a wrong CA
must get no exchange through.

The metrics phase (`keepalive-metrics`; issue 16) is steeldoor only: the
`keepalive` phase's load (the same load-generator arguments) against a second
L4 instance with `--admin 127.0.0.1:PORT` (first put, unmeasured, through
the phases the plain instance ran before its keepalive), while a scraper in
this script GETs /metrics every METRICS_SCRAPE_INTERVAL (1 s, the harsh case:
Prometheus scrapes every 15-60 s) from the start of the measured window to
its end, counting its successful scrapes. The CPU charged is the whole server's
(master and workers, scrapes included) per request, as for `keepalive`. In
every run the two instances' phases are measured back to back, the order
swapped every other run, both from the scheduler's ns count
(tree_cpu_ns); the figure is the median of the runs' own ratios
(keepalive-metrics over keepalive), against the issue's goal of x1.01. A run
with no successful scrape, or whose /metrics lacks METRICS_REQUIRED, fails
the bench (METRICS FAILED). After the phase, the same instance is scraped
METRICS_COST_SCRAPES times in a row with no load, for its CPU per scrape:
what the phase's scrapes alone add (finer than two phases can resolve).

Every server runs from a temporary configuration in a temporary directory,
on free loopback ports, in the foreground, as a child of this script; no
system service is touched. A server whose program is missing is skipped
with a note.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import resource
import secrets
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30
SERVERS = ("nginx", "haproxy", "stunnel", "steeldoor")
BASELINE = "nginx"
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

# Phase parameters: load-generator arguments. Each phase is bounded by count
# AND time; the times keep `make bench` under ten minutes on two cores.
PHASES = {
    "idle": ["--mode", "idle", "--conns", "2000", "--time", "60"],
    "full": ["--mode", "full", "--conns", "16", "--count", "100000", "--time", "2.5"],
    "resumed": ["--mode", "resumed", "--conns", "16", "--count", "100000", "--time", "2.5"],
    "keepalive": ["--mode", "keepalive", "--conns", "32", "--count", "5000000", "--time", "2.5"],
    "bulk": ["--mode", "bulk", "--conns", "4", "--count", "8G", "--chunk", "32M", "--time", "2.5"],
    # bursts of 1024 one-byte TLS records (one send each), 8 connections
    "tiny": ["--mode", "tiny", "--conns", "8", "--count", "1G", "--tiny", "1024",
             "--time", "2.5"],
    # HTTP/1.1 keep-alive through each server's HTTP mode: 8 connections, GET
    # after GET (about 5000 each), every response read in full and checked
    "http": ["--mode", "http", "--conns", "8", "--count", "40000", "--time", "2.5"],
    # The same against steeldoor with a second factor: an API key, or a
    # certificate-bound JWT, in every request (Authorization: Bearer)
    "http-apikey": ["--mode", "http", "--conns", "8", "--count", "40000", "--time", "2.5"],
    "http-jwt": ["--mode", "http", "--conns", "8", "--count", "40000", "--time", "2.5"],
    # Client mode (issue 15): plain TCP to the server's client mode, which
    # opens a mutual-TLS connection to the upstream (steeldoor serve) for
    # each. full: an upstream that issues no tickets; resumed: one that does.
    "connect-full": ["--plain", "--mode", "full", "--conns", "16", "--count", "100000",
                     "--time", "2.5"],
    "connect-resumed": ["--plain", "--mode", "full", "--conns", "16", "--count", "100000",
                        "--time", "2.5"],
    "connect-keepalive": ["--plain", "--mode", "keepalive", "--conns", "32", "--count",
                          "5000000", "--time", "2.5"],
}
# The metrics phase (issue 16): exactly the keepalive phase's load, against
# steeldoor with its admin listener scraped (METRICS_PHASE below).
PHASES["keepalive-metrics"] = list(PHASES["keepalive"])
PHASE_ORDER = ("idle", "full", "resumed", "keepalive", "keepalive-metrics", "bulk", "tiny",
               "http", "http-apikey", "http-jwt", "connect-full", "connect-resumed",
               "connect-keepalive")
# The client-mode phases (issue 15), each with the upstream it runs against:
# "full" issues no session tickets, "resume" does.
CONNECT_PHASES = {"connect-full": "full", "connect-resumed": "resume",
                  "connect-keepalive": "resume"}
CONNECT_PEERS = ("nginx", "haproxy", "stunnel")
# steeldoor's CPU as a ratio to the best peer's: at most this (issue 15).
CONNECT_GOALS = {"connect_full_cpu_us": 0.80, "connect_resumed_cpu_us": 0.80,
                 "connect_keepalive_cpu_us": 1.00}
# The name the upstream's certificate carries, sent as SNI and checked by
# every proxy.
CONNECT_SERVER_NAME = "localhost"
# Phases run against the server's HTTP-mode instance (the others against
# its L4 one), in front of `backend --http`.
HTTP_PHASES = ("http", "http-apikey", "http-jwt")
# The second-factor phases (issue 14): steeldoor only, each on its own
# HTTP-mode instance, and compared with steeldoor's plain `http` of the same
# run. The value is the `auth` word steeldoor's request lines must carry.
AUTH_PHASES = {"http-apikey": "api-key", "http-jwt": "token"}
AUTH_LIMIT = 1.03  # the key check adds at most 3% CPU per keep-alive request
# Those instances and a plain one are measured in turn, AUTH_SLICES rounds of
# one slice each (the `http` phase's count and time divided by AUTH_SLICES),
# the order reversed every other round: noise from other work on the machine,
# which moves a single 2.5 s phase by several percent, then falls on all of
# them alike.
AUTH_SLICES = 8
AUTH_SERVER = "steeldoor"
AUTH_NOT_APPLICABLE = "a steeldoor feature, measured against steeldoor without it"
# The keys file: this many other keys (bound to other identities) before
# the bench client's, so the lookup is not of one entry.
AUTH_OTHER_KEYS = 50
JWT_ISSUER = "https://issuer.bench"
JWT_AUDIENCE = "steeldoor-bench"
JWT_SUB = "bench-client"
CLIENT_URI = "spiffe://bench.steeldoor.test/loadgen"
# The metrics phase (issue 16): steeldoor only, on a second L4 instance with
# an admin listener, its /metrics scraped every METRICS_SCRAPE_INTERVAL
# seconds during the measured window; compared with steeldoor's `keepalive`
# of the same run (measured right before or right after it, the order
# swapped every other run). A scrape: one connection, `GET /metrics`, the
# whole answer read (at most METRICS_SCRAPE_TIMEOUT s, METRICS_MAX_BYTES).
METRICS_PHASE = "keepalive-metrics"
METRICS_BASE = "keepalive"
METRICS_SERVER = "steeldoor"
METRICS_LIMIT = 1.01  # metrics add at most 1% server CPU per keep-alive request
METRICS_SCRAPE_INTERVAL = 1.0
METRICS_SCRAPE_TIMEOUT = 2.0
METRICS_MAX_BYTES = 4 << 20
METRICS_REQUIRED = "steeldoor_connections_accepted_total"
# After the phase, on the same instance with the load stopped: this many
# scrapes one after the other, for the server's CPU per scrape (scrape_cost):
# what the scrapes alone add, finer than two 2.5 s phases can resolve.
METRICS_COST_SCRAPES = 20
METRICS_NOT_APPLICABLE = ("a steeldoor feature (its admin listener's /metrics), measured "
                          "against steeldoor's keepalive without it")
# The goal for steeldoor's CPU per HTTP request, as a ratio to the best
# peer's (issue 13).
HTTP_PEERS = ("nginx", "haproxy")
HTTP_GOAL = 0.80
# Figures also given as a ratio to this server (the issue of tiny records
# was measured against HAProxy).
SECOND_BASELINE = "haproxy"

# The figures: (key, label, unit, phase, digits)
FIGURES = (
    ("full_cpu_us", "CPU per full handshake", "us", "full", 0),
    ("resumed_cpu_us", "CPU per resumed handshake", "us", "resumed", 0),
    ("keepalive_cpu_us", "CPU per keep-alive request", "us", "keepalive", 1),
    ("metrics_keepalive_cpu_us", "CPU per keep-alive request, /metrics scraped every 1 s",
     "us", "keepalive-metrics", 1),
    ("bulk_cpu_s_per_gib", "CPU per GiB of bulk", "s", "bulk", 2),
    ("tiny_cpu_ns_per_record", "CPU per one-byte record", "ns", "tiny", 0),
    ("http_cpu_us", "CPU per HTTP request", "us", "http", 1),
    ("http_apikey_cpu_us", "CPU per HTTP request with an API key", "us", "http-apikey", 1),
    ("http_jwt_cpu_us", "CPU per HTTP request with a JWT", "us", "http-jwt", 1),
    ("connect_full_cpu_us", "connect: CPU per full handshake", "us", "connect-full", 0),
    ("connect_resumed_cpu_us", "connect: CPU per resumed handshake", "us", "connect-resumed", 0),
    ("connect_keepalive_cpu_us", "connect: CPU per keep-alive request", "us",
     "connect-keepalive", 1),
    ("idle_rss_kib_per_conn", "RSS per idle connection", "KiB", "idle", 1),
    ("full_p50_ms", "full: latency p50", "ms", "full", 1),
    ("full_p99_ms", "full: latency p99", "ms", "full", 1),
    ("resumed_p50_ms", "resumed: latency p50", "ms", "resumed", 1),
    ("resumed_p99_ms", "resumed: latency p99", "ms", "resumed", 1),
    ("keepalive_p50_us", "keep-alive: latency p50", "us", "keepalive", 0),
    ("keepalive_p99_us", "keep-alive: latency p99", "us", "keepalive", 0),
    ("metrics_keepalive_p50_us", "keepalive-metrics: latency p50", "us", "keepalive-metrics", 0),
    ("metrics_keepalive_p99_us", "keepalive-metrics: latency p99", "us", "keepalive-metrics", 0),
    ("http_p50_us", "http: latency p50", "us", "http", 0),
    ("http_p99_us", "http: latency p99", "us", "http", 0),
    ("http_apikey_p50_us", "http-apikey: latency p50", "us", "http-apikey", 0),
    ("http_apikey_p99_us", "http-apikey: latency p99", "us", "http-apikey", 0),
    ("http_jwt_p50_us", "http-jwt: latency p50", "us", "http-jwt", 0),
    ("http_jwt_p99_us", "http-jwt: latency p99", "us", "http-jwt", 0),
    ("connect_full_p50_ms", "connect-full: latency p50", "ms", "connect-full", 2),
    ("connect_full_p99_ms", "connect-full: latency p99", "ms", "connect-full", 2),
    ("connect_resumed_p50_ms", "connect-resumed: latency p50", "ms", "connect-resumed", 2),
    ("connect_resumed_p99_ms", "connect-resumed: latency p99", "ms", "connect-resumed", 2),
    ("connect_keepalive_p50_us", "connect-keepalive: latency p50", "us", "connect-keepalive", 0),
    ("connect_keepalive_p99_us", "connect-keepalive: latency p99", "us", "connect-keepalive", 0),
    ("full_per_s", "full handshakes/s", "/s", "full", 0),
    ("resumed_per_s", "resumed handshakes/s", "/s", "resumed", 0),
    ("keepalive_per_s", "keep-alive requests/s", "/s", "keepalive", 0),
    ("metrics_keepalive_per_s", "keep-alive requests/s, /metrics scraped", "/s",
     "keepalive-metrics", 0),
    ("http_per_s", "HTTP requests/s", "/s", "http", 0),
    ("http_apikey_per_s", "HTTP requests/s with an API key", "/s", "http-apikey", 0),
    ("http_jwt_per_s", "HTTP requests/s with a JWT", "/s", "http-jwt", 0),
    ("connect_full_per_s", "connect: full handshakes/s", "/s", "connect-full", 0),
    ("connect_resumed_per_s", "connect: resumed handshakes/s", "/s", "connect-resumed", 0),
    ("connect_keepalive_per_s", "connect: keep-alive requests/s", "/s", "connect-keepalive", 0),
    ("bulk_gib_per_s", "bulk throughput", "GiB/s", "bulk", 2),
    ("tiny_records_per_s", "one-byte records/s", "/s", "tiny", 0),
    ("tiny_p50_us", "tiny: latency p50 of a 1024-record burst", "us", "tiny", 0),
    ("resumed_fraction", "fraction resumed", "", "resumed", 3),
    ("connect_full_upstream_resumed_fraction", "connect-full: fraction resumed (upstream's log)",
     "", "connect-full", 3),
    ("connect_resumed_upstream_resumed_fraction",
     "connect-resumed: fraction resumed (upstream's log)", "", "connect-resumed", 3),
    ("metrics_scrapes", "keepalive-metrics: successful scrapes of /metrics", "",
     "keepalive-metrics", 0),
    ("metrics_scrape_ms", "keepalive-metrics: time of a scrape (median)", "ms",
     "keepalive-metrics", 2),
    ("metrics_scrape_cpu_us", "keepalive-metrics: server CPU per scrape, no load", "us",
     "keepalive-metrics", 0),
    ("full_tickets_per_conn", "tickets sent per full handshake", "", "full", 1),
    ("resumed_tickets_per_conn", "tickets sent per resumed handshake", "", "resumed", 1),
)


class BenchError(Exception):
    pass


def phase_key(phase):
    """The prefix of a phase's figures: http-apikey -> http_apikey."""
    return phase.replace("-", "_")


def log(msg):
    print(msg, flush=True)


def which(name):
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError("exited with status %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError("not listening on 127.0.0.1:%d after %.0fs" % (port, timeout))


# --- /proc -----------------------------------------------------------------

def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def process_tree(root):
    """root and all its descendants that are alive now."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root):
    """utime+stime of every process of the server, plus cutime+cstime (the
    time of children it already reaped, e.g. a worker that died), so a
    restarted worker's time is neither lost nor counted twice."""
    ticks = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def tree_cpu_ns(root):
    """The CPU time of every thread of the server, in ns, from the
    scheduler's own count (/proc/PID/task/TID/schedstat): the same time as
    tree_cpu_seconds without its 10 ms ticks, for the short slices of the
    second-factor comparison. None where the kernel does not give it."""
    if not os.path.exists("/proc/self/schedstat"):
        return None
    total = 0
    for pid in process_tree(root):
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def tree_rss_kib(root):
    total = 0
    for pid in process_tree(root):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


# --- the servers -------------------------------------------------------------

class Server:
    """One server under test: its configuration and its process."""

    name = "?"
    # None when it has an HTTP mode (the `http` phase), else why not.
    no_http = None

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc = None
        self.port = None
        self.dir = None
        self.logfile = None
        self.http = False  # this instance is the HTTP-mode one
        self.auth = None   # its second-factor phase (AUTH_PHASES), else None
        self.admin_port = None  # steeldoor's admin listener (METRICS_PHASE), else None
        self.skip = (0, 0)  # byte range of the log written during the no-cert probe

    def missing(self):
        """None when it can run here, else why not."""
        return None

    def version(self):
        return "?"

    def command(self):
        raise NotImplementedError

    def backend_port(self):
        return self.ctx.http_backend_port if self.http else self.ctx.backend_port

    def loadgen_cmd(self):
        """The load generator against this instance, with its credential."""
        return self.ctx.loadgen_cmd(self.port) + self.ctx.auth_loadgen_args(self.auth)

    def probe_args(self):
        """One complete exchange through the server (load-generator args)."""
        if self.http:
            return ["--mode", "http", "--count", "1", "--conns", "1", "--time", "5"]
        return ["--mode", "full", "--count", "1", "--conns", "1", "--time", "5"]

    def start(self, run, http=False, auth=None, admin=False):
        self.http = http
        self.auth = auth
        if auth:
            self.ctx.auth_prepare(auth)
        self.port = free_port()
        self.admin_port = free_port() if admin else None
        self.dir = os.path.join(self.ctx.tmp, "%s-%d%s%s" % (
            self.name, run, ("-" + auth if auth else "-http") if http else "",
            "-metrics" if admin else ""))
        os.makedirs(self.dir)
        cmd = self.command()
        self.logfile = os.path.join(self.dir, "server.log")
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        # Ready when one complete mTLS exchange goes through (a bare TCP
        # probe would show up in the servers' logs as an aborted handshake).
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise BenchError("exited with status %s at start; see %s" % (
                    self.proc.returncode, self.logfile))
            r = subprocess.run(self.loadgen_cmd() + self.probe_args(),
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                # (an HTTP status the load generator refused is on its first line)
                text = r.stderr.strip()
                first = text.splitlines()[0] if text else ""
                raise BenchError("no exchange went through it: %s" % (
                    first[:300] if " status " in first else text[-300:]))
            time.sleep(0.1)
        # The configuration must really be mutual TLS: no certificate, no entry.
        # What the server logs about this refusal is expected: skipped later.
        before = self._log_size()
        r = subprocess.run(self.loadgen_cmd() + self.probe_args() + [
            "--no-client-cert"], capture_output=True, text=True)
        if r.returncode == 0:
            raise BenchError("a client WITHOUT a certificate got a response through it: "
                             "the configuration is not mutual TLS")
        if self.auth:
            # The second factor must really be checked: with the certificate
            # but no credential, or a wrong one, a 401 and nothing else.
            for what, extra in (("no credential", []),
                                ("a wrong credential", self.ctx.auth_wrong_args(self.auth))):
                r = subprocess.run(self.ctx.loadgen_cmd(self.port) + extra + self.probe_args(),
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    raise BenchError("AUTH FAILED: a request with %s got a 200 through it: "
                                     "the second factor is not checked" % what)
                if "status 401" not in r.stderr:
                    raise BenchError("AUTH FAILED: a request with %s did not get a 401: %s"
                                     % (what, r.stderr.strip()[-300:]))
        time.sleep(0.2)
        self.skip = (before, self._log_size())

    def log_path(self):
        return self.logfile

    def _log_size(self):
        try:
            return os.path.getsize(self.log_path())
        except OSError:
            return 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # A process group we created: make sure no worker outlives its master.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None

    def log_notes(self):
        """Anything in the server's own log worth reporting."""
        return []

    @property
    def pki(self):
        return self.ctx.pki


class Nginx(Server):
    name = "nginx"

    def missing(self):
        self.bin = which("nginx")
        if not self.bin:
            return "nginx is not installed (Debian: nginx-light)"
        self.load_module = ""
        v = subprocess.run([self.bin, "-V"], capture_output=True, text=True).stderr
        if not self.ctx.l4:
            return None  # only the http phase: no stream module needed
        if "--with-stream=dynamic" in v or "--with-stream " not in v + " ":
            if not os.path.exists(NGINX_STREAM_MODULE):
                return ("nginx has no stream module (Debian: libnginx-mod-stream), needed "
                        "for L4 proxying with ssl_verify_client")
            self.load_module = "load_module %s;\n" % NGINX_STREAM_MODULE
        return None

    def version(self):
        r = subprocess.run([self.bin, "-v"], capture_output=True, text=True)
        return (r.stderr or r.stdout).strip().replace("nginx version: ", "")

    def command(self):
        conf = os.path.join(self.dir, "nginx.conf")
        if self.http:
            self.write_http_conf(conf)
        else:
            self.write_stream_conf(conf)
        return [self.bin, "-p", self.dir + "/", "-e", self.dir + "/error.log", "-c", conf,
                "-g", "daemon off;"]

    def write_http_conf(self, conf):
        """The http phase: HTTP/1.1 to an upstream with kept-alive
        connections, the client certificate (PEM, URL-escaped: nginx's own
        form) in a request header. Temporary files in the run's directory;
        no per-request or per-connection limit below the phase's."""
        p, d = self.pki, self.dir
        with open(conf, "w") as f:
            f.write(f"""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{self.backend_port()};
        keepalive 32;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{self.port} ssl backlog=4096;
        server_name localhost;
        ssl_certificate {p}/server.crt;
        ssl_certificate_key {p}/server.key;
        ssl_client_certificate {p}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519:P-256:P-384;
        ssl_session_tickets on;
        ssl_session_timeout 5m;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Client-Cert $ssl_client_escaped_cert;
        }}
    }}
}}
""")

    def write_stream_conf(self, conf):
        p = self.pki
        with open(conf, "w") as f:
            f.write(self.load_module + f"""\
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
stream {{
    server {{
        listen 127.0.0.1:{self.port} ssl backlog=4096;
        ssl_certificate {p}/server.crt;
        ssl_certificate_key {p}/server.key;
        ssl_client_certificate {p}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519:P-256:P-384;
        ssl_session_tickets on;
        ssl_session_timeout 5m;
        proxy_pass 127.0.0.1:{self.ctx.backend_port};
    }}
}}
""")

    def log_path(self):
        return os.path.join(self.dir, "error.log")

    def log_notes(self):
        return _grep_log(self.log_path(), ("[emerg]", "[alert]", "[crit]"), self.skip)


class Haproxy(Server):
    name = "haproxy"

    def missing(self):
        self.bin = which("haproxy")
        return None if self.bin else "haproxy is not installed (Debian: haproxy)"

    def version(self):
        r = subprocess.run([self.bin, "-v"], capture_output=True, text=True)
        words = r.stdout.split()
        return words[2] if len(words) > 2 else "?"  # "HAProxy version 2.6.12-1 ..."

    def command(self):
        p = self.pki
        pem = os.path.join(self.dir, "server.pem")  # HAProxy wants cert and key in one file
        with open(pem, "w") as out:
            for part in ("server.crt", "server.key"):
                with open(os.path.join(p, part)) as f:
                    out.write(f.read())
        os.chmod(pem, 0o600)
        conf = os.path.join(self.dir, "haproxy.cfg")
        tls = ("ssl crt %s ca-file %s/ca.crt verify required ssl-min-ver TLSv1.3 "
               "curves X25519:P-256:P-384" % (pem, p))
        if self.http:
            # The http phase: the client certificate's DER as an RFC 9440
            # sf-binary (:base64:) in a request header; idle backend
            # connections shared by all clients, as nginx's upstream
            # keepalive and steeldoor's pool do.
            with open(conf, "w") as f:
                f.write(f"""\
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    timeout http-keep-alive 5m
    http-reuse always
frontend bench
    bind 127.0.0.1:{self.port} {tls} alpn http/1.1
    http-request set-header Client-Cert :%[ssl_c_der,base64]:
    default_backend backend
backend backend
    server backend 127.0.0.1:{self.backend_port()}
""")
            return [self.bin, "-f", conf, "-db"]
        with open(conf, "w") as f:
            f.write(f"""\
global
    nbthread 1
    maxconn 8192
defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
frontend bench
    bind 127.0.0.1:{self.port} {tls}
    default_backend backend
backend backend
    server backend 127.0.0.1:{self.ctx.backend_port}
""")
        return [self.bin, "-f", conf, "-db"]

    def log_notes(self):
        return _grep_log(self.logfile, ("[ALERT]",), self.skip)


class Stunnel(Server):
    name = "stunnel"
    no_http = "stunnel has no HTTP mode"

    def missing(self):
        self.bin = which("stunnel4") or which("stunnel")
        return None if self.bin else "stunnel is not installed (Debian: stunnel4)"

    def version(self):
        r = subprocess.run([self.bin, "-version"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        for line in (r.stderr + r.stdout).splitlines():
            if line.startswith("stunnel "):
                return line.split(" on ")[0].replace("stunnel ", "")
        return "?"

    def command(self):
        p = self.pki
        conf = os.path.join(self.dir, "stunnel.conf")
        with open(conf, "w") as f:
            f.write(f"""\
foreground = yes
pid =
output = {self.dir}/stunnel.log
syslog = no
debug = warning

[bench]
accept = 127.0.0.1:{self.port}
connect = 127.0.0.1:{self.ctx.backend_port}
cert = {p}/server.crt
key = {p}/server.key
CAfile = {p}/ca.crt
requireCert = yes
verifyChain = yes
sslVersionMin = TLSv1.3
curves = X25519:P-256:P-384
sessionCacheTimeout = 300
""")
        return [self.bin, conf]

    def log_path(self):
        return os.path.join(self.dir, "stunnel.log")

    def log_notes(self):
        return _grep_log(self.log_path(), ("LOG3[", "LOG2[", "LOG1[", "LOG0["), self.skip)


class Steeldoor(Server):
    name = "steeldoor"

    def missing(self):
        self.bin = self.ctx.steeldoor
        return None if os.access(self.bin, os.X_OK) else "%s is not built" % self.bin

    def version(self):
        r = subprocess.run([self.bin, "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().replace("steeldoor ", "")

    def command(self):
        p = self.pki
        # The http phase: the same, plus --http (default identity headers:
        # RFC 9440 Client-Cert, and Client-Cert-Chain when the client sends
        # intermediates).
        return [self.bin, "serve", "--listen", "127.0.0.1:%d" % self.port,
                "--target", "127.0.0.1:%d" % self.backend_port(),
                "--cert", p + "/server.crt", "--key", p + "/server.key",
                "--cacert", p + "/ca.crt", "--allow-all", "--workers", "1",
                "--name", "bench"] + (["--http"] if self.http else []) + (
                    self.ctx.auth_serve_args(self.auth)) + (
                        ["--admin", "127.0.0.1:%d" % self.admin_port] if self.admin_port
                        else [])

    def log_notes(self):
        """Per-connection results and worker events from its JSON log."""
        results, reasons, events, resumed, bad, statuses = {}, {}, {}, 0, 0, {}
        auths = {}  # the `auth` word of its request lines (second factor)
        try:
            lines = _log_lines(self.logfile, self.skip)
        except OSError:
            return []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            ev = rec.get("event")
            st = rec.get("status")
            if isinstance(st, int) and ev != "conn":  # HTTP mode: a request's line
                statuses[st] = statuses.get(st, 0) + 1
                a = rec.get("auth") or "none"
                auths[a] = auths.get(a, 0) + 1
            if ev == "conn":
                r = rec.get("result", "?")
                results[r] = results.get(r, 0) + 1
                if r != "ok":
                    k = "%s/%s" % (r, rec.get("reason", "?"))
                    reasons[k] = reasons.get(k, 0) + 1
                resumed += bool(rec.get("resumed"))
            elif ev == "worker_exited" and (rec.get("restart") or rec.get("signal") or
                                            rec.get("exit_status", 0) != 0):
                events["worker_died"] = events.get("worker_died", 0) + 1
            elif rec.get("level") in ("error", "fatal"):
                k = "%s:%s" % (rec.get("level"), ev)
                events[k] = events.get(k, 0) + 1
        notes = []
        if reasons:
            notes.append("connections not ok in its log: " +
                         ", ".join("%s x%d" % kv for kv in sorted(reasons.items())))
        for k, n in sorted(events.items()):
            notes.append("%s x%d%s" % (k, n, " (a worker died)" if k == "worker_died" else ""))
        if bad:
            notes.append("%d log lines that are not JSON" % bad)
        not_200 = {k: v for k, v in statuses.items() if k != 200}
        if not_200:
            notes.append("requests not answered 200 in its log: " +
                         ", ".join("%d x%d" % kv for kv in sorted(not_200.items())))
        if self.auth:
            # Every request of a second-factor instance passed the check: its
            # line names the credential's kind.
            want = AUTH_PHASES[self.auth]
            other = {k: v for k, v in auths.items() if k != want}
            if other:
                notes.append("AUTH FAILED: requests in its log without \"auth\":\"%s\": %s" % (
                    want, ", ".join("%s x%d" % kv for kv in sorted(other.items()))))
        self.log_summary = {"mode": ((self.auth or "http") if self.http else "tcp") + (
                                "+admin" if self.admin_port else ""),
                            "results": results, "not_ok": reasons, "events": events,
                            "resumed_true": resumed, "non_json_lines": bad}
        if self.http:
            self.log_summary["http_status"] = {str(k): v for k, v in sorted(statuses.items())}
            self.log_summary["http_auth"] = auths
        return notes


def _log_lines(path, skip):
    """The lines of a log, less those written in the byte range skip."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[:skip[0]] + data[skip[1]:]
    return data.decode(errors="replace").splitlines()


def _grep_log(path, needles, skip=(0, 0), limit=3):
    out = []
    try:
        for line in _log_lines(path, skip):
            if any(n in line for n in needles):
                out.append(line.strip()[:200])
    except OSError:
        return []
    if len(out) > limit:
        out = out[:limit] + ["... %d more" % (len(out) - limit)]
    return out


# --- client mode (issue 15) ----------------------------------------------------

class ConnectProxy(Server):
    """A server's client mode: plain TCP on 127.0.0.1:port, a mutual-TLS
    connection to the upstream (`full` or `resume`, Context.upstreams) for
    each, presenting the client certificate and verifying the upstream's
    against `ca` (the bench CA; another one for --connect-check) and the
    name CONNECT_SERVER_NAME. Session reuse is each server's default (on)."""

    def __init__(self, ctx, upstream, ca=None):
        super().__init__(ctx)
        self.upstream = upstream
        self.ca = ca or os.path.join(ctx.pki, "ca.crt")

    def target(self):
        return "127.0.0.1:%d" % self.ctx.upstreams[self.upstream]["port"]

    def loadgen_cmd(self):
        return self.ctx.plain_loadgen_cmd(self.port)

    def probe_args(self):
        return ["--mode", "full", "--count", "1", "--conns", "1", "--time", "5"]

    def start(self, run, label="", expect_fail=False):
        """Starts it; ready when one exchange goes through (expect_fail:
        when it listens, and then one exchange must NOT go through)."""
        self.port = free_port()
        self.dir = os.path.join(self.ctx.tmp, "%s-connect-%s-%d" % (self.name, label, run))
        os.makedirs(self.dir)
        cmd = self.command()
        self.logfile = os.path.join(self.dir, "server.log")
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        if expect_fail:
            wait_port(self.port, self.proc)
            r = subprocess.run(self.loadgen_cmd() + self.probe_args(), capture_output=True,
                               text=True)
            return r.returncode != 0
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise BenchError("exited with status %s at start; see %s" % (
                    self.proc.returncode, self.logfile))
            r = subprocess.run(self.loadgen_cmd() + self.probe_args(), capture_output=True,
                               text=True)
            if r.returncode == 0:
                return True
            if time.monotonic() > deadline:
                raise BenchError("no exchange went through it: %s" % r.stderr.strip()[-300:])
            time.sleep(0.1)


class NginxConnect(ConnectProxy, Nginx):
    def command(self):
        p, d = self.pki, self.dir
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.load_module + f"""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
stream {{
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        proxy_pass {self.target()};
        proxy_ssl on;
        proxy_ssl_certificate {p}/client.crt;
        proxy_ssl_certificate_key {p}/client.key;
        proxy_ssl_trusted_certificate {self.ca};
        proxy_ssl_verify on;
        proxy_ssl_verify_depth 3;
        proxy_ssl_name {CONNECT_SERVER_NAME};
        proxy_ssl_server_name on;
        proxy_ssl_protocols TLSv1.3;
        proxy_ssl_session_reuse on;
    }}
}}
""")
        return [self.bin, "-p", d + "/", "-e", d + "/error.log", "-c", conf,
                "-g", "daemon off;"]


class HaproxyConnect(ConnectProxy, Haproxy):
    def command(self):
        p = self.pki
        pem = os.path.join(self.dir, "client.pem")  # certificate and key in one file
        with open(pem, "w") as out:
            for part in ("client.crt", "client.key"):
                with open(os.path.join(p, part)) as f:
                    out.write(f.read())
        os.chmod(pem, 0o600)
        conf = os.path.join(self.dir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""\
global
    nbthread 1
    maxconn 8192
defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
listen bench
    bind 127.0.0.1:{self.port}
    server upstream {self.target()} ssl crt {pem} ca-file {self.ca} verify required \
verifyhost {CONNECT_SERVER_NAME} sni str({CONNECT_SERVER_NAME}) ssl-min-ver TLSv1.3
""")
        return [self.bin, "-f", conf, "-db"]


class StunnelConnect(ConnectProxy, Stunnel):
    def command(self):
        p = self.pki
        conf = os.path.join(self.dir, "stunnel.conf")
        with open(conf, "w") as f:
            f.write(f"""\
foreground = yes
pid =
output = {self.dir}/stunnel.log
syslog = no
debug = warning

[bench]
client = yes
accept = 127.0.0.1:{self.port}
connect = {self.target()}
cert = {p}/client.crt
key = {p}/client.key
CAfile = {self.ca}
verifyChain = yes
checkHost = {CONNECT_SERVER_NAME}
sni = {CONNECT_SERVER_NAME}
sslVersionMin = TLSv1.3
""")
        return [self.bin, conf]


class SteeldoorConnect(ConnectProxy, Steeldoor):
    def command(self):
        p = self.pki
        return [self.bin, "connect", "--listen", "127.0.0.1:%d" % self.port,
                "--target", self.target(), "--cert", p + "/client.crt",
                "--key", p + "/client.key", "--cacert", self.ca,
                "--server-name", CONNECT_SERVER_NAME, "--workers", "1", "--name", "bench"]


CONNECT_CLASSES = {"nginx": NginxConnect, "haproxy": HaproxyConnect, "stunnel": StunnelConnect,
                   "steeldoor": SteeldoorConnect}


SERVER_CLASSES = {"nginx": Nginx, "haproxy": Haproxy, "stunnel": Stunnel, "steeldoor": Steeldoor}


# --- the load generator --------------------------------------------------------

class LineReader:
    """Reads lines from a child's stdout with a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise BenchError("load generator timed out")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise BenchError("load generator exited (status %s)" % self.proc.wait())
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


class Scraper:
    """GETs http://127.0.0.1:port/metrics every `interval` seconds, the
    first at once, in a thread, until stop() (and at most max_scrapes
    times): what Prometheus does, more often. Each scrape is one connection
    (the admin listener answers one request per connection), the answer read
    to its end, its status and Content-Length checked, and whether it has a
    sample of METRICS_REQUIRED."""

    def __init__(self, port, interval, max_scrapes):
        self.port = port
        self.interval = interval
        self.max_scrapes = max_scrapes
        self.stop_ev = threading.Event()
        self.thread = None
        self.attempts = 0
        self.ok = 0
        self.failures = []        # why each failed one failed
        self.without_required = 0  # answered 200, but no sample of METRICS_REQUIRED
        self.durations_ms = []
        self.body_bytes = None     # of the last successful one
        self.accepted = None       # METRICS_REQUIRED of the L4 listener, last scrape

    def start(self):
        self.thread = threading.Thread(target=self._loop, name="scraper", daemon=True)
        self.thread.start()

    def stop(self):
        """Stops it and waits for a scrape in flight (bounded by its timeout),
        so that what the server spends on it is inside the phase's CPU."""
        self.stop_ev.set()
        if self.thread:
            self.thread.join(METRICS_SCRAPE_TIMEOUT + 1)

    def _loop(self):
        t0 = time.monotonic()
        while self.attempts < self.max_scrapes and not self.stop_ev.is_set():
            self.attempts += 1
            try:
                self._scrape()
            except (OSError, ValueError) as e:
                self.failures.append(str(e)[:200])
            wake = t0 + self.attempts * self.interval
            self.stop_ev.wait(max(0.0, wake - time.monotonic()))

    def _scrape(self):
        t = time.monotonic()
        deadline = t + METRICS_SCRAPE_TIMEOUT
        data = b""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=METRICS_SCRAPE_TIMEOUT) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"User-Agent: steeldoor-bench\r\nAccept: text/plain\r\n"
                         b"Connection: close\r\n\r\n")
            while len(data) <= METRICS_MAX_BYTES:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ValueError("scrape timed out after %.1fs" % METRICS_SCRAPE_TIMEOUT)
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        if not sep or not lines[0].startswith("HTTP/1.1 "):
            raise ValueError("not an HTTP answer: %r" % data[:80])
        status = lines[0].split(" ", 2)[1]
        if status != "200":
            raise ValueError("status %s: %s" % (status, lines[0]))
        length = None
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if length is not None and length != len(body):
            raise ValueError("Content-Length %d, %d bytes of body" % (length, len(body)))
        self.durations_ms.append((time.monotonic() - t) * 1000)
        self.ok += 1
        self.body_bytes = len(body)
        text = body.decode(errors="replace")
        found = False
        for line in text.splitlines():
            if line.startswith(METRICS_REQUIRED + "{") or line.startswith(METRICS_REQUIRED + " "):
                found = True
                if 'listener="bench"' in line:
                    self.accepted = float(line.rsplit(" ", 1)[1])
        if not found:
            self.without_required += 1

    def result(self):
        return {"scrapes_attempted": self.attempts, "scrapes_ok": self.ok,
                "scrape_failures": self.failures[:5],
                "scrapes_without_required": self.without_required,
                "scrape_ms": [round(d, 2) for d in self.durations_ms],
                "scrape_bytes": self.body_bytes,
                "accepted_total_bench": self.accepted,
                "scrape_interval_s": self.interval}


def scrape_cost(server, n):
    """The server's CPU per scrape of /metrics with no other load: n scrapes
    one after the other, its processes' ns count (tree_cpu_ns) across them,
    less what they spend idle for as long right after."""
    root = server.proc.pid
    sc = Scraper(server.admin_port, 0.0, n)
    ns0, t0 = tree_cpu_ns(root), time.monotonic()
    if ns0 is None:
        return {}
    for _ in range(n):
        sc.attempts += 1
        try:
            sc._scrape()
        except (OSError, ValueError) as e:
            sc.failures.append(str(e)[:200])
    ns1, wall = tree_cpu_ns(root), time.monotonic() - t0
    time.sleep(wall)
    idle = tree_cpu_ns(root) - ns1
    out = {"cost_scrapes": sc.ok, "cost_scrape_failures": sc.failures[:3],
           "cost_busy_us": (ns1 - ns0) / 1e3, "cost_idle_us": idle / 1e3,
           "cost_wall_ms": wall * 1e3}
    if sc.ok:
        out["scrape_cpu_us"] = max(0, ns1 - ns0 - idle) / 1e3 / sc.ok
    return out


def run_phase(ctx, server, phase, lg_args=None, label=None, ns=False):
    """One phase against a running server: its loadgen result plus the
    server's CPU seconds (and RSS for idle) across exactly the phase.
    lg_args (a slice of the phase) replace the phase's own; the CPU is then
    also read in ns (tree_cpu_ns), as it is with ns. The metrics phase
    scrapes the server's admin listener during the phase (Scraper)."""
    cmd = server.loadgen_cmd() + (lg_args or PHASES[phase]) + ["--sync"]
    scraper = None
    if phase == METRICS_PHASE:
        if not server.admin_port:
            raise BenchError("%s: the server has no admin listener" % phase)
        a = lg_args or PHASES[phase]
        phase_time = float(a[a.index("--time") + 1])
        scraper = Scraper(server.admin_port, METRICS_SCRAPE_INTERVAL,
                          int(phase_time / METRICS_SCRAPE_INTERVAL) + 2)
    err_path = os.path.join(server.dir, "loadgen-%s.err" % (label or phase))
    with open(err_path, "w+") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        try:
            reader = LineReader(proc)
            if reader.readline(90) != "ready":
                raise BenchError("load generator did not get ready")
            root = server.proc.pid
            rss0 = tree_rss_kib(root)
            cpu0 = tree_cpu_seconds(root)
            ns0 = tree_cpu_ns(root) if (lg_args or ns) else None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            if scraper:
                scraper.start()
            try:
                res = json.loads(reader.readline(180))
            finally:
                if scraper:
                    scraper.stop()
            ns1 = tree_cpu_ns(root) if ns0 is not None else None
            cpu1 = tree_cpu_seconds(root)
            if phase == "idle":
                time.sleep(1.0)  # let the server settle with all 2000 open
                res["rss_before_kib"] = rss0
                res["rss_held_kib"] = tree_rss_kib(root)
                res["server_cpu_s_opening"] = cpu1 - cpu0
            proc.stdin.close()
            status = proc.wait(timeout=60)
        except BenchError as e:
            proc.kill()
            proc.wait()
            err.seek(0)
            raise BenchError("%s: %s; stderr: %s" % (phase, e, err.read().strip()[-500:]))
        err.seek(0)
        stderr = err.read().strip()
    res["server_cpu_s"] = cpu1 - cpu0
    if ns1 is not None:
        res["server_cpu_ns"] = ns1 - ns0
    if scraper:
        res.update(scraper.result())
    res["exit_status"] = status
    res["stderr"] = stderr[-1000:]
    return res


def slice_args(phase, n):
    """The load-generator arguments of 1/n of a phase (its --count and
    --time divided by n)."""
    a = list(PHASES[phase])
    for opt, div in (("--count", lambda v: str(max(1, int(v) // n))),
                     ("--time", lambda v: "%.4g" % (float(v) / n))):
        i = a.index(opt)
        a[i + 1] = div(a[i + 1])
    return a


def merge_slices(rs):
    """The slices of one phase on one instance as one result: counts and
    CPU summed, latency percentiles the median of the slices'."""
    m = dict(rs[0])
    for k in ("ops", "errors", "err_connect", "err_handshake", "err_io", "err_timeout",
              "err_peer_closed", "err_status", "bytes", "elapsed_s", "server_cpu_s",
              "server_cpu_ns", "unclean_close", "close_without_notify", "tickets"):
        if all(k in r for r in rs):
            m[k] = sum(r[k] for r in rs)
    m["ops_per_s"] = m["ops"] / m["elapsed_s"] if m.get("elapsed_s") else 0
    for k in ("p50_us", "p99_us"):
        m[k] = statistics.median(r[k] for r in rs)
    m["exit_status"] = next((r["exit_status"] for r in rs if r["exit_status"]), 0)
    m["stderr"] = "\n".join(r["stderr"] for r in rs if r.get("stderr"))[-1000:]
    m["slices"] = len(rs)
    m["slice_cpu_us"] = [round((r["server_cpu_ns"] / 1e3 if "server_cpu_ns" in r else
                                r["server_cpu_s"] * 1e6) / r["ops"], 2) if r.get("ops") else None
                         for r in rs]
    return m


def figures_of(phase, r):
    """The figures one phase result gives."""
    ops = r.get("ops", 0)
    # the ns count where there is one (the slices), else the ticks
    cpu = r["server_cpu_ns"] / 1e9 if "server_cpu_ns" in r else r["server_cpu_s"]
    f = {}
    if phase in ("full", "resumed") and ops:
        f[phase + "_tickets_per_conn"] = r.get("tickets", 0) / ops
    if phase in ("full", "resumed", "keepalive") and ops:
        f[phase + "_cpu_us"] = cpu / ops * 1e6
        f[phase + "_per_s"] = r["ops_per_s"]
        if phase == "keepalive":
            f["keepalive_p50_us"] = r["p50_us"]
            f["keepalive_p99_us"] = r["p99_us"]
        else:
            f[phase + "_p50_ms"] = r["p50_us"] / 1000
            f[phase + "_p99_ms"] = r["p99_us"] / 1000
    if phase == METRICS_PHASE and ops:
        # metrics_keepalive_*: the keepalive figures, with /metrics scraped
        f["metrics_keepalive_cpu_us"] = cpu / ops * 1e6
        f["metrics_keepalive_per_s"] = r["ops_per_s"]
        f["metrics_keepalive_p50_us"] = r["p50_us"]
        f["metrics_keepalive_p99_us"] = r["p99_us"]
        f["metrics_scrapes"] = r.get("scrapes_ok", 0)
        if r.get("scrape_ms"):
            f["metrics_scrape_ms"] = statistics.median(r["scrape_ms"])
        if r.get("scrape_cpu_us") is not None:
            f["metrics_scrape_cpu_us"] = r["scrape_cpu_us"]
            # the ratio the phase's scrapes alone would give, at this cost
            extra = r["scrape_cpu_us"] * r.get("scrapes_ok", 0)
            if cpu * 1e6 > extra:
                f["metrics_scrapes_implied_ratio"] = cpu * 1e6 / (cpu * 1e6 - extra)
    if phase in HTTP_PHASES and ops:
        k = phase_key(phase)
        f[k + "_cpu_us"] = cpu / ops * 1e6
        f[k + "_per_s"] = r["ops_per_s"]
        f[k + "_p50_us"] = r["p50_us"]
        f[k + "_p99_us"] = r["p99_us"]
    if phase in CONNECT_PHASES and ops:
        k = phase_key(phase)
        f[k + "_cpu_us"] = cpu / ops * 1e6
        f[k + "_per_s"] = r["ops_per_s"]
        if phase == "connect-keepalive":
            f[k + "_p50_us"] = r["p50_us"]
            f[k + "_p99_us"] = r["p99_us"]
        else:
            f[k + "_p50_ms"] = r["p50_us"] / 1000
            f[k + "_p99_ms"] = r["p99_us"] / 1000
            if r.get("upstream_conns"):
                f[k + "_upstream_resumed_fraction"] = r["upstream_resumed"] / r["upstream_conns"]
    if phase == "resumed":
        f["resumed_fraction"] = r["resumed_fraction"]
    if phase == "tiny" and r.get("bytes"):
        # one plaintext byte per record: bytes are records
        f["tiny_cpu_ns_per_record"] = cpu / r["bytes"] * 1e9
        f["tiny_records_per_s"] = r["bytes"] / r["elapsed_s"]
        f["tiny_p50_us"] = r["p50_us"]
    if phase == "bulk" and r.get("bytes"):
        f["bulk_cpu_s_per_gib"] = cpu / (r["bytes"] / GIB)
        f["bulk_gib_per_s"] = r["gib_per_s"]
    if phase == "idle" and r.get("connected"):
        f["idle_rss_kib_per_conn"] = (r["rss_held_kib"] - r["rss_before_kib"]) / r["connected"]
    return f


def phase_problems(phase, r):
    """Why a phase result must not be trusted, if it must not."""
    probs = []
    if r["exit_status"] == 3 or (phase == "resumed" and r.get("resumed_fraction", 0) < 0.9):
        probs.append("RESUMPTION FAILED: %.1f%% of connections resumed (< 90%%)"
                     % (100 * r.get("resumed_fraction", 0)))
    elif r["exit_status"] != 0:
        probs.append("load generator exit status %d" % r["exit_status"])
    if r.get("errors"):
        probs.append("%d errors (connect %d, handshake %d, io %d, timeout %d, peer closed %d%s)"
                     % (r["errors"], r["err_connect"], r["err_handshake"], r["err_io"],
                        r["err_timeout"], r["err_peer_closed"],
                        ", HTTP status %d" % r.get("err_status", 0) if phase in HTTP_PHASES
                        else ""))
        if phase in AUTH_PHASES and r.get("err_status"):
            # A request the second factor refused: what was measured is not
            # the check passing. Fails the bench, like resumption that does
            # not resume.
            probs.append("AUTH FAILED: %d responses were not a 200 (see the load generator's "
                         "lines)" % r["err_status"])
        if phase in HTTP_PHASES and r.get("stderr"):
            probs.append("load generator: " + " | ".join(r["stderr"].splitlines()[:3])[:600])
    if phase in ("connect-full", "connect-resumed") and "upstream_conns" in r:
        up, res, ops = r["upstream_conns"], r["upstream_resumed"], r.get("ops", 0)
        if up < 0.9 * ops:
            probs.append("the upstream logged %d connections for %d through the proxy"
                         % (up, ops))
        if phase == "connect-resumed" and res < 0.9 * max(up, 1):
            probs.append("RESUMPTION FAILED: %d of %d upstream handshakes resumed (< 90%%)"
                         % (res, up))
        if phase == "connect-full" and res:
            probs.append("%d of %d upstream handshakes resumed in the full phase"
                         % (res, up))
    if phase == METRICS_PHASE:
        # What was measured must include scrapes that worked: none, or an
        # answer without the counters, fails the bench (like AUTH FAILED).
        if not r.get("scrapes_ok"):
            probs.append("METRICS FAILED: no successful scrape of /metrics (%d attempted%s)" % (
                r.get("scrapes_attempted", 0), (": " + "; ".join(r["scrape_failures"][:3]))
                if r.get("scrape_failures") else ""))
        elif r.get("scrapes_without_required"):
            probs.append("METRICS FAILED: %d of %d answers of /metrics had no %s" % (
                r["scrapes_without_required"], r["scrapes_ok"], METRICS_REQUIRED))
        else:
            failed = r.get("scrapes_attempted", 0) - r["scrapes_ok"]
            if failed:
                # fewer scrapes than asked: the figure would be too kind
                probs.append("%d of %d scrapes of /metrics failed: %s" % (
                    failed, r["scrapes_attempted"], "; ".join(r["scrape_failures"][:3])))
            if r.get("accepted_total_bench") is None:
                probs.append("METRICS FAILED: /metrics had no %s{listener=\"bench\"}"
                             % METRICS_REQUIRED)
            elif r["accepted_total_bench"] < r.get("conns", 1):
                probs.append("METRICS FAILED: %s{listener=\"bench\"} was %g with %d "
                             "connections open" % (METRICS_REQUIRED, r["accepted_total_bench"],
                                                    r.get("conns", 1)))
    if phase == "idle" and r.get("connected", 0) < 2000:
        probs.append("only %d of 2000 idle connections were held" % r.get("connected", 0))
    if r.get("tls_version") and (r["tls_version"] != "TLSv1.3" or r["group"] != "x25519"):
        probs.append("negotiated %s %s, not TLSv1.3 x25519" % (r["tls_version"], r["group"]))
    return probs


def observations(runs):
    """Facts worth knowing that do not invalidate a figure."""
    no_notify = sum(r.get(p, {}).get("close_without_notify", 0) for r in runs for p in PHASES)
    closes = sum(r.get(p, {}).get("ops", 0) for r in runs for p in ("full", "resumed"))
    out = []
    if no_notify:
        out.append("closed %d connections without a TLS close_notify (of about %d "
                   "connections closed by the client with one)" % (no_notify, closes))
    return out


# --- orchestration ---------------------------------------------------------------

class Context:
    def __init__(self, args):
        self.steeldoor = os.path.abspath(args.steeldoor)
        self.loadgen = os.path.join(os.path.abspath(args.bin_dir), "loadgen")
        self.backend = os.path.join(os.path.abspath(args.bin_dir), "backend")
        self.tmp = tempfile.mkdtemp(prefix="steeldoor-bench-")
        self.pki = os.path.join(self.tmp, "pki")
        self.backend_port = None
        self.backend_proc = None
        self.http_backend_port = None
        self.http_backend_proc = None
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        self.l4 = any(p not in HTTP_PHASES for p in phases)
        # The second factor: per AUTH_PHASES phase, steeldoor's extra flags,
        # the credential (a Bearer value) and a wrong one of the same kind.
        self.auth = {}
        self.auth_dir = os.path.join(self.tmp, "auth")
        self.upstreams = {}  # client-mode phases: name -> port, proc, log

    def auth_serve_args(self, phase):
        return self.auth[phase]["serve"] if phase else []

    def auth_loadgen_args(self, phase):
        return ["--header", "Authorization: Bearer " + self.auth[phase]["cred"]] if phase else []

    def auth_wrong_args(self, phase):
        return ["--header", "Authorization: Bearer " + self.auth[phase]["wrong"]]

    def make_auth(self, phases):
        """The keys file (with `steeldoor apikey new`) and the JWKS and
        token of the second-factor phases asked for."""
        if not any(p in AUTH_PHASES for p in phases):
            return
        os.makedirs(self.auth_dir, mode=0o700)
        if "http-apikey" in phases:
            self._make_apikeys()
        if "http-jwt" in phases:
            self._make_jwt()

    def _apikey_new(self, keys, kid, bind):
        r = subprocess.run([self.steeldoor, "apikey", "new", "--file", keys, "--id", kid,
                            "--bind", bind], capture_output=True, text=True)
        key = r.stdout.strip()
        if r.returncode != 0 or not key.startswith("sdk_") or len(key.split()) != 1:
            raise BenchError("steeldoor apikey new --id %s failed (status %d): %s" % (
                kid, r.returncode, (r.stderr.strip().splitlines() or ["?"])[0][:300]))
        return key

    def _make_apikeys(self):
        keys = os.path.join(self.auth_dir, "apikeys.yaml")
        # Other clients' keys first: the lookup compares every entry.
        for i in range(AUTH_OTHER_KEYS):
            self._apikey_new(keys, "other-%02d" % i,
                             "uri:spiffe://bench.steeldoor.test/other-%02d" % i)
        key = self._apikey_new(keys, "bench", "uri:" + CLIENT_URI)
        os.chmod(keys, 0o600)  # steeldoor refuses a keys file others may write
        # A wrong key of the right form: a key nobody was given.
        self.auth["http-apikey"] = {
            "serve": ["--api-keys", keys], "cred": key,
            "wrong": "sdk_" + b64url(secrets.token_bytes(32))}

    def _make_jwt(self):
        """An ES256 key (openssl genpkey), its JWKS, and a token for the
        bench client: sub, iss, aud, exp in an hour, bound to the client
        certificate (cnf."x5t#S256", RFC 8705)."""
        d = self.auth_dir
        key = os.path.join(d, "jwt-signing.key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key], check=True,
                       capture_output=True)
        os.chmod(key, 0o600)
        spki = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                              check=True, capture_output=True).stdout
        # A P-256 SubjectPublicKeyInfo ends with the uncompressed point 04||x||y.
        if len(spki) != 91 or spki[-65] != 4:
            raise BenchError("unexpected P-256 public key from openssl (%d bytes)" % len(spki))
        jwks = os.path.join(d, "jwks.json")
        with open(jwks, "w") as f:
            json.dump({"keys": [{"kty": "EC", "crv": "P-256", "x": b64url(spki[-64:-32]),
                                 "y": b64url(spki[-32:]), "kid": "bench", "alg": "ES256",
                                 "use": "sig"}]}, f)
            f.write("\n")
        os.chmod(jwks, 0o644)
        self.auth["http-jwt"] = {
            "serve": ["--jwks", jwks, "--jwt-issuer", JWT_ISSUER, "--jwt-audience",
                      JWT_AUDIENCE], "signing_key": key, "expires": 0}
        self.auth_prepare("http-jwt")

    def auth_prepare(self, phase):
        """Before an instance of `phase` starts: a token with less than ten
        minutes left (a long `make bench`) is minted again."""
        a = self.auth.get(phase)
        if phase != "http-jwt" or a["expires"] > time.time() + 600:
            return
        with open(os.path.join(self.pki, "client.crt")) as f:
            der = pem_first_cert_der(f.read())
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "kid": "bench"}
        claims = {"sub": JWT_SUB, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now,
                  "exp": now + 3600, "cnf": {"x5t#S256": b64url(hashlib.sha256(der).digest())}}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", a["signing_key"]],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        token = signing_input + "." + b64url(ecdsa_der_to_raw(sig, 32))
        # A wrong token: the same with one signature character changed (a
        # character in the middle, so every bit it encodes is significant).
        i = len(token) - 20
        a["wrong"] = token[:i] + ("B" if token[i] != "B" else "C") + token[i + 1:]
        a["cred"], a["expires"] = token, now + 3600

    def loadgen_cmd(self, port):
        p = self.pki
        return [self.loadgen, "--connect", "127.0.0.1:%d" % port, "--cert", p + "/client.crt",
                "--key", p + "/client.key", "--cacert", p + "/ca.crt"]

    def plain_loadgen_cmd(self, port):
        """The load generator as the plain-TCP caller of a client mode."""
        return [self.loadgen, "--connect", "127.0.0.1:%d" % port, "--plain"]

    def _nginx_upstream(self, name, port):
        """nginx's stream module as the upstream: stateless session tickets
        (reusable by concurrent connections) for "resume", none for "full";
        each connection's $ssl_session_reused in its access log."""
        nginx = which("nginx")
        if not nginx:
            raise BenchError("--connect-upstream nginx: nginx is not installed")
        v = subprocess.run([nginx, "-V"], capture_output=True, text=True).stderr
        load = ""
        if "--with-stream=dynamic" in v or "--with-stream " not in v + " ":
            load = "load_module %s;\n" % NGINX_STREAM_MODULE
        d = os.path.join(self.tmp, "upstream-" + name)
        os.makedirs(d)
        p = self.pki
        tickets = "on" if name == "resume" else "off"
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(load + f"""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
stream {{
    log_format up '{{"event":"conn","reused":"$ssl_session_reused"}}';
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {p}/server.crt;
        ssl_certificate_key {p}/server.key;
        ssl_client_certificate {p}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.3;
        ssl_session_tickets {tickets};
        ssl_session_cache off;
        ssl_session_timeout 5m;
        access_log {d}/access.log up;
        proxy_pass 127.0.0.1:{self.backend_port};
    }}
}}
""")
        open(os.path.join(d, "access.log"), "w").close()
        return ([nginx, "-p", d + "/", "-e", d + "/error.log", "-c", d + "/nginx.conf",
                 "-g", "daemon off;"], os.path.join(d, "access.log"))

    def start_upstreams(self, which, kind="nginx"):
        """The upstreams of the client-mode phases, in front of the L4
        backend, requiring and verifying a client certificate: "full"
        issues no session tickets, "resume" does. `kind` nginx (stateless
        tickets: one ticket resumes any number of connections) or steeldoor
        (serve; --session-lifetime 0 for "full"; its sessions are stateful,
        each TLS 1.3 one single-use). Each must refuse a client without a
        certificate."""
        p = self.pki
        self.upstream_kind = kind
        for name in which:
            port = free_port()
            logf = os.path.join(self.tmp, "upstream-%s.log" % name)
            if kind == "nginx":
                cmd, access = self._nginx_upstream(name, port)
            cmd = cmd if kind == "nginx" else [self.steeldoor, "serve", "--listen", "127.0.0.1:%d" % port,
                   "--target", "127.0.0.1:%d" % self.backend_port,
                   "--cert", p + "/server.crt", "--key", p + "/server.key",
                   "--cacert", p + "/ca.crt", "--allow-all", "--workers", "1",
                   "--name", "upstream-" + name] + (
                       ["--session-lifetime", "0"] if name == "full" else [])
            with open(logf, "wb") as out:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            self.upstreams[name] = {"port": port, "proc": proc,
                                    "log": access if kind == "nginx" else logf}
            probe = self.loadgen_cmd(port) + ["--mode", "full", "--count", "1", "--conns", "1",
                                              "--time", "5"]
            deadline = time.monotonic() + 15
            while subprocess.run(probe, capture_output=True).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("the %s upstream (%s) did not start; see %s"
                                     % (name, kind, logf))
                time.sleep(0.1)
            if subprocess.run(probe + ["--no-client-cert"], capture_output=True).returncode == 0:
                raise BenchError("the %s upstream let a client WITHOUT a certificate through"
                                 % name)

    def upstream_offset(self, name):
        try:
            return os.path.getsize(self.upstreams[name]["log"])
        except OSError:
            return 0

    def upstream_resumed(self, name, offset):
        """(connections, of them resumed) in the upstream's log since offset."""
        with open(self.upstreams[name]["log"], "rb") as f:
            f.seek(offset)
            data = f.read()
        conns = resumed = 0
        for line in data.decode(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "conn":
                conns += 1
                resumed += rec.get("resumed") is True or rec.get("reused") == "r"
        return conns, resumed

    def stop_upstreams(self):
        for u in self.upstreams.values():
            proc = u["proc"]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def make_wrong_ca(self):
        """Another CA (for --connect-check): no upstream chains to it."""
        d = os.path.join(self.tmp, "pki-wrong")
        subprocess.run([self.steeldoor, "pki", "init", "--dir", d], check=True,
                       stdout=subprocess.DEVNULL)
        return os.path.join(d, "ca.crt")

    def make_pki(self):
        sd = self.steeldoor
        for argv in (["init"],
                     ["issue", "--name", "server", "--server", "--dns", "localhost", "--ip",
                      "127.0.0.1"],
                     ["issue", "--name", "client", "--client", "--uri", CLIENT_URI]):
            subprocess.run([sd, "pki"] + argv[:1] + ["--dir", self.pki] + argv[1:], check=True,
                           stdout=subprocess.DEVNULL)

    def _backend(self, http):
        port = free_port()
        proc = subprocess.Popen(
            [self.backend, "--listen", "127.0.0.1:%d" % port] + (["--http"] if http else []),
            stdin=subprocess.DEVNULL, start_new_session=True)
        wait_port(port, proc)
        return port, proc

    def start_backend(self, http=False):
        """The backend of the L4 phases (bench.h protocol), and the HTTP
        one (backend --http) when the http phase runs."""
        self.backend_port, self.backend_proc = self._backend(False)
        if http:
            self.http_backend_port, self.http_backend_proc = self._backend(True)

    def stop_backend(self):
        for proc in (self.backend_proc, self.http_backend_proc):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_first_cert_der(pem):
    """The DER of the first certificate of a PEM file (the leaf)."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    a = pem.find(begin)
    b = pem.find(end, a)
    if a < 0 or b < 0:
        raise BenchError("no certificate in the client's PEM file")
    return base64.b64decode("".join(pem[a + len(begin):b].split()))


def ecdsa_der_to_raw(der, size):
    """An ECDSA signature as DER (SEQUENCE of INTEGER r, s: what OpenSSL
    writes) to JWS's raw r||s, each `size` bytes (RFC 7518 3.4)."""
    def fail():
        raise BenchError("unexpected ECDSA signature from openssl: %s" % der.hex())
    if len(der) < 8 or der[0] != 0x30 or der[1] & 0x80 or der[1] != len(der) - 2:
        fail()
    out, i = b"", 2
    for _ in range(2):
        if i + 2 > len(der) or der[i] != 0x02:
            fail()
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        if n & 0x80 or i + 2 + n > len(der) or len(v) > size:
            fail()
        out += v.rjust(size, b"\0")
        i += 2 + n
    if i != len(der):
        fail()
    return out


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 8192:
        raise BenchError("RLIMIT_NOFILE is %d; 2000 idle connections through a proxy need "
                         "about 8192 (raise the hard limit: ulimit -Hn)" % soft)
    return soft


def fmt(v, digits):
    if v is None:
        return "-"
    return ("%." + str(digits) + "f") % v


def print_table(servers, medians, ratios, counts, expected, not_applicable=None):
    """One table: a row per figure, a column per server; each cell the
    median and its ratio to nginx's; [n] when only n runs were valid;
    n/a for a phase the server cannot do."""
    not_applicable = not_applicable or {}
    names = [s for s in servers if s in medians]
    head = ["figure (median of runs; xN = ratio to nginx)"] + names
    rows = []
    for key, label, unit, phase, digits in FIGURES:
        if phase not in expected:
            continue
        row = [label + (" (%s)" % unit if unit else "")]
        for n in names:
            if phase in not_applicable.get(n, {}):
                row.append("n/a")
                continue
            v = medians[n].get(key)
            cell = fmt(v, digits)
            r = ratios.get(n, {}).get(key)
            if v is not None and r is not None and unit:
                cell += " x%.2f" % r
            got = counts.get(n, {}).get(key, 0)
            if got < expected[phase]:
                cell += " [%d]" % got
            row.append(cell)
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(head)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + r[0].ljust(widths[0]) + " | " +
                     " | ".join(c.rjust(widths[i + 1]) for i, c in enumerate(r[1:])) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steeldoor", default="build/steeldoor")
    ap.add_argument("--bin-dir", default="build/bench", help="where loadgen and backend are")
    ap.add_argument("--runs", type=int, default=5, help="runs per server (median taken)")
    ap.add_argument("--idle-runs", type=int, default=3,
                    help="runs that include the idle phase (it is the slowest)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--phases", default=",".join(PHASE_ORDER))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--connect-upstream", choices=("nginx", "steeldoor"), default="nginx",
                    help="the mTLS server the client modes connect to (default nginx: "
                         "stateless tickets; steeldoor serve's TLS 1.3 sessions are "
                         "single-use)")
    ap.add_argument("--connect-check", action="store_true",
                    help="client-mode phases: first check that every server's client mode, "
                         "pointed at a wrong CA, gets no exchange through (a one-off check)")
    args = ap.parse_args()

    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    for s in wanted:
        if s not in SERVER_CLASSES:
            ap.error("unknown server %s (known: %s)" % (s, ", ".join(SERVERS)))
    for p in phases:
        if p not in PHASES:
            ap.error("unknown phase %s (known: %s)" % (p, ", ".join(PHASE_ORDER)))
    # A second-factor phase is a ratio to steeldoor's plain http of the same
    # run: it brings that phase along.
    auth_asked = [p for p in phases if p in AUTH_PHASES]
    if auth_asked and "http" not in phases:
        phases.insert(phases.index(auth_asked[0]), "http")
        log("bench: phase http added: %s are measured against it" % ", ".join(auth_asked))
    # Likewise the metrics phase is a ratio to steeldoor's keepalive.
    if METRICS_PHASE in phases and METRICS_BASE not in phases:
        phases.insert(phases.index(METRICS_PHASE), METRICS_BASE)
        log("bench: phase %s added: %s is measured against it" % (METRICS_BASE, METRICS_PHASE))
    args.phases = ",".join(phases)

    t_start = time.monotonic()
    nofile = raise_nofile()
    ctx = Context(args)
    for b in (ctx.loadgen, ctx.backend):
        if not os.access(b, os.X_OK):
            raise BenchError("%s is not built (make bench-build)" % b)
    servers, skipped, versions = {}, {}, {}
    for name in wanted:
        srv = SERVER_CLASSES[name](ctx)
        why = srv.missing()
        if why:
            skipped[name] = why
            log("bench: skipping %s: %s" % (name, why))
            continue
        servers[name] = srv
        versions[name] = srv.version()
    if not servers:
        raise BenchError("no server to measure")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log("bench: %s; %d runs; phases %s; servers %s; RLIMIT_NOFILE %d; temp dir %s" % (
        stamp, args.runs, ",".join(phases), ", ".join(
            "%s %s" % (n, versions[n]) for n in servers), nofile, ctx.tmp))

    per_run = {n: [] for n in servers}
    problems = {n: [] for n in servers}
    log_summaries = {n: [] for n in servers}
    # Phases a server cannot do (stunnel has no HTTP mode): left out, and
    # said so in the table (n/a) and the JSON.
    not_applicable = {}
    for name, srv in servers.items():
        for phase in phases:
            why = None
            if phase in HTTP_PHASES and srv.no_http:
                why = srv.no_http
            elif phase in AUTH_PHASES and name != AUTH_SERVER:
                why = AUTH_NOT_APPLICABLE
            elif phase == METRICS_PHASE and name != METRICS_SERVER:
                why = METRICS_NOT_APPLICABLE
            if why:
                not_applicable.setdefault(name, {})[phase] = why
                log("bench: %s: phase %s not applicable (%s)" % (name, phase, why))

    def open_instance(srv, run, http, auth=None, admin=False):
        """Starts one instance of a server (L4, or HTTP mode, with the
        second factor of phase `auth` or none; with an admin listener) and
        warms it up."""
        srv.start(run, http=http, auth=auth, admin=admin)
        if http:
            # Warm-up: the request path, and the server's pool of
            # backend connections.
            warm = ["--mode", "http", "--conns", "8", "--count", "2000", "--time", "2"]
        else:
            # Warm-up: first handshakes fill caches and allocators.
            warm = ["--mode", "full", "--conns", "16", "--count", "300", "--time", "2"]
        subprocess.run(srv.loadgen_cmd() + warm, capture_output=True, check=False)

    def close_instance(name, srv, run, http, auth=None, what=None):
        """Stops it, and notes what its log says."""
        srv.stop()
        for note in srv.log_notes():
            problems[name].append("run %d log%s: %s" % (
                run, " (%s)" % (auth or "HTTP mode") if http else
                " (%s)" % what if what else "", note))
        if getattr(srv, "log_summary", None):
            log_summaries[name].append(srv.log_summary)
            srv.log_summary = None

    def record(name, run, phase, r, results, key=None):
        r["figures"] = figures_of(phase, r)
        r["problems"] = phase_problems(phase, r)
        results[key or phase] = r
        if name != "steeldoor" and phase in CONNECT_PHASES:
            # A peer's client mode that resumes less than it could (stunnel
            # keeps one session per service) is that peer's own limit, not
            # a broken measurement: its figure stays, with a note. steeldoor
            # itself must resume.
            soft = [p for p in r["problems"] if p.startswith("RESUMPTION FAILED")]
            r["problems"] = [p for p in r["problems"] if p not in soft]
            for p in soft:
                p = p.replace("RESUMPTION FAILED: ", "resumed less: ") + (
                    " (its own session reuse; the figure mixes full and resumed handshakes)")
                problems[name].append("run %d %s: %s" % (run, key or phase, p))
                log("bench: %s run %d %s: %s" % (name, run, key or phase, p))
        for p in r["problems"]:
            problems[name].append("run %d %s: %s" % (run, key or phase, p))
            log("bench: %s run %d %s: %s" % (name, run, key or phase, p))

    def run_instance(name, srv, run, inst_phases, http, results, keep=False, metrics=False):
        """Starts an instance, runs inst_phases on it into results, stops it
        (unless keep, and it worked). Returns whether it worked. With
        metrics, the metrics phase runs on its own instance right before
        or right after this one's keepalive (run_metrics)."""
        ok = False
        try:
            open_instance(srv, run, http)
            for i, phase in enumerate(inst_phases):
                pair = metrics and phase == METRICS_BASE
                if pair and run % 2 == 0:
                    run_metrics(name, run, results, "before", inst_phases[:i])
                record(name, run, phase, run_phase(ctx, srv, phase, ns=pair), results)
                if not srv.alive():
                    raise BenchError("the server exited (status %s) during %s"
                                     % (srv.proc.returncode, phase))
                if pair and run % 2 == 1:
                    run_metrics(name, run, results, "after", inst_phases[:i])
            ok = True
        except (BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
            what = "%s (HTTP mode)" % ",".join(inst_phases)
            problems[name].append("run %d FAILED: %s: %s" % (run, what, e) if http else
                                  "run %d FAILED: %s" % (run, e))
            log("bench: %s run %d FAILED: %s" % (name, run, e))
        finally:
            if not (keep and ok):
                close_instance(name, srv, run, http)
        return ok

    def run_metrics(name, run, results, order, prior):
        """The metrics phase: a second L4 instance of steeldoor with an admin
        listener on a free loopback port, warmed up like the first and put
        through the phases the first ran before its keepalive (`prior`,
        unmeasured: a fresh instance spends less per keep-alive request
        than one that has been through full and resumed), the keepalive
        load run on it while the scraper GETs /metrics, then stopped.
        Measured right `order` (before or after) the first instance's
        keepalive; the CPU in ns, as that keepalive's."""
        inst = SERVER_CLASSES[name](ctx)
        inst.missing()
        try:
            open_instance(inst, run, False, admin=True)
            for ph in prior:
                c = run_phase(ctx, inst, ph, label="conditioning-" + ph)
                probs = phase_problems(ph, c)
                if probs:
                    raise BenchError("%s before it (as on the plain instance): %s" % (
                        ph, "; ".join(probs)))
            r = run_phase(ctx, inst, METRICS_PHASE, ns=True)
            r["conditioned_with"] = list(prior)
            # What one scrape costs it, the load gone (its closes done).
            time.sleep(0.3)
            r.update(scrape_cost(inst, METRICS_COST_SCRAPES))
            r["order"] = "%s %s" % (order, METRICS_BASE)
            r["admin"] = "127.0.0.1:%d" % inst.admin_port
            record(name, run, METRICS_PHASE, r, results)
            if not inst.alive():
                raise BenchError("the server exited (status %s) during %s"
                                 % (inst.proc.returncode, METRICS_PHASE))
        except (BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
            problems[name].append("run %d FAILED: %s: %s" % (run, METRICS_PHASE, e))
            log("bench: %s run %d FAILED: %s: %s" % (name, run, METRICS_PHASE, e))
        finally:
            close_instance(name, inst, run, False, what="with --admin")

    def run_connect(name, run, cphases, results):
        """The client-mode phases of one server: an instance per upstream
        (connect-full's, then the one of connect-resumed and
        connect-keepalive), warmed up, each phase measured on the proxy's
        processes only, the upstream's log read for how many of its
        handshakes resumed."""
        for upstream in ("full", "resume"):
            phs = [p for p in cphases if CONNECT_PHASES[p] == upstream]
            if not phs:
                continue
            inst = CONNECT_CLASSES[name](ctx, upstream)
            inst.missing()
            try:
                inst.start(run, upstream)
                subprocess.run(inst.loadgen_cmd() + ["--mode", "full", "--conns", "16", "--count",
                                                     "300", "--time", "2"],
                               capture_output=True, check=False)
                for ph in phs:
                    off = ctx.upstream_offset(upstream)
                    r = run_phase(ctx, inst, ph)
                    time.sleep(0.3)  # the upstream logs a connection when it ends
                    r["upstream_conns"], r["upstream_resumed"] = ctx.upstream_resumed(
                        upstream, off)
                    record(name, run, ph, r, results)
                    if not inst.alive():
                        raise BenchError("the server exited (status %s) during %s"
                                         % (inst.proc.returncode, ph))
            except (BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
                problems[name].append("run %d FAILED: %s (client mode): %s"
                                      % (run, ",".join(phs), e))
                log("bench: %s run %d FAILED (client mode): %s" % (name, run, e))
            finally:
                inst.stop()
                for note in inst.log_notes():
                    problems[name].append("run %d log (client mode): %s" % (run, note))
                if getattr(inst, "log_summary", None):
                    log_summaries[name].append(inst.log_summary)

    def connect_check():
        """One-off: each server's client mode pointed at a CA the upstream's
        certificate does not chain to must get nothing through."""
        wrong = ctx.make_wrong_ca()
        out = {}
        for name in servers:
            inst = CONNECT_CLASSES[name](ctx, "resume", ca=wrong)
            inst.missing()
            try:
                refused = inst.start(0, "wrong-ca", expect_fail=True)
                out[name] = "refused" if refused else "NOT REFUSED"
            except BenchError as e:
                out[name] = "error: %s" % e
            finally:
                inst.stop()
            log("bench: connect check: %s with a wrong CA: %s" % (name, out[name]))
            if out[name] != "refused":
                problems[name].append("connect check FAILED: with a wrong CA: %s" % out[name])
        return out

    def run_second_factor(name, srv, run, plain_phases, auth_phases, results):
        """steeldoor in HTTP mode with the second-factor phases: its plain
        instance runs plain_phases (the `http` phase, as every server does)
        and stays up; one instance per second-factor phase is started
        beside it; then all of them are measured in turn, AUTH_SLICES
        rounds of one slice each (see AUTH_SLICES). results gets each
        second-factor phase and, as "http-interleaved", the plain
        instance's slices: the figure they are compared with."""
        if not run_instance(name, srv, run, plain_phases, True, results, keep=True):
            return
        insts = {"http": srv}
        order = ["http"] + auth_phases
        # The control of the token phase: the plain instance sent requests
        # as long as the token's, whose extra field (listed in Connection,
        # so dropped like the credential and never forwarded) is no
        # credential. The token's ratio to it is what the check itself
        # costs; its ratio to http includes the bytes a token adds.
        pad = None
        if "http-jwt" in auth_phases:
            want = len("Authorization: Bearer ") + len(ctx.auth["http-jwt"]["cred"])
            fixed = len("Connection: x-pad\r\nX-Pad: ")  # two fields: one CRLF more
            pad = ["--header", "Connection: x-pad",
                   "--header", "X-Pad: " + "p" * max(1, want - fixed)]
            order.append("http-padded")
        try:
            for ph in auth_phases:
                insts[ph] = SERVER_CLASSES[name](ctx)
                insts[ph].missing()
                open_instance(insts[ph], run, True, auth=ph)
            slices = {k: [] for k in order}
            args = slice_args("http", AUTH_SLICES)
            for rnd in range(AUTH_SLICES):
                for k in (order if rnd % 2 == 0 else order[::-1]):
                    inst = insts["http" if k == "http-padded" else k]
                    slices[k].append(run_phase(ctx, inst, "http" if k == "http-padded" else k,
                                               lg_args=args + (pad if k == "http-padded"
                                                               else []),
                                               label="%s-slice%d" % (k, rnd + 1)))
                    if not inst.alive():
                        raise BenchError("the server exited (status %s) during the slices of %s"
                                         % (inst.proc.returncode, k))
            record(name, run, "http", merge_slices(slices["http"]), results,
                   key="http-interleaved")
            if pad:
                record(name, run, "http", merge_slices(slices["http-padded"]), results,
                       key="http-padded")
            for ph in auth_phases:
                record(name, run, ph, merge_slices(slices[ph]), results)
            results["slice_order"] = "%d rounds: %s, then reversed, ..." % (
                AUTH_SLICES, ", ".join(order))
        except (BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
            problems[name].append("run %d FAILED: %s (HTTP mode, in turn with http): %s"
                                  % (run, ",".join(auth_phases), e))
            log("bench: %s run %d FAILED: %s" % (name, run, e))
        finally:
            for k, inst in insts.items():
                close_instance(name, inst, run, True, auth=None if k == "http" else k)

    try:
        ctx.make_pki()
        if AUTH_SERVER in servers:
            try:
                ctx.make_auth(phases)
            except (BenchError, subprocess.CalledProcessError, OSError) as e:
                raise BenchError("setting up the second-factor phases: %s (leave them out "
                                 "with --phases)" % e)
        ctx.start_backend(http=any(p in HTTP_PHASES for p in phases))
        connect_checked = None
        if any(p in CONNECT_PHASES for p in phases):
            ctx.start_upstreams(sorted({CONNECT_PHASES[p] for p in phases
                                        if p in CONNECT_PHASES}), args.connect_upstream)
            if args.connect_check:
                connect_checked = connect_check()
        # Runs interleave the servers so that drift on the machine spreads
        # over all of them.
        for run in range(1, args.runs + 1):
            for name, srv in servers.items():
                run_phases = [p for p in phases if p != "idle" or run <= args.idle_runs]
                metrics = (METRICS_PHASE in run_phases and
                           METRICS_PHASE not in not_applicable.get(name, {}))
                l4_phases = [p for p in run_phases
                             if p not in HTTP_PHASES and p not in CONNECT_PHASES and
                             p != METRICS_PHASE]
                connect_phases = [p for p in run_phases if p in CONNECT_PHASES]
                http_phases = [p for p in run_phases
                               if p in HTTP_PHASES and p not in not_applicable.get(name, {})]
                results = {"run": run}
                t0 = time.monotonic()
                if l4_phases:
                    run_instance(name, srv, run, l4_phases, False, results, metrics=metrics)
                plain = [p for p in http_phases if p not in AUTH_PHASES]
                auth_phases = [p for p in http_phases if p in AUTH_PHASES]
                if auth_phases:
                    run_second_factor(name, srv, run, plain, auth_phases, results)
                elif plain:
                    run_instance(name, srv, run, plain, True, results)
                if connect_phases:
                    run_connect(name, run, connect_phases, results)
                per_run[name].append(results)
                short = []
                for phase in l4_phases + ([METRICS_PHASE] if metrics else []) + plain + (
                        ["http-interleaved"] if auth_phases else []) + auth_phases + (
                            connect_phases):
                    fig = results.get(phase, {}).get("figures", {})
                    k = {"full": "full_cpu_us", "resumed": "resumed_cpu_us",
                         "keepalive": "keepalive_cpu_us", "bulk": "bulk_cpu_s_per_gib",
                         "idle": "idle_rss_kib_per_conn", "http-interleaved": "http_cpu_us",
                         "tiny": "tiny_cpu_ns_per_record",
                         METRICS_PHASE: "metrics_keepalive_cpu_us"}.get(
                             phase, phase_key(phase) + "_cpu_us")
                    if k in fig:
                        short.append("%s %.4g" % (phase, fig[k]))
                mk = results.get(METRICS_PHASE, {}).get("figures", {})
                pk = results.get(METRICS_BASE, {}).get("figures", {})
                if mk.get("metrics_keepalive_cpu_us") and pk.get("keepalive_cpu_us"):
                    short.append("metrics x%.3f of keepalive (%s, %d scrapes)" % (
                        mk["metrics_keepalive_cpu_us"] / pk["keepalive_cpu_us"],
                        results[METRICS_PHASE].get("order", "?"), mk.get("metrics_scrapes", 0)))
                log("bench: run %d %-9s %5.1fs  %s" % (run, name, time.monotonic() - t0,
                                                      ", ".join(short)))
    except BaseException:
        if not args.keep:  # (a set-up that failed, or ^C)
            shutil.rmtree(ctx.tmp, ignore_errors=True)
        raise
    finally:
        ctx.stop_upstreams()
        ctx.stop_backend()
        for srv in servers.values():
            srv.stop()

    # Medians; a phase with problems does not contribute its figures.
    medians, ratios, counts = {}, {}, {}
    for name in servers:
        vals = {}
        for results in per_run[name]:
            for phase in phases:
                r = results.get(phase)
                if not r or r["problems"]:
                    continue
                for k, v in r["figures"].items():
                    vals.setdefault(k, []).append(v)
        medians[name] = {k: statistics.median(v) for k, v in vals.items()}
        counts[name] = {k: len(v) for k, v in vals.items()}
    if BASELINE in medians:
        for name in servers:
            ratios[name] = {}
            for k, v in medians[name].items():
                b = medians[BASELINE].get(k)
                if b:
                    ratios[name][k] = v / b

    ratios2 = {}
    if SECOND_BASELINE in medians:
        for name in servers:
            ratios2[name] = {}
            for k, v in medians[name].items():
                b = medians[SECOND_BASELINE].get(k)
                if b:
                    ratios2[name][k] = v / b

    # The http phase's goal is stated against the best of nginx and HAProxy.
    http_best = None
    k = "http_cpu_us"
    peers = {n: medians[n][k] for n in HTTP_PEERS if k in medians.get(n, {})}
    if "http" in phases and peers:
        best = min(peers, key=peers.get)
        http_best = {"figure": k, "best_peer": best, "best_peer_value": peers[best],
                     "goal": HTTP_GOAL,
                     "ratio": {n: medians[n][k] / peers[best] for n in servers
                               if k in medians.get(n, {})}}
        if "steeldoor" in http_best["ratio"]:
            http_best["steeldoor_meets_goal"] = http_best["ratio"]["steeldoor"] <= HTTP_GOAL

    # The client-mode phases: steeldoor's CPU as a ratio to the best peer's.
    connect_best = {}
    for k, goal in CONNECT_GOALS.items():
        peers = {n: medians[n][k] for n in CONNECT_PEERS if k in medians.get(n, {})}
        if not peers:
            continue
        best = min(peers, key=peers.get)
        connect_best[k] = {"best_peer": best, "best_peer_value": peers[best], "goal": goal,
                           "ratio": {n: medians[n][k] / peers[best] for n in servers
                                     if k in medians.get(n, {})}}
        if "steeldoor" in connect_best[k]["ratio"]:
            connect_best[k]["steeldoor_meets_goal"] = connect_best[k]["ratio"]["steeldoor"] <= goal

    # The second-factor phases: per run, steeldoor's CPU per request with the
    # credential over its CPU per request without, measured in turn in the
    # same run (the plain instance's slices); the median of those ratios is
    # the figure.
    second_factor = {}
    for phase in (p for p in phases if p in AUTH_PHASES and AUTH_SERVER in per_run):
        k = phase_key(phase) + "_cpu_us"
        pairs = []
        for results in per_run[AUTH_SERVER]:
            a, h = results.get(phase), results.get("http-interleaved")
            if (a and h and not a["problems"] and not h["problems"] and
                    k in a["figures"] and "http_cpu_us" in h["figures"]):
                pairs.append({"run": results["run"], "http_cpu_us": h["figures"]["http_cpu_us"],
                              k: a["figures"][k],
                              "ratio": a["figures"][k] / h["figures"]["http_cpu_us"],
                              "http_phase_cpu_us": results.get("http", {}).get(
                                  "figures", {}).get("http_cpu_us")})
                pd = results.get("http-padded")
                if (phase == "http-jwt" and pd and not pd["problems"] and
                        "http_cpu_us" in pd["figures"]):
                    pairs[-1]["padded_cpu_us"] = pd["figures"]["http_cpu_us"]
                    pairs[-1]["ratio_to_padded"] = a["figures"][k] / pd["figures"]["http_cpu_us"]
        if not pairs:
            second_factor[phase] = {"figure": k, "limit": AUTH_LIMIT, "runs": [],
                                    "ratio": None, "within_limit": None}
            continue
        ratio = statistics.median(p["ratio"] for p in pairs)
        a_med = statistics.median(p[k] for p in pairs)
        h_med = statistics.median(p["http_cpu_us"] for p in pairs)
        second_factor[phase] = {
            "figure": k, "credential": AUTH_PHASES[phase], "cpu_us": a_med, "http_cpu_us": h_med,
            "ratio": ratio, "limit": AUTH_LIMIT,
            # the same pairs' total CPU over total CPU (each run as many requests)
            "ratio_of_means": (statistics.mean(p[k] for p in pairs) /
                               statistics.mean(p["http_cpu_us"] for p in pairs)),
            "within_limit": ratio <= AUTH_LIMIT, "runs": pairs}
        padded = [p for p in pairs if "ratio_to_padded" in p]
        if padded:
            second_factor[phase]["padded_cpu_us"] = statistics.median(
                p["padded_cpu_us"] for p in padded)
            second_factor[phase]["ratio_to_padded"] = statistics.median(
                p["ratio_to_padded"] for p in padded)

    # The metrics phase: per run, steeldoor's CPU per keep-alive request with
    # /metrics scraped over its CPU per request in the keepalive phase of the
    # same run (measured back to back, both in ns); the median of those
    # ratios is the figure, the spread is the runs' own.
    metrics_overhead = None
    if METRICS_PHASE in phases and METRICS_SERVER in per_run:
        pairs = []
        for results in per_run[METRICS_SERVER]:
            m, b = results.get(METRICS_PHASE), results.get(METRICS_BASE)
            if (m and b and not m["problems"] and not b["problems"] and
                    "metrics_keepalive_cpu_us" in m["figures"] and
                    "keepalive_cpu_us" in b["figures"]):
                mv, bv = m["figures"]["metrics_keepalive_cpu_us"], b["figures"]["keepalive_cpu_us"]
                pairs.append({"run": results["run"], "order": m.get("order"),
                              "keepalive_cpu_us": bv, "metrics_keepalive_cpu_us": mv,
                              "ratio": mv / bv, "scrapes_ok": m.get("scrapes_ok"),
                              "scrapes_attempted": m.get("scrapes_attempted"),
                              "requests": m.get("ops"), "keepalive_requests": b.get("ops"),
                              "scrape_bytes": m.get("scrape_bytes"),
                              "scrape_cpu_us": m["figures"].get("metrics_scrape_cpu_us"),
                              "implied_ratio": m["figures"].get(
                                  "metrics_scrapes_implied_ratio")})
        metrics_overhead = {"figure": "metrics_keepalive_cpu_us", "base": "keepalive_cpu_us",
                            "limit": METRICS_LIMIT, "scrape_interval_s": METRICS_SCRAPE_INTERVAL,
                            "runs": pairs, "ratio": None, "within_limit": None}
        if pairs:
            rs = sorted(p["ratio"] for p in pairs)
            ratio = statistics.median(rs)
            metrics_overhead.update({
                "ratio": ratio, "within_limit": ratio <= METRICS_LIMIT,
                "metrics_keepalive_cpu_us": statistics.median(
                    p["metrics_keepalive_cpu_us"] for p in pairs),
                "keepalive_cpu_us": statistics.median(p["keepalive_cpu_us"] for p in pairs),
                "ratio_min": rs[0], "ratio_max": rs[-1],
                # the spread: the range, and the median absolute deviation
                "ratio_mad": statistics.median(abs(r - ratio) for r in rs),
                "ratio_of_means": (statistics.mean(p["metrics_keepalive_cpu_us"] for p in pairs) /
                                   statistics.mean(p["keepalive_cpu_us"] for p in pairs)),
                "scrapes_ok": sum(p["scrapes_ok"] or 0 for p in pairs),
                "scrapes_attempted": sum(p["scrapes_attempted"] or 0 for p in pairs)})
            costs = [p for p in pairs if p["implied_ratio"] is not None]
            if costs:
                metrics_overhead["scrape_cpu_us"] = statistics.median(
                    p["scrape_cpu_us"] for p in costs)
                metrics_overhead["implied_ratio"] = statistics.median(
                    p["implied_ratio"] for p in costs)

    expected = {p: (min(args.runs, args.idle_runs) if p == "idle" else args.runs)
                for p in phases}
    table = print_table(list(servers), medians, ratios, counts, expected, not_applicable)
    log("")
    log(table)
    log("CPU = the server's own processes (utime+stime from /proc/PID/stat), "
        "loadgen excluded; idle RSS = (held - before) / connections.")
    if metrics_overhead:
        log("(%s, and %s's %s, from the scheduler's ns count: /proc/PID/task/TID/schedstat)"
            % (METRICS_PHASE, METRICS_SERVER, METRICS_BASE))
    if BASELINE not in medians:
        log("(no ratios: nginx was not measured)")
    if ratios2 and "tiny" in phases:
        k = "tiny_cpu_ns_per_record"
        log("CPU per one-byte record as a ratio to %s: %s" % (SECOND_BASELINE, ", ".join(
            "%s x%.2f" % (n, ratios2[n][k]) for n in servers if k in ratios2.get(n, {}))))
    if http_best:
        line = "CPU per HTTP request as a ratio to the best peer (%s, %.1f us): %s" % (
            http_best["best_peer"], http_best["best_peer_value"], ", ".join(
                "%s x%.2f" % (n, r) for n, r in http_best["ratio"].items()))
        if "steeldoor_meets_goal" in http_best:
            line += "; goal for steeldoor: at most x%.2f (%s)" % (
                HTTP_GOAL, "met" if http_best["steeldoor_meets_goal"] else "NOT met")
        log(line)
    elif "http" in phases:
        log("(no ratio to the best peer for http: neither nginx nor HAProxy was measured)")
    for k, cb in connect_best.items():
        line = "%s as a ratio to the best peer (%s, %.1f us): %s" % (
            k, cb["best_peer"], cb["best_peer_value"], ", ".join(
                "%s x%.2f" % (n, r) for n, r in cb["ratio"].items()))
        if "steeldoor_meets_goal" in cb:
            line += "; goal for steeldoor: at most x%.2f (%s)" % (
                cb["goal"], "met" if cb["steeldoor_meets_goal"] else "NOT met")
        log(line)
    if connect_checked:
        log("connect check (client mode pointed at a wrong CA): %s" % ", ".join(
            "%s %s" % kv for kv in connect_checked.items()))
    for phase, sf in second_factor.items():
        if sf["ratio"] is None:
            log("%s: no valid pair of runs with http (see the notes): no ratio" % phase)
            continue
        log("%s: %.1f us/req, x%.3f of http (limit %.2f): %s. The ratio is the median of %d "
            "runs' own (%s), each to the plain instance measured in turn with it (median "
            "%.1f us/req)" % (
                phase, sf["cpu_us"], sf["ratio"], sf["limit"],
                "within the limit" if sf["within_limit"] else "OVER the limit",
                len(sf["runs"]), " ".join("x%.3f" % p["ratio"] for p in sf["runs"]),
                sf["http_cpu_us"]))
        if "ratio_to_padded" in sf:
            log("%s: x%.3f of plain requests of the same size (%.1f us/req: an extra field "
                "as long as the token, dropped like it; median of runs' own: %s): the check "
                "itself; the rest is the token's bytes" % (
                    phase, sf["ratio_to_padded"], sf["padded_cpu_us"], " ".join(
                        "x%.3f" % p["ratio_to_padded"] for p in sf["runs"]
                        if "ratio_to_padded" in p)))
    if metrics_overhead and metrics_overhead["ratio"] is None:
        log("%s: no valid pair of runs with %s (see the notes): no ratio" % (
            METRICS_PHASE, METRICS_BASE))
    elif metrics_overhead:
        mo = metrics_overhead
        log("%s: %.2f us/req, x%.3f of %s (goal at most x%.2f): %s. The ratio is the median of "
            "%d runs' own (%s; spread x%.3f..x%.3f, median deviation %.3f), each to steeldoor's "
            "keepalive measured right before or after it (median %.2f us/req); /metrics scraped "
            "every %g s: %d of %d scrapes answered" % (
                METRICS_PHASE, mo["metrics_keepalive_cpu_us"], mo["ratio"], METRICS_BASE,
                METRICS_LIMIT, "met" if mo["within_limit"] else "NOT met", len(mo["runs"]),
                " ".join("x%.3f" % p["ratio"] for p in mo["runs"]), mo["ratio_min"],
                mo["ratio_max"], mo["ratio_mad"], mo["keepalive_cpu_us"],
                METRICS_SCRAPE_INTERVAL, mo["scrapes_ok"], mo["scrapes_attempted"]))
        if "implied_ratio" in mo:
            log("%s: a scrape costs the server %.0f us of CPU (median; %d scrapes in a row "
                "after the phase, no load): the phase's scrapes alone come to x%.4f of its "
                "CPU; a ratio above that is the noise of two separate phases, or a cost "
                "beside the scrapes" % (METRICS_PHASE, mo["scrape_cpu_us"],
                                        METRICS_COST_SCRAPES, mo["implied_ratio"]))
    for name, whys in not_applicable.items():
        for phase, why in whys.items():
            log("not applicable: %s %s (%s)" % (name, phase, why))
    for name, why in skipped.items():
        log("skipped %s: %s" % (name, why))
    failed = False
    for name in servers:
        for p in problems[name]:
            log("NOTE %s: %s" % (name, p))
            if "FAILED" in p:
                failed = True
        for p in observations(per_run[name]):
            log("note %s: %s" % (name, p))
    if failed:
        log("bench: FAILED (see the notes above); figures from failed phases are left out")

    os.makedirs(args.results, exist_ok=True)
    out = {
        "timestamp": stamp,
        "duration_s": round(time.monotonic() - t_start, 1),
        "host": {"uname": " ".join(platform.uname()), "cpus": os.cpu_count(),
                 "openssl": subprocess.run(["openssl", "version"], capture_output=True,
                                           text=True).stdout.strip()},
        "setup": {"runs": args.runs, "idle_runs": args.idle_runs, "phases": PHASES,
                  "tls": "TLSv1.3, X25519, TLS_AES_128_GCM_SHA256, ECDSA P-256 certificates, "
                         "client certificate required",
                  "cpu": "utime+stime(+cutime+cstime) of every process of the server, "
                         "from /proc/PID/stat, across each phase",
                  "second_factor": {
                      "http-apikey": "--api-keys: %d keys made with `steeldoor apikey new`, the "
                                     "client's bound to uri:%s" % (AUTH_OTHER_KEYS + 1,
                                                                   CLIENT_URI),
                      "http-jwt": "--jwks: one ES256 key (P-256); the token: sub %s, iss %s, "
                                  "aud %s, exp in an hour, cnf.x5t#S256 of the client "
                                  "certificate" % (JWT_SUB, JWT_ISSUER, JWT_AUDIENCE),
                      "limit": AUTH_LIMIT},
                  "metrics": {
                      METRICS_PHASE: "the %s load against a second steeldoor instance with "
                                     "--admin 127.0.0.1:PORT, GET /metrics every %g s during "
                                     "the measured window (the first at its start), each on "
                                     "its own connection; the instance first put through "
                                     "the phases the plain one ran before keepalive "
                                     "(unmeasured); CPU of master and workers in ns "
                                     "(schedstat), as for steeldoor's %s of the same run, "
                                     "measured right before (even runs) or after (odd runs)" % (
                                         METRICS_BASE, METRICS_SCRAPE_INTERVAL, METRICS_BASE),
                      "scrape_cost": "after the phase, on the same instance with the load "
                                     "stopped: %d scrapes in a row, CPU in ns less the "
                                     "instance's idle CPU for as long" % METRICS_COST_SCRAPES,
                      "limit": METRICS_LIMIT}},
        "versions": versions,
        "skipped": skipped,
        "figures": {k: {"label": label, "unit": unit} for k, label, unit, _p, _d in FIGURES},
        "median": medians,
        "ratio_to_nginx": ratios,
        "ratio_to_haproxy": ratios2,
        "http_ratio_to_best_peer": http_best,
        "second_factor": second_factor,
        "metrics_overhead": metrics_overhead,
        "connect_ratio_to_best_peer": connect_best,
        "connect_check": connect_checked,
        "connect_upstream": args.connect_upstream,
        "not_applicable": not_applicable,
        "problems": problems,
        "steeldoor_log": log_summaries.get("steeldoor", []),
        "runs": per_run,
        "table": table,
    }
    path = os.path.join(args.results, stamp + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    log("bench: wrote %s (%.0fs)" % (os.path.relpath(path), time.monotonic() - t_start))
    if args.keep:
        log("bench: kept %s" % ctx.tmp)
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
