"""make install / make uninstall, the systemd unit, the example
configuration and the man page, checked on what `make install` really
writes into a DESTDIR.

make runs from the repository with BUILD pointing at a temporary build
directory holding a copy of the binary under test ($STEELDOOR_BIN), and
`-o` on that binary: make never compiles anything here and never touches
the real build directories. Every tool runs with a timeout."""
import filecmp
import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

import sdlib

REPO = Path(__file__).resolve().parents[2]

# (path under PREFIX, mode)
FILES = [
    ("bin/steeldoor", 0o755),
    ("share/man/man1/steeldoor.1", 0o644),
    ("lib/systemd/system/steeldoor.service", 0o644),
    ("lib/sysusers.d/steeldoor.conf", 0o644),
    ("share/doc/steeldoor/steeldoor.yaml", 0o644),
]

# What the unit must say, directive by directive (values compared as words).
UNIT_MUST = {
    "Type": "notify",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "KillSignal": "SIGTERM",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "ConfigurationDirectory": "steeldoor",
    "RuntimeDirectory": "steeldoor",
    "LimitNOFILE": "65536",
    "UMask": "0077",
}


def run(cmd, timeout=120, env=None, cwd=None):
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout,
                          env=env, cwd=cwd, text=True)


def make(target, build, destdir, prefix, timeout=180):
    cmd = ["make", "--no-print-directory", "-C", REPO, "-o", build / "steeldoor",
           "BUILD=%s" % build, "DESTDIR=%s" % destdir, target]
    if prefix is not None:
        cmd.append("PREFIX=%s" % prefix)
    # Run from `make integration`, the outer make's variables (BUILD, SAN)
    # and jobserver would reach this make through the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = run(cmd, timeout=timeout, env=env)
    assert r.returncode == 0, "make %s failed (%d):\n%s\n%s" % (target, r.returncode,
                                                                r.stdout, r.stderr)
    return r


