"""A config file is read as its author meant it: relative paths are the
file's neighbours (not the working directory's), an error about a
listener names the file, the line and the listener, and a misspelt key
gets the nearest valid one suggested (file and flags)."""
import subprocess

from sdlib import Steeldoor, free_port, run


def _pki(sd_bin, d):
    for args in (["init"], ["issue", "--name", "api", "--server", "--dns", "localhost",
                            "--ip", "127.0.0.1"]):
        r = run([sd_bin, "pki"] + args + ["--dir", str(d)], timeout=30)
        assert r.returncode == 0, r.stderr


def _listener(name, port, cert="pki/api.crt", extra=""):
    return ("  - name: %s\n    listen: 127.0.0.1:%d\n    target: 127.0.0.1:%d\n"
            "    cert: %s\n    key: pki/api.key\n    cacert: pki/ca.crt\n    allow-all: true\n%s"
            % (name, port, free_port(), cert, extra))


def _refused(sd_bin, args, cwd):
    r = subprocess.run([sd_bin] + [str(a) for a in args], cwd=str(cwd), capture_output=True,
                       timeout=20)
    assert r.returncode != 0, r
    return r.stderr.decode()


def test_relative_paths_are_the_files_neighbours(sd_bin, tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    _pki(sd_bin, conf / "pki")
    port = free_port()
    cfg = conf / "steeldoor.yaml"
    cfg.write_text("workers: 1\nlisteners:\n" + _listener("api", port))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # started from another directory: pki/... is etc/pki/...
    sd = Steeldoor(sd_bin, ["serve", "--config", cfg], elsewhere)
    sd.start(wait_ports=[port])
    try:
        lines = [e for e in sd.logs() if e.get("event") == "listening"]
        assert lines and lines[0]["cacert"] == str(conf / "pki" / "ca.crt"), lines
    finally:
        sd.stop()
        sd.close_files()
    # a relative config path works the same way
    sd = Steeldoor(sd_bin, ["serve", "--config", "etc/steeldoor.yaml"], tmp_path)
    sd.start(wait_ports=[port])
    sd.stop()
    sd.close_files()


def test_listener_errors_name_file_line_and_listener(sd_bin, tmp_path):
    _pki(sd_bin, tmp_path / "pki")
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\nlisteners:\n" + _listener("api", free_port()) +
                   _listener("billing", free_port(), cert="pki/missing.crt"))
    err = _refused(sd_bin, ["serve", "--config", cfg], tmp_path)
    assert "%s line 10: listener billing: %s" % (cfg, tmp_path / "pki" / "missing.crt") in err, err
    # the same from flags names the listener
    err = _refused(sd_bin, ["serve", "--listen", "127.0.0.1:%d" % free_port(), "--target",
                            "127.0.0.1:1", "--cert", "pki/missing.crt", "--key", "pki/api.key",
                            "--cacert", "pki/ca.crt", "--allow-all", "--name", "flagged"],
                   tmp_path)
    assert "listener flagged: pki/missing.crt" in err, err


def test_misspelt_keys_get_the_nearest(sd_bin, tmp_path):
    _pki(sd_bin, tmp_path / "pki")
    cfg = tmp_path / "sd.yaml"
    cases = [
        ("worker: 2\nlisteners:\n" + _listener("a", free_port()), "line 1", "'workers'"),
        ("listener:\n" + _listener("a", free_port()), "line 1", "'listeners'"),
        ("listeners:\n" + _listener("a", free_port(), extra="    taget: x\n"), "line 9",
         "'target'"),
        ("listeners:\n" + _listener("a", free_port(), extra="    allow-dsn: a.example\n"),
         "line 9", "'allow-dns'"),
        ("listeners:\n" + _listener("a", free_port(), extra="    idle-timout: 5s\n"),
         "line 9", "'idle-timeout'"),
    ]
    for text, line, near in cases:
        cfg.write_text(text)
        err = _refused(sd_bin, ["serve", "--config", cfg], tmp_path)
        assert line in err and ("did you mean %s?" % near) in err, (text, err)
    # nothing close: no suggestion
    cfg.write_text("listeners:\n" + _listener("a", free_port(), extra="    zzzzzzzz: 1\n"))
    err = _refused(sd_bin, ["serve", "--config", cfg], tmp_path)
    assert "unknown listener key 'zzzzzzzz'" in err and "did you mean" not in err, err
    for flag, near in (("--listn", "--listen"), ("--alow-all", "--allow-all"),
                       ("--cacrt", "--cacert")):
        err = _refused(sd_bin, ["serve", flag, "x"], tmp_path)
        assert "did you mean %s?" % near in err, (flag, err)
    err = _refused(sd_bin, ["connect", "--verfy-uri", "x"], tmp_path)
    assert "did you mean --verify-uri?" in err, err


