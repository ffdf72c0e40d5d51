"""The dense and tiled forms of the growth step compute what the gathered step does;
the CUDA-graph runner's buffer logic, run on the CPU; and, on a GPU, the CUDA path
against the CPU and half precision against float32."""
import logging

import numpy as np
import pytest
import torch

from roomfuse.growth.cuda_graph import GraphRunner, eager_capture
from roomfuse.growth.model import ALIVE, GrowthNet, NCAConfig
from roomfuse.growth.nca_grower import NCAGrower
from roomfuse.growth.rule import Cells, GrowthRule, GrowthState, RuleConfig
from roomfuse.growth.tiles import Tiles, bucket, tile_index

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def busy_net(seed=0, channels=16, hidden=32, spread=0.3):
    """A network with a non-zero last layer, so every step really writes something."""
    torch.manual_seed(seed)
    net = GrowthNet(NCAConfig(channels=channels, hidden=hidden))
    torch.nn.init.normal_(net.fc2.weight, 0, spread)
    return net.eval()


def masks(kind: str, b: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    known = torch.ones(b, 1, h, w, dtype=torch.bool)
    if kind == "gap":            # a vertical gap and a hole, as between two feeds
        known[..., :, w // 2 - 3:w // 2 + 3] = False
        known[..., h // 3:, 2:9] = False
    elif kind == "blobs":        # scattered holes of every size
        known = torch.rand(b, 1, h, w, generator=g) > 0.35
        known[..., 4:h - 2, 6:w // 2] = False
    elif kind == "edges":        # holes touching every border (replicate padding)
        known[..., :3, :] = False
        known[..., :, -4:] = False
        known[..., h - 5:, : w // 3] = False
    for i in range(1, b):        # each canvas of the batch its own hole
        known[i] = known[i].roll(i * 3, dims=2)
    skip = torch.zeros_like(known)
    skip[..., h // 3:h // 3 + 5, 3:7] = True
    return known, skip & ~known


def close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the values' scale (the hidden channels of a random
    network grow far beyond 1, where float32 rounding is larger in absolute terms)."""
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("schedule", ["mean", "hash"])
@pytest.mark.parametrize("kind", ["gap", "blobs", "edges"])
@pytest.mark.parametrize("b, use_skip", [(1, False), (2, True)])
def test_dense_and_tiled_forms_compute_the_gathered_step(schedule, kind, b, use_skip):
    h, w = 29, 45   # not a multiple of any tile: tiles hang over the edges
    g = torch.Generator().manual_seed(7)
    image = torch.rand(b, 3, h, w, generator=g)
    known, skip = masks(kind, b, h, w)
    skip = skip if use_skip else None
    rule = GrowthRule(busy_net(seed=len(kind)), RuleConfig(grow_steps=12, frame_steps=3, schedule=schedule))
    with torch.inference_mode():
        ref, ref_state = rule(image, known, skip=skip)
        image2 = (image * 0.8 + 0.1).roll(2, dims=3)   # the next frame, from the carried state
        ref2, ref_state2 = rule(image2, known, GrowthState(ref_state.cells, 17), skip=skip)
        for form in ("dense", "tiled"):
            out, state = rule(image, known, skip=skip, form=form)
            # Which cells fired is decided identically: the alive channel is exact.
            assert torch.equal(state.cells[:, ALIVE], ref_state.cells[:, ALIVE]), form
            assert close(state.cells, ref_state.cells) < 1e-6, (form, close(state.cells, ref_state.cells))
            out2, state2 = rule(image2, known, GrowthState(state.cells, 17), skip=skip, form=form)
            assert torch.equal(state2.cells[:, ALIVE], ref_state2.cells[:, ALIVE]), form
            assert close(state2.cells, ref_state2.cells) < 1e-6, (form, close(state2.cells, ref_state2.cells))
            assert state.phase == ref_state.phase == 12 and state2.phase == ref_state2.phase == 20
            # Known cells stay the camera's; skipped cells keep their start.
            k = known.expand_as(out2)
            assert torch.equal(out2[k], image2[k])
    # ... and the network really wrote the hole (the comparison is not vacuous).
    hole = (~known).expand_as(ref)
    assert (ref[hole] != rule.init_state(image, known)[:, :3][hole]).float().mean() > 0.5


def test_folded_perception_is_the_same_function():
    net = busy_net(seed=3, channels=12, hidden=24)
    x = torch.rand(3, 12, 10, 14)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    direct = net.fc1(net.perceive_valid(padded).permute(0, 2, 3, 1))
    folded = torch.nn.functional.conv2d(padded, *net.folded()).permute(0, 2, 3, 1)
    assert torch.allclose(folded, direct, atol=1e-5)
    rule = GrowthRule(net, RuleConfig(grow_steps=8))
    image = torch.rand(1, 3, 20, 30)
    known, skip = masks("gap", 1, 20, 30)
    with torch.inference_mode():
        _, ref = rule(image, known, skip=skip)
        plan = Tiles.plan(known, skip, size=8)
        _, got = rule(image, known, skip=skip, form="tiled", tiles=plan, fold=True)
    assert close(got.cells, ref.cells) < 1e-5


def test_folded_gathered_step_is_the_same_function():
    net = busy_net(seed=4, channels=12, hidden=24)
    neigh = torch.rand(50, 9, 12)
    w, bias = net.folded_gathered()
    direct = net.fc1(net.perceive_gathered(neigh))
    assert torch.allclose(torch.addmm(bias, neigh.reshape(50, -1), w), direct, atol=1e-5)
    rule = GrowthRule(net, RuleConfig(grow_steps=8))
    image = torch.rand(2, 3, 20, 30)
    known, skip = masks("gap", 2, 20, 30)
    with torch.inference_mode():
        _, ref = rule(image, known, skip=skip)
        state = rule.init_state(image, known)
        for i in range(8):
            state = rule.step(state, known, phase=i, cells=Cells(known, skip), folded=(w, bias))
    assert close(state, ref.cells) < 1e-5
    hole = (~known).expand(-1, 3, -1, -1)
    assert (state[:, :3][hole] != rule.init_state(image, known)[:, :3][hole]).float().mean() > 0.5


def test_tiles_cover_every_cell_to_update_and_write_nothing_twice():
    b, h, w, size = 2, 37, 50, 16
    known, skip = masks("blobs", b, h, w, seed=4)
    plan = Tiles.plan(known, skip, size=size)
    todo = (~known & ~skip)[:, 0]
    assert plan.count == bucket(plan.used) >= plan.used
    assert (plan.coords[plan.used:] == -1).all()
    read, write, ys, xs, canvas = tile_index(plan.coords, (b, h, w), size)
    spare = b * h * w
    real = write[write != spare]
    assert real.unique().numel() == real.numel(), "two tiles write one cell"
    covered = torch.zeros(b * h * w, dtype=torch.bool)
    covered[real] = True
    assert covered[todo.reshape(-1)].all(), "a cell to update lies in no tile"
    # every used tile holds work; spare tiles read real cells and write only the spare row
    per_tile = plan.todo[write.view(-1, size * size)].any(1)
    assert per_tile[:plan.used].all() and not per_tile[plan.used:].any()
    assert (write.view(-1, size * size)[plan.used:] == spare).all()
    assert read.min() >= 0 and read.max() < spare
    assert not plan.todo[-1]


def test_bucket_sizes_are_few_and_waste_little():
    sizes = [bucket(n) for n in range(1, 3000)]
    assert all(s >= n for n, s in zip(range(1, 3000), sizes))
    assert all(s <= max(8, 1.25 * n) for n, s in zip(range(1, 3000), sizes))
    assert len(set(sizes)) <= 40


def test_phase_per_canvas_matches_each_canvas_alone():
    """Rooms batched together are at different steps of the hash schedule."""
    rule = GrowthRule(busy_net(seed=5), RuleConfig(grow_steps=6, frame_steps=4, schedule="hash"))
    image = torch.rand(2, 3, 18, 26)
    known, _ = masks("gap", 2, 18, 26)
    phases = torch.tensor([3, 40])
    with torch.inference_mode():
        _, start = rule(image, known)
        for form in ("gathered", "dense", "tiled"):
            _, both = rule(image, known, GrowthState(start.cells, phases), form=form)
            assert torch.equal(both.phase, phases + 4)
            for i, one in enumerate(both.split()):
                _, alone = rule(image[i:i + 1], known[i:i + 1],
                                GrowthState(start.cells[i:i + 1], int(phases[i])), form=form)
                assert close(one.cells, alone.cells) < 1e-6, form
                assert one.phase == alone.phase == int(phases[i]) + 4


def test_training_steps_stay_gathered():
    rule = GrowthRule(busy_net(), RuleConfig())
    image = torch.rand(1, 3, 10, 10)
    known, _ = masks("gap", 1, 10, 10)
    with pytest.raises(ValueError, match="gathered"):
        rule(image, known, train=True, form="tiled")


# ---- the graph runner, with the recording replaced by plain calls -------------------------

def test_graph_runner_reads_its_static_inputs_and_writes_fixed_outputs():
    calls = []

    def fn(x, y, scale):
        calls.append(1)
        x.mul_(scale)            # writes its input in place, as the growth step does
        return x + y, y.sum()
    runner = GraphRunner(fn, capture=eager_capture)
    a, b = torch.arange(6.0).view(2, 3), torch.ones(2, 3)
    first = runner(a, b, static=(2.0,))
    assert torch.equal(first[0], torch.arange(6.0).view(2, 3) * 2 + 1)
    assert torch.equal(a, torch.arange(6.0).view(2, 3)), "the caller's tensor was written"
    c = torch.full((2, 3), 5.0)
    second = runner(c, b, static=(2.0,))
    assert second[0] is first[0], "outputs are the recording's fixed buffers"
    assert torch.equal(second[0], torch.full((2, 3), 11.0)), "the new inputs were not copied in"
    assert runner.recorded == 1
    runner(c, b, static=(3.0,))                       # another static argument
    runner(torch.ones(4, 3), torch.ones(4, 3), static=(2.0,))  # another shape
    assert runner.recorded == 3 and len(runner.graphs) == 3
    runner.max_graphs = 2
    runner(torch.ones(5, 3), torch.ones(5, 3), static=(2.0,))
    assert len(runner.graphs) == 2 and runner.recorded == 4


def test_graph_runner_falls_back_to_eager_when_recording_fails(caplog):
    def broken(fn, inputs, warmup):
        raise RuntimeError("operation not permitted when stream is capturing")
    runner = GraphRunner(lambda x: x * 3, capture=broken)
    with caplog.at_level(logging.WARNING):
        out = runner(torch.ones(3))
        out2 = runner(torch.full((3,), 2.0))
    assert torch.equal(out[0], torch.full((3,), 3.0)) and torch.equal(out2[0], torch.full((3,), 6.0))
    assert runner.failed and "capturing" in runner.failed
    assert sum("capture failed" in r.message for r in caplog.records) == 1


def canvas_frames(n=4, h=96, w=256, seed=0):
    """A textured canvas with a gap and a person hole that moves frame to frame."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 64, 3), dtype=np.uint8), (0, 0), 3)
    frames = []
    for f in range(n):
        known = np.ones((h, w), bool)
        known[:, w // 2 - 12:w // 2 + 12] = False
        known[30:, 30 + 3 * f:80 + 3 * f] = False
        covered = np.zeros_like(known)
        covered[40:, 36 + 3 * f:74 + 3 * f] = True
        frames.append((np.ascontiguousarray(base[:, 2 * f:2 * f + w]), known, covered))
    return frames


def test_tiled_grower_on_recorded_graphs_matches_the_gathered_grower():
    gathered = NCAGrower(device="cpu")
    tiled = NCAGrower(device="cpu", tiled=True, tile=8)
    tiled.record_graphs(eager_capture)
    frames = canvas_frames(5)
    frames.append(canvas_frames(1, h=64, w=160, seed=1)[0])   # another canvas size: fresh
    for image, known, covered in frames:
        a = gathered.fill(image, known, covered)
        b = tiled.fill(image, known, covered)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert close(tiled.state.cells, gathered.state.cells) < 1e-5
    runners = tiled.runners
    assert runners["fresh"].recorded == 2 and runners["carried"].recorded >= 1
    assert runners["fresh"].failed is None and runners["carried"].failed is None
    with pytest.raises(ValueError, match="CUDA"):
        NCAGrower(device="cpu", tiled=True, graphs=True)


# ---- on a GPU ---------------------------------------------------------------------------

@pytest.fixture()
def no_tf32(monkeypatch):
    """A float32 reference computed in float32: cuDNN would use TF32 by default."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.gpu
@cuda
def test_cuda_tiled_graphs_compute_the_cpu_fill(no_tf32):
    cpu, gpu = NCAGrower(device="cpu"), NCAGrower(device="cuda")
    assert gpu.tiled and gpu.runners is not None
    for image, known, covered in canvas_frames(4):
        a, b = cpu.fill(image, known, covered), gpu.fill(image, known, covered)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert close(gpu.state.cells.cpu().float(), cpu.state.cells) < 1e-4
    assert gpu.runners["carried"].failed is None and gpu.runners["carried"].recorded >= 1


@pytest.mark.gpu
@cuda
def test_half_precision_is_within_one_percent_of_float32(no_tf32):
    full, half = NCAGrower(device="cuda"), NCAGrower(device="cuda", half=True)
    assert half.dtype == torch.float16
    for image, known, covered in canvas_frames(6):
        full.fill(image, known, covered)
        half.fill(image, known, covered)
        hole = torch.from_numpy(~known[::4, ::4]).cuda()
        a, b = half.state.cells[0, :3].float(), full.state.cells[0, :3].float()
        rel = float((a - b)[:, hole].norm() / b[:, hole].norm())
        assert rel < 1e-2, rel


@pytest.mark.gpu
@cuda
def test_gathered_form_on_cuda_matches_the_tiled_form():
    tiled, gathered = NCAGrower(device="cuda"), NCAGrower(device="cuda", tiled=False)
    for image, known, covered in canvas_frames(3):
        a, b = tiled.fill(image, known, covered), gathered.fill(image, known, covered)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
