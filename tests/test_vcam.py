"""The virtual-camera sink: letterboxing, the newest-frame slot, the paced sender, and
pyvirtualcam's real ``Camera`` API over an in-memory backend (v4l2loopback cannot be
loaded on CI machines)."""
from __future__ import annotations

import glob
import os
import platform
import threading
import time
import zlib

import numpy as np
import pytest
import pyvirtualcam

from roomfuse.vcam import (LINUX_SETUP, NewestFrame, PacedOutput, VirtualCamera, VirtualCameraError, letterbox,
                           no_device_message, placeholder)

pytestmark = pytest.mark.timeout(60)

BACKEND = "roomfuse-memory"


class MemoryCamera:
    """A pyvirtualcam backend that keeps what it is sent.

    With ``MEMORY_VCAM_LOG`` set it also appends one line per event to that file
    (``open W H FPS FORMAT``, ``frame TIME CRC`` per frame, ``closed``), so a test can
    watch a camera inside another process.
    """

    instances: list["MemoryCamera"] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "memory0"
        self.count = 0
        self.times: list[float] = []
        self.crcs: list[int] = []
        self.last: np.ndarray | None = None
        self.closed = 0
        self._log = open(os.environ["MEMORY_VCAM_LOG"], "a") if os.environ.get("MEMORY_VCAM_LOG") else None
        fmt = pyvirtualcam.PixelFormat(pyvirtualcam.camera.decode_fourcc(fourcc)).name
        self._write(f"open {width} {height} {fps:g} {fmt}")
        MemoryCamera.instances.append(self)

    def _write(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()

    def device(self):
        return self._device

    def native_fourcc(self):
        return self.fourcc

    def send(self, frame):
        self.count += 1
        self.times.append(time.monotonic())
        self.crcs.append(zlib.crc32(frame))
        self.last = frame.copy()
        self._write(f"frame {time.time():.4f} {self.crcs[-1]}")

    def close(self):
        self.closed += 1
        self._write("closed")
        if self._log is not None:
            self._log.close()


def register_memory_backend() -> None:
    pyvirtualcam.register_backend(BACKEND, MemoryCamera)


@pytest.fixture
def memory_backend():
    register_memory_backend()
    MemoryCamera.instances.clear()
    yield MemoryCamera
    MemoryCamera.instances.clear()


def _solid(w, h, rgb):
    return np.tile(np.array(rgb, np.uint8), (h, w, 1))


def test_letterbox_wide_image_gets_bars_above_and_below():
    out = letterbox(_solid(400, 100, (200, 50, 10)), 320, 180)
    assert out.shape == (180, 320, 3) and out.dtype == np.uint8
    # scale 0.8 -> 320x80, centred: rows 50..129 are picture, the rest black
    assert (out[:50] == 0).all() and (out[130:] == 0).all()
    assert (out[50:130] == (200, 50, 10)).all()


def test_letterbox_tall_image_gets_bars_left_and_right():
    out = letterbox(_solid(90, 360, (0, 255, 0)), 640, 360)
    assert (out[:, :275] == 0).all() and (out[:, 365:] == 0).all()
    assert (out[:, 275:365] == (0, 255, 0)).all()


def test_letterbox_keeps_orientation_and_upscales():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)  # left half red
    image[:10, 20:] = (0, 0, 255)  # top right blue
    out = letterbox(image, 160, 80)
    assert out.shape == (80, 160, 3)
    assert (out[40, 10] == (255, 0, 0)).all()
    assert (out[10, 150] == (0, 0, 255)).all()
    assert (out[70, 150] == 0).all()


def test_letterbox_same_size_is_untouched():
    image = _solid(64, 48, (1, 2, 3))
    assert letterbox(image, 64, 48) is image


def test_placeholder_has_the_size_and_some_text():
    image = placeholder(320, 180, "joining room main")
    assert image.shape == (180, 320, 3)
    assert image.max() > 100 and np.median(image) < 40


def test_newest_frame_skips_stale_frames_and_converts_once():
    calls = []

    def convert(item):
        calls.append(item)
        return _solid(4, 4, (item, 0, 0))

    slot = NewestFrame(convert)
    assert slot.get() == (0, None)
    for i in (1, 2, 3):
        slot.put(i)
    seq, image = slot.get()
    assert seq == 3 and image[0, 0, 0] == 3
    assert slot.get()[1] is image  # the same conversion, not a second one
    assert calls == [3]


def test_newest_frame_is_safe_with_a_producer_thread():
    slot = NewestFrame(lambda i: _solid(2, 2, (i % 256, 0, 0)))
    done = threading.Event()

    def produce():
        for i in range(1, 20001):
            slot.put(i)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    last = 0
    while not done.is_set():
        seq, image = slot.get()
        assert seq >= last  # never goes back in time
        if image is not None:
            assert seq >= 1
        last = seq
    t.join()
    assert slot.get()[0] == 20000 and slot.get()[1][0, 0, 0] == 20000 % 256


def test_paced_output_repeats_the_last_frame_at_its_rate():
    slot = NewestFrame()
    sent = []
    slot.put(_solid(8, 8, (9, 9, 9)))
    out = PacedOutput("test", slot, fps=40, send=sent.append).start()
    time.sleep(1.0)
    out.stop()
    assert not out.running and out.error is None
    assert 30 <= len(sent) <= 42, len(sent)  # 40 fps for 1 s, on a busy 2-core machine
    assert out.fresh == 1 and out.sent == len(sent)
    assert all(frame is sent[0] for frame in sent)


