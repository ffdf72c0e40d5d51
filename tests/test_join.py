"""`roomfuse join` against a real `roomfuse serve` on loopback, both as subprocesses
started the way users start them. The virtual camera is pyvirtualcam's real Camera API
over the in-memory backend of test_vcam.py (v4l2loopback cannot be loaded here)."""
from __future__ import annotations

import json
import shutil
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(180)

KEY = "join-test-key"
TESTS = Path(__file__).parent
# The CLI entry point with the in-memory camera backend registered first.
WITH_MEMORY_CAMERA = (
    "import sys; sys.path.insert(0, {tests!r}); "
    "from test_vcam import register_memory_backend; register_memory_backend(); "
    "from roomfuse.cli import main; sys.exit(main(sys.argv[1:]))"
).format(tests=str(TESTS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(interval)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


class Serve:
    """`roomfuse serve` on 127.0.0.1, stoppable and restartable on the same port."""

    def __init__(self, folder: Path, port: int = 0, extra: tuple[str, ...] = ()):
        self.folder, self.port, self.extra = folder, port, list(extra)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self, timeout: float = 120) -> "Serve":
        self.starts += 1
        self.log = self.folder / f"serve-{self.starts}.log"
        # 15 fps keeps the room's CPU use modest on a shared 2-core machine.
        cmd = [sys.executable, "-m", "roomfuse", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--key", KEY, "--fps", "15", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("roomfuse serve: open "):
                    self.url = line.split("open ", 1)[1].strip()
                    self.port = int(self.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"roomfuse serve did not start\n{self.log.read_text()[-3000:]}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def describe(self, room: str = "main") -> dict:
        req = urllib.request.Request(f"{self.base}/rooms/{room}", headers={"X-Roomfuse-Key": KEY})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def participants(self, room: str = "main") -> list[dict]:
        return self.describe(room)["participants"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Serve(tmp_path_factory.mktemp("serve")).start()
    yield s
    s.stop()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Join:
    """One `roomfuse join` process with its stderr in a file."""

    def __init__(self, folder: Path, args: list[str], memory_camera: bool = False, tag: str = "join",
                 env: dict | None = None):
        self.log = folder / f"{tag}.log"
        self.vcam_log = folder / f"{tag}-vcam.log"
        env = {**os.environ, **(env or {}), "MEMORY_VCAM_LOG": str(self.vcam_log)}
        head = [sys.executable, "-c", WITH_MEMORY_CAMERA] if memory_camera else [sys.executable, "-m", "roomfuse"]
        # Ctrl-C is sent to it as a person would: a test run started in the background
        # of a non-interactive shell ignores SIGINT, and a child inherits that (Python
        # then installs no handler), so the child gets the default back first.
        self.proc = subprocess.Popen(head + ["join", *args], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env=env, preexec_fn=_default_sigint)

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, needle: str, timeout: float = 60, count: int = 1) -> None:
        wait_for(lambda: self.text().count(needle) >= count, timeout, repr(needle), proc=self.proc, log=self.log)

    def camera_events(self) -> list[list[str]]:
        if not self.vcam_log.exists():
            return []
        return [line.split() for line in self.vcam_log.read_text().splitlines() if line]

    def frames(self) -> list[tuple[float, int]]:
        return [(float(e[1]), int(e[2])) for e in self.camera_events() if e[0] == "frame"]

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"roomfuse join did not exit\n{self.text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def joins():
    started: list[Join] = []

    def start(*args, **kw) -> Join:
        j = Join(*args, **kw)
        started.append(j)
        return j

    yield start
    for j in started:
        j.kill()


def ours(server: Serve, name: str) -> list[dict]:
    return [p for p in server.participants() if p["name"] == name]


def test_join_clip_receives_and_records_the_composite_then_leaves(server, joins, person_clip, tmp_path):
    out = tmp_path / "room.mp4"
    join = joins(tmp_path, [server.url, "--name", "recorder", "--clip", str(person_clip("intel_asl_bird.mkv")),
                            "--record", str(out), "--duration", "12"])
    # Live with a size: the server decodes our clip and draws it into the room.
    wait_for(lambda: [p for p in ours(server, "recorder") if p["state"] == "live" and p["size"]], 60,
             "the participant to be live in the room listing", proc=join.proc, log=join.log)
    assert join.finish() == 0, join.text()[-3000:]
    assert ours(server, "recorder") == []  # left at once, not after the server's stall timeout
    canvas = server.describe()["canvas"]
    text = join.text()
    assert f"receiving the room's composite at {canvas[0]}x{canvas[1]}" in text
    assert "Traceback" not in text

    import av

    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        images = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert (stream.width, stream.height) == tuple(canvas)
    assert len(images) >= 60, len(images)  # at least a few seconds at 30 fps
    last = images[-1].astype(np.int16)
    assert last.std() > 10  # a picture, not a blank frame
    # The person moves: the room is live video, not one frame repeated.
    assert np.abs(images[len(images) // 2].astype(np.int16) - last).mean() > 1.0


def test_ctrl_c_leaves_the_room_and_closes_the_virtual_camera(server, joins, person_clip, tmp_path):
    join = joins(tmp_path, [server.url, "--name", "vcam", "--clip", str(person_clip("pyfeat_single_face.mp4")),
                            "--virtual-camera", "--vcam-backend", "roomfuse-memory", "--vcam-size", "640x360",
                            "--fps", "20"], memory_camera=True)
    wait_for(lambda: ours(server, "vcam"), 60, "the participant in the room listing", proc=join.proc, log=join.log)
    join.wait_log("receiving the room's composite")
    # Wait for the room's frames to reach the camera (distinct pictures, not the placeholder).
    wait_for(lambda: len({crc for _, crc in join.frames()}) >= 10, 30, "composite frames on the virtual camera",
             proc=join.proc, log=join.log)
    time.sleep(1.0)
    join.proc.send_signal(signal.SIGINT)
    assert join.finish(30) == 0, join.text()[-3000:]
    assert ours(server, "vcam") == []
    assert "left room 'main' after" in join.text()  # the session ended before the process did

    events = join.camera_events()
    assert events[0] == ["open", "640", "360", "20", "RGB"]
    assert events[-1] == ["closed"]
    times = [t for t, _ in join.frames()]
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 16 <= rate <= 21, rate  # the camera's own rate, whatever the room sends
    assert max(np.diff(times)) < 0.5  # never went quiet, joining included


@pytest.mark.parametrize("key_args, message", [
    (["--key", "not-the-key"], "wrong room key (HTTP 403)"),
    ([], "this room needs a key: pass --key KEY"),
])
def test_wrong_or_missing_key_is_one_line_and_exit_2(server, tmp_path, person_clip, key_args, message):
    result = subprocess.run([sys.executable, "-m", "roomfuse", "join", server.base, *key_args,
                             "--clip", str(person_clip("intel_asl_bird.mkv"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("roomfuse join: error: room 'main' at http://127.0.0.1:") and message in lines[0]


def test_full_room_is_one_line_and_exit_2(tmp_path, joins, person_clip):
    server = Serve(tmp_path, extra=("--max-participants", "1")).start()
    try:
        clip = str(person_clip("intel_asl_bird.mkv"))
        first = joins(tmp_path, [server.url, "--name", "first", "--clip", clip])
        first.wait_log("joined room")
        result = subprocess.run([sys.executable, "-m", "roomfuse", "join", server.url, "--clip", clip],
                                capture_output=True, text=True, timeout=60)
        first.proc.send_signal(signal.SIGINT)
        assert first.finish(30) == 0
    finally:
        server.stop()
    assert result.returncode == 2
    assert result.stderr == (f"roomfuse join: error: room 'main' at {server.base}: room main is full "
                             "(1 participants) (HTTP 409)\n")


def test_unreachable_server_is_one_line_and_exit_2(tmp_path, person_clip):
    port = free_port()  # nothing listens there
    result = subprocess.run([sys.executable, "-m", "roomfuse", "join", f"http://127.0.0.1:{port}/#key=x",
                             "--clip", str(person_clip("intel_asl_bird.mkv"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"roomfuse join: error: cannot reach http://127.0.0.1:{port} (connection refused)\n"


# How the server goes away and comes back: a clean restart (SIGTERM; the server ends
# our stream), a crash (SIGKILL; nothing is said, the client notices the silence) and a
# frozen server or network (SIGSTOP/SIGCONT; the old seat is still there when it returns).
OUTAGES = {
    "restart": (signal.SIGTERM, True),
    "crash": (signal.SIGKILL, True),
    "freeze": (signal.SIGSTOP, False),
}


@pytest.mark.parametrize("outage", [
    "restart",
    pytest.param("crash", marks=pytest.mark.slow),
    pytest.param("freeze", marks=pytest.mark.slow),
])
def test_server_outage_mid_call_is_rejoined_and_frames_resume(tmp_path, joins, person_clip, outage):
    """The server goes away mid-call and comes back on the same port: the client rejoins
    by itself with backoff, the camera is fed at its rate all along, and the room ends up
    with exactly one seat for it."""
    sig, new_process = OUTAGES[outage]
    server = Serve(tmp_path).start()
    try:
        join = joins(tmp_path, [server.url, "--name", "stayer", "--clip", str(person_clip("intel_asl_bird.mkv")),
                                "--virtual-camera", "--vcam-backend", "roomfuse-memory", "--vcam-size", "640x360",
                                "--fps", "20"], memory_camera=True)
        join.wait_log("receiving the room's composite")
        wait_for(lambda: len({crc for _, crc in join.frames()}) >= 10, 30, "composite frames on the camera",
                 proc=join.proc, log=join.log)
        down_at = time.time()
        if new_process:
            server.stop(sig)
        else:
            server.proc.send_signal(sig)
        join.wait_log("lost", timeout=30)
        time.sleep(2.0)  # stay down a while: the client must keep retrying
        if new_process:
            server.start()
        else:
            server.proc.send_signal(signal.SIGCONT)
        join.wait_log("rejoined room 'main'", timeout=60)
        join.wait_log("receiving the room's composite", count=2, timeout=30)
        rejoined_at = time.time()
        wait_for(lambda: len({crc for t, crc in join.frames() if t > rejoined_at}) >= 10, 30,
                 "fresh composite frames after the rejoin", proc=join.proc, log=join.log)
        # A frozen server still holds the old seat until it notices the silence (its
        # stall timeout plus a fade); then only the new one is left.
        wait_for(lambda: [p["name"] for p in server.participants()] == ["stayer"], 20,
                 "exactly one seat for the client", log=server.log)
        join.proc.send_signal(signal.SIGINT)
        assert join.finish(30) == 0, join.text()[-3000:]
        assert server.participants() == []
    finally:
        if server.proc is not None and not new_process:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()

    text = join.text()
    assert "reconnecting in" in text and "1 reconnect" in text, text[-3000:]
    frames = join.frames()
    times = np.array([t for t, _ in frames])
    assert np.diff(times).max() < 0.5  # the camera never went quiet, outage included
    outage_frames = [crc for t, crc in frames if down_at + 0.5 < t < rejoined_at - 0.5]
    assert len(outage_frames) >= 20 * 2 * 0.8  # at least the 2 s held down, at about 20 fps
    # While the server was away the camera showed the last good frame (one picture).
    assert len(set(outage_frames)) <= 2


@pytest.fixture
def xvfb(tmp_path):
    """A virtual X display whose screen can be read back (Xvfb -fbdir writes it as XWD)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    fb = tmp_path / "fb"
    fb.mkdir()
    proc = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x720x24", "-fbdir", str(fb),
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        display = proc.stdout.readline().strip()
        assert display.isdigit(), "Xvfb did not start"

        def screen() -> np.ndarray:
            data = (fb / "Xvfb_screen0").read_bytes()
            header, ncolors = int.from_bytes(data[:4], "big"), int.from_bytes(data[76:80], "big")
            bgrx = np.frombuffer(data, np.uint8, offset=header + 12 * ncolors).reshape(720, 1280, 4)
            return bgrx[..., 2::-1]  # RGB

        yield f":{display}", screen
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_show_puts_the_live_room_in_a_window(server, joins, person_clip, tmp_path, xvfb):
    display, screen = xvfb
    join = joins(tmp_path, [server.url, "--name", "viewer", "--clip", str(person_clip("intel_asl_bird.mkv")),
                            "--show"], env={"DISPLAY": display})
    join.wait_log("receiving the room's composite")
    time.sleep(2.0)
    first = screen().astype(np.int16)
    time.sleep(1.0)
    second = screen().astype(np.int16)
    join.proc.send_signal(signal.SIGINT)
    assert join.finish(30) == 0, join.text()[-3000:]
    assert ours(server, "viewer") == []
    # The window (top left, no window manager) shows the room at its 32:9 shape, and
    # it is live: the signing person moves between the two looks.
    ys, xs = np.nonzero(second.sum(axis=2) > 30)
    assert xs.max() - xs.min() > 2.5 * (ys.max() - ys.min()), (xs.min(), xs.max(), ys.min(), ys.max())
    assert np.abs(second - first).mean() > 0.5
