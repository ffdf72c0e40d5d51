"""`roomfuse serve` as a user starts it: the printed address, clean shutdown, flag errors."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from roomfuse.cli import main

pytestmark = pytest.mark.timeout(90)


def test_serve_prints_the_address_with_the_key_and_stops_cleanly(tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "roomfuse", "serve", "--port", "0", "--segmenter", "key"],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("roomfuse serve: open http://127.0.0.1:"), (line, log.read_text())
        url = line.split("open ", 1)[1].strip()
        base, _, fragment = url.partition("/#key=")
        assert len(fragment) >= 8  # a random key when none is given
        with urllib.request.urlopen(base + "/", timeout=10) as resp:
            assert b"lobby.js" in resp.read()
        req = urllib.request.Request(base + "/rooms/hall", headers={"X-Roomfuse-Key": fragment})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["participants"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("argv,message", [
    (["--canvas", "1280"], "WIDTHxHEIGHT"),
    (["--canvas", "1281x360"], "even"),
    (["--fps", "0"], "1-60"),
    (["--max-participants", "9"], "1-8"),
    (["--ice-host", "203.0.113.77"], "--ice-host 203.0.113.77: not an address of this machine"),
    (["--ice-server", "http://stun.example.org"], "--ice-server"),
    (["--grower", "nope"], "invalid choice"),
    (["--key", "has space"], "--key"),
    (["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
])
def test_bad_flags_stop_with_one_line(argv, message, capsys):
    assert _serve(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def _serve(argv) -> int:
    """Exit status of `roomfuse serve ARGV` (argparse exits, the others return)."""
    try:
        return main(["serve", "--segmenter", "key", *argv])
    except SystemExit as e:
        return e.code


def test_busy_port_is_one_line_error(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t0 = time.monotonic()
        assert _serve(["--port", str(port)]) == 2
        assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1, err
