"""The reload line names the files the reload was for: changed, added and
removed, on a reload that worked and on one that failed."""
import os
import signal
import time

from sdlib import Steeldoor, free_port, run


def _pki(sd_bin, d):
    for args in (["init"], ["issue", "--name", "api", "--server", "--dns", "localhost"],
                 ["issue", "--name", "api2", "--server", "--dns", "localhost"],
                 ["crl"]):
        r = run([sd_bin, "pki"] + args + ["--dir", str(d)], timeout=30)
        assert r.returncode == 0, r.stderr


def _replace(path, data):
    tmp = path.with_name("." + path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _wait(sd, pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = [e for e in sd.logs() if pred(e)]
        if hits:
            return hits[-1]
        time.sleep(0.05)
    raise AssertionError("%s: not within %.0fs\n%s" % (what, timeout, sd.stderr_text()[-3000:]))


def test_reload_line_names_the_files(sd_bin, tmp_path):
    d = tmp_path / "pki"
    _pki(sd_bin, d)
    port = free_port()
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\nwatch: false\nlisteners:\n"
                   "  - listen: 127.0.0.1:%d\n    target: 127.0.0.1:%d\n"
                   "    cert: %s\n    key: %s\n    cacert: %s\n    allow-all: true\n"
                   % (port, free_port(), d / "api.crt", d / "api.key", d / "ca.crt"))
    sd = Steeldoor(sd_bin, ["serve", "--config", cfg], tmp_path)
    sd.start(wait_ports=[port])
    try:
        # a SIGHUP with nothing changed names no file
        sd.signal(signal.SIGHUP)
        e = _wait(sd, lambda e: e.get("event") == "reloaded", "first reload")
        assert not any(k.startswith("files_") for k in e), e

        # the certificate and key replaced (a rotation), a CRL added
        _replace(d / "api.crt", (d / "api2.crt").read_bytes())
        _replace(d / "api.key", (d / "api2.key").read_bytes())
        cfg.write_text(cfg.read_text() + "    crl: %s\n" % (d / "crl.pem"))
        sd.signal(signal.SIGHUP)
        e = _wait(sd, lambda e: e.get("event") == "reloaded" and e.get("generation") == 3,
                  "the rotation's reload")
        assert sorted(e.get("files_changed", [])) == sorted([str(cfg), str(d / "api.crt"),
                                                             str(d / "api.key")]), e
        assert e.get("files_added") == [str(d / "crl.pem")], e
        assert "files_removed" not in e, e

        # a failed reload says which file broke it
        _replace(d / "api.key", b"not a key\n")
        sd.signal(signal.SIGHUP)
        e = _wait(sd, lambda e: e.get("event") == "reload_failed", "the failed reload")
        assert e.get("files_changed") == [str(d / "api.key")], e

        # the CRL dropped from the config: removed
        _replace(d / "api.key", (d / "api2.key").read_bytes())
        cfg.write_text(cfg.read_text().replace("    crl: %s\n" % (d / "crl.pem"), ""))
        sd.signal(signal.SIGHUP)
        e = _wait(sd, lambda e: e.get("event") == "reloaded" and e.get("generation") == 4,
                  "the reload that drops the CRL")
        assert e.get("files_removed") == [str(d / "crl.pem")], e
        assert e.get("files_changed") == [str(cfg)], e
    finally:
        sd.stop()
        sd.close_files()
