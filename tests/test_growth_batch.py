"""Several rooms' canvases grown in one call, and the service that gathers them."""
import threading
import time

import numpy as np
import pytest
import torch

from roomfuse.growth.batch import GrowthService, GrowthServiceError, use_batching
from roomfuse.growth.model import GrowthNet, NCAConfig
from roomfuse.growth.nca_grower import NCAGrower
from roomfuse.growth.rule import RuleConfig

pytestmark = pytest.mark.timeout(60)


def engine(tiled=False, schedule="hash"):
    torch.manual_seed(0)
    net = GrowthNet(NCAConfig(channels=12, hidden=24))
    torch.nn.init.normal_(net.fc2.weight, 0, 0.05)
    return NCAGrower(device="cpu", net=net, rule=RuleConfig(grow_steps=5, frame_steps=2, schedule=schedule),
                     tiled=tiled, tile=8)


def room_frames(seed: int, n: int, h=72, w=160):
    """A room's canvases: textured, a gap and a person-shaped hole that moves."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 40, 3), dtype=np.uint8), (0, 0), 2)
    out = []
    for f in range(n):
        known = np.ones((h, w), bool)
        known[:, w // 2 - 8 + seed:w // 2 + 8 + seed] = False
        x = 10 + 2 * f + 5 * seed
        known[24:, x:x + 30] = False
        covered = np.zeros_like(known)
        covered[32:, x + 4:x + 26] = True if seed % 2 else False
        out.append((np.ascontiguousarray(base[:, f:f + w]), known, covered))
    return out


@pytest.mark.parametrize("tiled", [False, True])
def test_a_batch_grows_each_canvas_as_it_would_grow_alone(tiled):
    """Fresh and carried canvases, different sizes, steps and skips, in one call."""
    eng = engine(tiled=tiled)
    rooms = [room_frames(0, 3), room_frames(1, 3), room_frames(2, 3, h=48, w=96), room_frames(3, 3)]
    prepared = [[eng.prepare(*f) for f in r] for r in rooms]
    # Alone: each room grows its frames in turn.
    alone = []
    for frames in prepared:
        state, out = None, []
        for p in frames:
            (rgb,), (state,) = eng.grow([p], [state])
            out.append((rgb, state))
        alone.append(out)
    # Together: room 3 joins a frame late (fresh while the others carry).
    states = [None for _ in rooms]
    for f in range(3):
        live = [i for i in range(len(rooms)) if not (i == 3 and f == 0)]
        frame = [f - 1 if i == 3 else f for i in live]
        colours, new = eng.grow([prepared[i][k] for i, k in zip(live, frame)], [states[i] for i in live])
        for i, k, rgb, s in zip(live, frame, colours, new):
            states[i] = s
            want_rgb, want = alone[i][k]
            assert torch.equal(s.cells, want.cells), (i, f)
            assert s.phase == want.phase
            assert np.array_equal(rgb, want_rgb)


def test_several_threads_through_the_service_get_their_own_fills():
    eng = engine()
    service = GrowthService(eng, max_wait_s=0.5)   # long: every round waits for all rooms
    rooms = [room_frames(i, 6) for i in range(4)]
    clients = [service.client() for _ in rooms]
    got = [[] for _ in rooms]

    def run(i):
        for image, known, covered in rooms[i]:
            got[i].append(clients[i].fill(image, known, covered))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(rooms))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        for i, frames in enumerate(rooms):
            alone = engine()
            for (image, known, covered), out in zip(frames, got[i], strict=True):
                assert np.array_equal(out, alone.fill(image, known, covered)), i
        assert max(service.rounds) == 4, service.rounds   # grown together, not one by one
    finally:
        for c in clients:
            c.close()
        service.close()


def test_a_room_that_leaves_is_not_waited_for():
    service = GrowthService(engine(), max_wait_s=30.0)
    a, b = service.client(), service.client()
    image, known, covered = room_frames(0, 1)[0]
    b.fill(image, known, covered)       # b is live: it asked a moment ago
    done = {}

    def ask():
        t0 = time.monotonic()
        done["out"] = a.fill(image, known, covered)
        done["s"] = time.monotonic() - t0
    t = threading.Thread(target=ask)
    t.start()
    time.sleep(0.3)
    assert "out" not in done            # the round waits for b ...
    b.close()                           # ... until b leaves
    t.join(5)
    assert done["s"] < 5.0 and done["out"].shape == image.shape
    b.close()                           # leaving twice changes nothing
    assert service.members == 1
    a.close()
    service.close()


def test_a_room_that_stopped_asking_is_not_waited_for():
    """A room whose participants send nothing composes nothing: after ``live_s`` the
    others' rounds stop waiting for it; until its first request it is not waited for."""
    service = GrowthService(engine(), max_wait_s=30.0, live_s=0.3)
    a, b, c = service.client(), service.client(), service.client()   # c never asks
    image, known, covered = room_frames(0, 1)[0]
    b.fill(image, known, covered)
    time.sleep(0.4)                     # b has gone quiet
    t0 = time.monotonic()
    a.fill(image, known, covered)
    assert time.monotonic() - t0 < 5.0
    assert service.members == 3 and dict(service.rounds) == {1: 2}
    for x in (a, b, c):
        x.close()
    service.close()