def unit_directives(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    assert m, "unexpected time span %r" % v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.fixture(scope="module")
def build(sd_bin, tmp_path_factory):
    """A build directory of our own with the binary under test."""
    d = tmp_path_factory.mktemp("build")
    shutil.copy2(sd_bin, d / "steeldoor")
    return d


@pytest.fixture(scope="module", params=["/usr", "/opt/sd", None])
def installed(request, build, tmp_path_factory):
    """make install into a fresh DESTDIR (PREFIX=None: the default)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dest = tmp_path_factory.mktemp("destdir")
    make("install", build, dest, request.param)
    prefix = request.param or "/usr/local"
    root = Path(str(dest) + prefix)
    return dest, prefix, root


def test_files_and_modes(installed, sd_bin):
    dest, prefix, root = installed
    for rel, mode in FILES:
        p = root / rel
        assert p.is_file(), "%s was not installed (DESTDIR holds %s)" % (
            p, sorted(str(x.relative_to(dest)) for x in dest.rglob("*") if x.is_file()))
        got = stat.S_IMODE(p.stat().st_mode)
        assert got == mode, "%s has mode %o, expected %o" % (p, got, mode)
    assert filecmp.cmp(root / "bin/steeldoor", sd_bin, shallow=False)
    assert filecmp.cmp(root / "share/doc/steeldoor/steeldoor.yaml",
                       REPO / "contrib/steeldoor.yaml", shallow=False)
    # Nothing else, and nothing outside PREFIX: /etc is the administrator's.
    every = sorted(str(x.relative_to(dest)) for x in dest.rglob("*") if x.is_file())
    want = sorted(str((root / rel).relative_to(dest)) for rel, _ in FILES)
    assert every == want, every


def test_unit(installed):
    dest, prefix, root = installed
    text = (root / "lib/systemd/system/steeldoor.service").read_text()
    d = unit_directives(text)
    argv = d["ExecStart"][0].split()
    assert argv[0] == prefix + "/bin/steeldoor", "ExecStart runs %s, not under %s" % (
        argv[0], prefix)
    assert argv[1:4] == ["serve", "--config", "/etc/steeldoor/steeldoor.yaml"], argv
    for k, v in UNIT_MUST.items():
        assert k in d, "the unit has no %s=" % k
        assert d[k][-1].split() == v.split(), "%s=%s, expected %s" % (k, d[k][-1], v)
    caps = set(d["CapabilityBoundingSet"][-1].split())
    # The root phase needs these (bind, setresuid/setgroups, empty the
    # bounding set before the switch) and nothing that overrides files.
    assert caps == {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"}, caps
    # steeldoor drains for drain-timeout (30s default) and kills workers 5s
    # later: systemd must not SIGKILL before that.
    assert seconds(d["TimeoutStopSec"][-1]) >= 35, d["TimeoutStopSec"]
    assert "--user" in argv or "User" in d, "the unit runs steeldoor as root for good"


def test_unit_verifies(installed, tmp_path):
    """systemd-analyze verify on the unit, its ExecStart pointed at the
    DESTDIR copy (the real root has no binary under PREFIX) and man pointed
    at the DESTDIR's man pages (Documentation=man:steeldoor(1) is checked)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    dest, prefix, root = installed
    unit = tmp_path / "steeldoor.service"
    unit.write_text((root / "lib/systemd/system/steeldoor.service").read_text().replace(
        prefix + "/bin/steeldoor", str(root / "bin/steeldoor")))
    env = dict(os.environ, MANPATH=str(root / "share/man"), SYSTEMD_LOG_LEVEL="warning")
    r = run(["systemd-analyze", "verify", unit], env=env, timeout=60)
    ours = [l for l in (r.stdout + r.stderr).splitlines() if "steeldoor" in l]
    assert r.returncode == 0 and not ours, "systemd-analyze verify (rc %d):\n%s%s" % (
        r.returncode, r.stdout, r.stderr)
    # The hardening as systemd rates it (0-100: 24 today, "OK"; a unit
    # without the sandboxing directives rates about 90, "UNSAFE").
    r = run(["systemd-analyze", "security", "--offline=true", "--threshold=30", "--no-pager",
             unit], env=env, timeout=60)
    assert r.returncode == 0, "systemd-analyze security:\n%s%s" % (r.stdout, r.stderr)


def test_sysusers_makes_the_account(installed, tmp_path):
    """The installed sysusers.d entry makes the account the unit's --user
    names (into a scratch root, never this system's /etc)."""
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers is not installed (apt-get install systemd)")
    dest, prefix, root = installed
    unit = unit_directives((root / "lib/systemd/system/steeldoor.service").read_text())
    argv = unit["ExecStart"][0].split()
    user = argv[argv.index("--user") + 1]
    scratch = tmp_path / "root"
    (scratch / "etc").mkdir(parents=True)
    r = run(["systemd-sysusers", "--root=%s" % scratch, root / "lib/sysusers.d/steeldoor.conf"],
            timeout=30)
    assert r.returncode == 0, r.stderr
    passwd = [l.split(":") for l in (scratch / "etc/passwd").read_text().splitlines()]
    group = [l.split(":") for l in (scratch / "etc/group").read_text().splitlines()]
    me = [p for p in passwd if p[0] == user]
    assert me, passwd
    assert me[0][2] != "0" and me[0][3] != "0" and me[0][6] == "/usr/sbin/nologin", me
    assert [g for g in group if g[0] == user and g[2] == me[0][3]], group


def privileged_port():
    """A free port below 1024 on loopback (we run as root to find it)."""
    for p in range(1023, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    pytest.skip("no free port below 1024")


def test_unit_capabilities_suffice(installed, sd_bin, pki, echo_backend, good_ctx, tmp_path):
    """steeldoor started as the unit starts it (root, the unit's capability
    bounding set, no_new_privs, --user) binds a port below 1024, serves,
    and ends with no capability as the account; without any one of the
    unit's capabilities it refuses to start: the set is the least that
    works."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux)")
    dest, prefix, root = installed
    d = unit_directives((root / "lib/systemd/system/steeldoor.service").read_text())
    caps = [c.lower().replace("cap_", "") for c in d["CapabilityBoundingSet"][-1].split()]
    port = privileged_port()
    args = ["serve", "--listen", "127.0.0.1:%d" % port, "--target", echo_backend.target,
            "--cert", pki.server_cert, "--key", pki.server_key, "--cacert", pki.ca,
            "--allow-all", "--workers", "1", "--drain-timeout", "2s", "--user", "nobody"]

    def setpriv(bounding):
        return ["--bounding-set", ",".join(["-all"] + ["+" + c for c in bounding]),
                "--inh-caps=-all", "--no-new-privs", sd_bin]

    sd = sdlib.Steeldoor(shutil.which("setpriv"), setpriv(caps) + args, tmp_path, name="caps")
    try:
        sd.start(wait_ports=[("127.0.0.1", port)])
        with sdlib.tls_connect(good_ctx, port) as s:
            assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
        for pid in [sd.pid] + sd.worker_pids():
            status = dict(l.split(":", 1) for l in open("/proc/%d/status" % pid) if ":" in l)
            assert status["Uid"].split()[0] == "65534", status["Uid"]
            for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
                assert int(status[k], 16) == 0, "%s of %d is %s" % (k, pid, status[k])
        sd.stop(timeout=15)
    finally:
        sd.kill()
        sd.close_files()
    for missing in caps:
        r = run(["setpriv"] + setpriv([c for c in caps if c != missing]) + args, timeout=20)
        assert r.returncode != 0, "started without cap_%s:\n%s" % (missing, r.stderr[-2000:])


def test_uninstall(build, tmp_path):
    dest = tmp_path / "dest"
    make("install", build, dest, "/opt/sd")
    (dest / "opt/sd/share/doc/keep.txt").write_text("not steeldoor's\n")
    make("uninstall", build, dest, "/opt/sd")
    left = sorted(str(x.relative_to(dest)) for x in dest.rglob("*") if x.is_file())
    assert left == ["opt/sd/share/doc/keep.txt"], left


# ---------------------------------------------------------------- man page

def render(manfile):
    """The page as text (mandoc, overstrike removed)."""
    r = run(["mandoc", "-T", "ascii", "-O", "width=100", manfile], timeout=30)
    assert r.returncode == 0, r.stderr
    return re.sub(r".\x08", "", r.stdout)


def help_flags(sd_bin, *cmd):
    r = sdlib.run([sd_bin] + list(cmd) + ["--help"], timeout=10)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    flags = re.findall(r"^  (?:-h, )?--([a-z0-9-]+)", text, re.M)
    assert len(flags) > 20, text
    return text, flags


@pytest.fixture(scope="module")
def manpage(installed):
    if shutil.which("mandoc") is None:
        pytest.skip("mandoc is not installed (apt-get install mandoc)")
    return installed[2] / "share/man/man1/steeldoor.1"


def test_man_lint_clean(manpage):
    r = run(["mandoc", "-T", "lint", "-W", "all", manpage], timeout=30)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
        "mandoc -T lint:\n%s%s" % (r.stdout, r.stderr)
    if shutil.which("man"):
        r = run(["man", "--warnings", "-l", manpage],
                env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"), timeout=30)
        assert r.returncode == 0 and r.stderr == "", "man -l:\n%s" % r.stderr
        assert "STEELDOOR(1)" in r.stdout


def test_man_lists_every_flag(manpage, sd_bin):
    page = render(manpage)
    options = page.split("\nOPTIONS\n", 1)[1].split("\nADMIN AND METRICS\n", 1)[0]
    for cmd in (["serve"], ["connect"]):
        text, flags = help_flags(sd_bin, *cmd)
        missing = [f for f in flags if not re.search(r"(^|\s)--%s(\s|$)" % re.escape(f),
                                                     options, re.M)]
        assert not missing, "steeldoor %s --help has flags the man page's OPTIONS lacks: " \
            "%s" % (cmd[0], missing)
        # grouped as --help groups them: every title of --help is a heading
        for title in re.findall(r"^([A-Z][^\n]*):\n  -", text, re.M):
            if cmd == ["serve"]:
                assert " ".join(title.split()) in " ".join(options.split()), title
    # and the keys only the file has
    for key in ("listeners:", "connectors:"):
        assert key in options, key


def test_man_synopsis_is_the_usage(manpage, sd_bin):
    """Each command's usage lines, from its own --help, are in SYNOPSIS."""
    page = render(manpage)
    synopsis = page.split("\nSYNOPSIS\n", 1)[1].split("\nDESCRIPTION\n", 1)[0]
    flat = " ".join(synopsis.split())
    for cmd in (["serve"], ["connect"], ["pki", "init"], ["pki", "issue"], ["pki", "revoke"],
                ["pki", "crl"], ["audit"], ["apikey", "new"], ["apikey", "list"],
                ["apikey", "revoke"]):
        r = sdlib.run([sd_bin] + cmd + ["--help"], timeout=10)
        usage = r.stdout.decode().split("\n\n", 1)[0]
        usage = re.sub(r"^[Uu]sage: ", "", usage)
        assert " ".join(usage.split()) in flat, "usage of %s not in SYNOPSIS:\n%s" % (
            " ".join(cmd), usage)
    for section in ("NAME", "DESCRIPTION", "COMMANDS", "OPTIONS", "ADMIN AND METRICS",
                    "SIGNALS", "ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert "\n%s\n" % section in page, section
    assert "SIGHUP" in page and "SIGTERM" in page and "docs/operations.md" in page


def test_help_man_deterministic(sd_bin, manpage):
    a = sdlib.run([sd_bin, "help-man"], timeout=10)
    b = sdlib.run([sd_bin, "help-man"], timeout=10)
    assert a.returncode == 0 and b.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    assert a.stdout == manpage.read_bytes(), "the installed page is not `steeldoor help-man`"
    # not listed among the commands, but known
    assert b"help-man" not in sdlib.run([sd_bin, "--help"], timeout=10).stdout


def test_man_escapes_roff(manpage):
    """No line of text starts a request by accident, and no backslash or
    option dash is left raw."""
    src = manpage.read_text()
    requests = {"\\\"", "TH", "SH", "SS", "PP", "TP", "nf", "fi", "RS", "RE"}
    for line in src.splitlines():
        if line.startswith(".") or line.startswith("'"):
            word = line[1:].split(" ", 1)[0]
            assert word in requests, "unexpected request line: %r" % line
    text = "\n".join(l for l in src.splitlines() if not l.startswith('.\\"'))
    assert "\\-\\-listen" in text
    assert not re.search(r"(^|\s)--[a-z]", text), "an option's dashes are not escaped"


# ------------------------------------------------------ the example config

@pytest.fixture
def example(pki, steeldoor, echo_backend):
    """steeldoor running the example configuration (the file make install
    copies: test_files_and_modes checks they are the same), its paths and
    ports pointed at this test's PKI and loopback ports."""
    text = (REPO / "contrib/steeldoor.yaml").read_text()
    port, admin = sdlib.free_port(), sdlib.free_port()
    for old, new in (("/etc/steeldoor/api.crt", str(pki.server_cert)),
                     ("/etc/steeldoor/api.key", str(pki.server_key)),
                     ("/etc/steeldoor/clients-ca.crt", str(pki.ca)),
                     ("0.0.0.0:8443", "127.0.0.1:%d" % port),
                     ("127.0.0.1:8080", echo_backend.target),
                     ("127.0.0.1:9901", "127.0.0.1:%d" % admin)):
        assert old in text, "the example no longer has %s" % old
        text = text.replace(old, new)
    assert not [l for l in text.splitlines() if "/etc/steeldoor" in l.split("#")[0]], text
    # The admin port is left to the test of the admin listener.
    sd = steeldoor(config=text, wait_ports=[("127.0.0.1", port)])
    sd.example_port, sd.admin_port = port, admin
    return sd


def test_example_config_serves(example, certs, client_ctx):
    """It starts, admits a client its rule names, refuses one it does not."""
    admitted = certs.client("ns-billing", uris=["spiffe://example.org/ns/billing/job"])
    with sdlib.tls_connect(client_ctx(admitted.pair), example.example_port) as s:
        assert sdlib.echo_roundtrip(s) == b"ping-steeldoor\n"
    r = sdlib.probe_refused_tls(client_ctx(), example.example_port)  # .../billing
    assert r["data"] == b"", r
    assert example.wait_conn(r["peer"] if "peer" in r else
                             "127.0.0.1:%d" % r["local_port"])["result"] == "refused"
    example.stop(timeout=40)


def test_example_config_admin(example):
    """Its admin address answers /healthz."""
    with socket.create_connection(("127.0.0.1", example.admin_port), timeout=5) as a:
        a.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = sdlib.recv_exact(a, 12, timeout=5)
    assert reply == b"HTTP/1.1 200", reply
    crashed = [e for e in example.logs() if e.get("event") == "worker_exited"]
    assert not crashed, crashed
    example.stop(timeout=40)