def test_paced_output_starts_with_idle_then_prepares_each_new_frame_once():
    slot = NewestFrame()
    idle = _solid(8, 8, (1, 1, 1))
    sent, prepared = [], []

    def prepare(image):
        prepared.append(image)
        return image + 1

    out = PacedOutput("test", slot, fps=50, send=sent.append, prepare=prepare, idle=idle).start()
    time.sleep(0.2)
    slot.put(_solid(8, 8, (100, 100, 100)))
    time.sleep(0.3)
    out.stop()
    assert sent[0] is idle
    assert sent[-1][0, 0, 0] == 101
    assert len(prepared) == 1 and out.fresh == 1


def test_paced_output_without_idle_sends_nothing_before_a_frame():
    sent = []
    out = PacedOutput("test", NewestFrame(), fps=50, send=sent.append).start()
    time.sleep(0.2)
    out.stop()
    assert sent == [] and out.sent == 0


def test_paced_output_keeps_a_sink_error_and_stops():
    slot = NewestFrame()
    slot.put(_solid(2, 2, (0, 0, 0)))

    def broken(image):
        raise OSError("disk full")

    out = PacedOutput("test", slot, fps=50, send=broken).start()
    deadline = time.monotonic() + 5
    while out.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not out.running
    assert isinstance(out.error, OSError) and "disk full" in str(out.error)
    out.stop()


def test_virtual_camera_opens_pyvirtualcam_with_size_rate_and_rgb(memory_backend):
    with VirtualCamera(640, 360, fps=25, backend=BACKEND, device="room-cam") as cam:
        (backend,) = memory_backend.instances
        assert (backend.width, backend.height, backend.fps) == (640, 360, 25)
        assert pyvirtualcam.camera.decode_fourcc(backend.fourcc) == pyvirtualcam.PixelFormat.RGB.value
        assert cam.device == "room-cam" and cam.backend == BACKEND
        cam.send(cam.fit(_solid(1000, 200, (10, 20, 30))))
        assert backend.count == 1 and cam.frames_sent == 1
        frame = backend.last.reshape(360, 640, 3)
        assert (frame[180, 320] == (10, 20, 30)).all() and (frame[0, 0] == 0).all()
    assert backend.closed == 1
    cam.close()  # a second close is harmless
    assert backend.closed == 1


def test_virtual_camera_keeps_its_rate_while_no_new_frames_come(memory_backend):
    """The paced sender over the real Camera API: a reconnect (no new frames) must not
    starve the camera; it gets the last good frame again at the camera's rate."""
    slot = NewestFrame()
    cam = VirtualCamera(320, 180, fps=20, backend=BACKEND)
    idle = placeholder(320, 180, "joining")
    out = PacedOutput("virtual camera", slot, cam.fps, cam.send, prepare=cam.fit, idle=idle).start()
    try:
        time.sleep(0.3)
        for shade in (50, 100, 150):
            slot.put(_solid(640, 240, (shade, shade, shade)))
            time.sleep(0.15)
        gap_start = time.monotonic()
        time.sleep(1.0)  # the connection is down: nothing new arrives
    finally:
        out.stop()
        cam.close()
    (backend,) = memory_backend.instances
    assert backend.closed == 1 and out.error is None
    assert backend.crcs[0] == zlib.crc32(idle)
    during_gap = [c for t, c in zip(backend.times, backend.crcs) if t > gap_start + 0.1]
    assert 14 <= len(during_gap) <= 19, len(during_gap)  # 20 fps over 0.9 s
    last = backend.last.reshape(180, 320, 3)
    assert (last[90, 160] == 150).all() and (last[5, 160] == 0).all()  # letterboxed last frame
    assert len(set(during_gap)) == 1 and during_gap[0] == zlib.crc32(backend.last)
    assert out.fresh == 3


def test_virtual_camera_rejects_odd_sizes_and_unknown_backends(memory_backend):
    with pytest.raises(VirtualCameraError, match="even"):
        VirtualCamera(641, 360, backend=BACKEND)
    with pytest.raises(VirtualCameraError, match="no-such-backend.*available:.*" + BACKEND):
        VirtualCamera(640, 360, backend="no-such-backend")
    assert memory_backend.instances == []


def _has_loopback_device() -> bool:
    for path in glob.glob("/sys/class/video4linux/video*/name"):
        with open(path) as f:
            name = f.read().lower()
        if "loopback" in name or "roomfuse" in name:
            return True
    return False


@pytest.mark.skipif(platform.system() != "Linux", reason="the v4l2loopback backend exists on Linux only")
def test_missing_v4l2loopback_says_how_to_create_one():
    """The real v4l2loopback backend on a machine without the module loaded."""
    if _has_loopback_device():
        pytest.skip("this machine has a v4l2loopback device")
    with pytest.raises(VirtualCameraError) as info:
        VirtualCamera(1280, 720, backend="v4l2loopback")
    text = str(info.value)
    assert "\n" not in text
    assert LINUX_SETUP in text and "exclusive_caps=1" in text and "Chrome" in text
    with pytest.raises(VirtualCameraError, match=r"virtual camera /dev/video77: .*does not exist"):
        VirtualCamera(1280, 720, device="/dev/video77", backend="v4l2loopback")


def test_no_device_message_per_platform():
    reason = "'obs' backend: OBS Virtual Camera is not installed in your system. Install OBS Studio."
    win = no_device_message(reason, None, system="Windows")
    assert win.startswith("virtual camera: OBS Virtual Camera is not available "
                          "(OBS Virtual Camera is not installed")
    assert "OBS Studio 26" in win and "\n" not in win
    mac = no_device_message(reason, "OBS Virtual Camera", system="Darwin")
    assert mac.startswith("virtual camera OBS Virtual Camera:") and "Start Virtual Camera once" in mac
    linux = no_device_message("'v4l2loopback' backend: Device /dev/video3 is busy.\nsecond", "/dev/video3",
                              system="Linux")
    assert "(Device /dev/video3 is busy)" in linux and LINUX_SETUP in linux