class _Picky:
    """An engine that fails on canvases of one width, as a broken frame would."""

    def __init__(self, inner, bad_width):
        self.inner, self.bad_width, self.device = inner, bad_width, inner.device
        self.prepare, self.finish = inner.prepare, inner.finish

    def grow(self, frames, memories):
        if any(f.known.shape[1] == self.bad_width for f in frames):
            raise RuntimeError(f"cannot grow a canvas {self.bad_width} cells wide")
        return self.inner.grow(frames, memories)


def test_an_error_goes_back_to_the_room_that_caused_it():
    service = GrowthService(_Picky(engine(), bad_width=24), max_wait_s=0.5, live_s=5.0)
    good, bad = service.client(), service.client()
    ok_frame = room_frames(0, 1)[0]
    bad_frame = room_frames(1, 1, h=48, w=96)[0]
    result = {}

    def run(name, client, frame):
        try:
            result[name] = client.fill(*frame)
        except Exception as e:
            result[name] = e
    def together(bad_one):
        threads = [threading.Thread(target=run, args=("good", good, ok_frame)),
                   threading.Thread(target=run, args=("bad", bad, bad_one))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    together(ok_frame)                 # both rooms live
    assert isinstance(result["bad"], np.ndarray)
    before = service.rounds[2]
    together(bad_frame)
    assert service.rounds[2] == before + 1   # both in one round, which failed for one
    assert isinstance(result["bad"], RuntimeError) and "24 cells" in str(result["bad"])
    assert isinstance(result["good"], np.ndarray)
    reference = engine()
    reference.fill(*ok_frame)
    assert np.array_equal(result["good"], reference.fill(*ok_frame))
    good.close()
    bad.close()
    service.close()
    with pytest.raises(GrowthServiceError):
        good.fill(*ok_frame)
    with pytest.raises(GrowthServiceError):
        service.client()


def test_batching_policy():
    assert use_batching("off", "nca", "cpu") is False
    assert use_batching("on", "nca", "cpu") is True
    assert use_batching("auto", "telea", "auto") is False
    assert use_batching("auto", "nca", "cpu") is False          # a CPU gains nothing
    assert use_batching("auto", "nca", "auto") is torch.cuda.is_available()
    with pytest.raises(ValueError, match="growth model"):
        use_batching("on", "telea", "cpu")
    with pytest.raises(ValueError):
        use_batching("sometimes", "nca", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rooms_batched_on_cuda_grow_as_each_alone():
    eng = NCAGrower(device="cuda", half=True)
    rooms = [room_frames(i, 3) for i in range(4)]
    prepared = [[eng.prepare(*f) for f in r] for r in rooms]
    alone = []
    for frames in prepared:
        state = None
        for p in frames:
            (rgb,), (state,) = eng.grow([p], [state])
        alone.append(rgb)
    states = [None for _ in rooms]
    for f in range(3):
        colours, states = eng.grow([r[f] for r in prepared], states)
    for got, want in zip(colours, alone):
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    carried = eng.runners["carried"]
    assert carried.failed is None and carried.recorded >= 2   # one room, and four