def test_check_validates_without_binding(sd_bin, tmp_path):
    _pki(sd_bin, tmp_path / "pki")
    port = free_port()
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("workers: 1\nlisteners:\n" + _listener("api", port))
    # while a steeldoor serves this very configuration: --check binds nothing
    sd = Steeldoor(sd_bin, ["serve", "--config", cfg], tmp_path)
    sd.start(wait_ports=[port])
    try:
        r = subprocess.run([sd_bin, "serve", "--check", "--config", str(cfg)], cwd=str(tmp_path),
                           capture_output=True, timeout=20)
        out = r.stdout.decode()
        assert r.returncode == 0, (out, r.stderr)
        assert "configuration OK" in out and "listener api: tcp 127.0.0.1:%d" % port in out, out
        assert "server certificate %s" % (tmp_path / "pki" / "api.crt") in out, out
    finally:
        sd.stop()
        sd.close_files()
    # a key that is not its certificate's: refused, non-zero, the error names both
    run([sd_bin, "pki", "issue", "--dir", str(tmp_path / "pki"), "--name", "other",
         "--server", "--dns", "localhost"], timeout=30)
    cfg.write_text(cfg.read_text().replace("key: pki/api.key", "key: pki/other.key"))
    r = subprocess.run([sd_bin, "serve", "--check", "--config", str(cfg)], cwd=str(tmp_path),
                       capture_output=True, timeout=20)
    assert r.returncode == 1 and "configuration FAILED" in r.stdout.decode(), r
    assert "listener api" in r.stderr.decode() and "other.key" in r.stderr.decode(), r.stderr
    # a usage error: 2
    r = subprocess.run([sd_bin, "serve", "--check", "--bogus"], capture_output=True, timeout=20)
    assert r.returncode == 2, r


def test_startup_errors_are_json_lines_unless_a_terminal(sd_bin, tmp_path):
    import json
    import os
    cfg = tmp_path / "sd.yaml"
    cfg.write_text("worker: 2\n")
    for args, rc in ((["serve", "--config", str(cfg)], 2), (["serve", "--bogus"], 2),
                     (["serve", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cert",
                       "missing.crt", "--key", "missing.key", "--cacert", "missing.pem",
                       "--allow-all"], 1)):
        r = subprocess.run([sd_bin] + args, cwd=str(tmp_path), capture_output=True, timeout=20)
        assert r.returncode == rc, (args, r)
        lines = [l for l in r.stderr.decode().splitlines() if l.strip()]
        assert lines, r
        events = [json.loads(l) for l in lines]   # every line parses
        fatal = [e for e in events if e.get("event") == "start_failed"]
        assert len(fatal) == 1 and fatal[0]["level"] == "error" and fatal[0]["msg"], events
        assert fatal[0]["command"] == "serve", fatal
    # at a terminal: one sentence for a person
    master, slave = os.openpty()
    try:
        r = subprocess.run([sd_bin, "serve", "--config", str(cfg)], cwd=str(tmp_path),
                           stdout=subprocess.DEVNULL, stderr=slave, timeout=20)
        os.close(slave)
        out = b""
        try:
            while True:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                out += chunk
        except OSError:
            pass
    finally:
        os.close(master)
    text = out.decode()
    assert r.returncode == 2 and text.startswith("steeldoor serve: "), text
    assert "did you mean 'workers'?" in text and "{" not in text, text
