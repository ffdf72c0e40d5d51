"""NCAGrower: the learned growth model behind the pipeline's Grower interface."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from roomfuse.config import GrowConfig
from roomfuse.errors import ConfigError
from roomfuse.growth import make_grower
from roomfuse.growth.checkpoint import CheckpointError, save_checkpoint
from roomfuse.growth.model import GrowthNet, NCAConfig
from roomfuse.growth.nca_grower import DEFAULT_CHECKPOINT, NCAGrower
from roomfuse.growth.rule import RuleConfig
from roomfuse.pipeline import build_grower


def busy_net(seed=0):
    torch.manual_seed(seed)
    net = GrowthNet(NCAConfig(channels=10, hidden=16))
    torch.nn.init.normal_(net.fc2.weight, 0, 0.05)
    return net


def canvas(seed=0, h=72, w=160):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    known = np.ones((h, w), bool)
    known[:, 70:94] = False
    known[40:, 10:40] = False
    return image, known


@pytest.fixture()
def checkpoint(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, busy_net(), RuleConfig(grow_steps=6, frame_steps=1), factor=4)
    return path


def test_fill_keeps_known_pixels_and_fills_the_rest(checkpoint):
    image, known = canvas()
    out = NCAGrower(device="cpu", checkpoint=checkpoint).fill(image, known)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[known], image[known])
    assert not np.array_equal(out[~known], image[~known])


def test_state_is_kept_between_frames_and_reset_drops_it(checkpoint):
    image, known = canvas()
    grower = NCAGrower(device="cpu", checkpoint=checkpoint)
    first = grower.fill(image, known)
    assert grower.state is not None
    second = grower.fill(image, known)       # carried: one more step, not a fresh start
    assert not np.array_equal(first, second)
    grower.reset()
    assert grower.state is None
    assert np.array_equal(grower.fill(image, known), first)


def test_a_new_canvas_size_starts_afresh(checkpoint):
    grower = NCAGrower(device="cpu", checkpoint=checkpoint)
    grower.fill(*canvas())
    small = canvas(seed=1, h=48, w=96)
    out = grower.fill(*small)
    fresh = NCAGrower(device="cpu", checkpoint=checkpoint).fill(*small)
    assert np.array_equal(out, fresh)


def test_checkpoint_and_precision_come_from_the_config(checkpoint, tmp_path):
    grower = build_grower(GrowConfig(grower="nca", device="cpu", checkpoint=str(checkpoint)))
    assert grower.net.config.channels == 10
    assert build_grower(GrowConfig(device="cpu")).net.config.channels == 16  # the shipped weights
    with pytest.raises(CheckpointError, match="absent.pt"):
        build_grower(GrowConfig(device="cpu", checkpoint=str(tmp_path / "absent.pt")))
    with pytest.raises(ConfigError, match="--checkpoint .*only the growth model"):
        build_grower(GrowConfig(grower="telea", checkpoint=str(checkpoint)))
    with pytest.raises(ConfigError, match="precision"):
        build_grower(GrowConfig(device="cpu", precision="float8"))
    # half precision is a CUDA option; on the CPU the grower stays in float32
    assert build_grower(GrowConfig(device="cpu", precision="float16")).dtype == torch.float32


def test_device_choices(checkpoint):
    assert NCAGrower(device="auto", checkpoint=checkpoint).device.type in ("cpu", "cuda")
    with pytest.raises(ValueError):
        NCAGrower(device="tpu", checkpoint=checkpoint)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            NCAGrower(device="cuda", checkpoint=checkpoint)
        # half precision is a CUDA option; on the CPU the grower stays in float32
        assert NCAGrower(device="cpu", checkpoint=checkpoint, half=True).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_computes_the_same_fill_as_the_cpu(checkpoint):
    image, known = canvas()
    cpu = NCAGrower(device="cpu", checkpoint=checkpoint).fill(image, known)
    gpu = NCAGrower(device="cuda", checkpoint=checkpoint).fill(image, known)
    assert np.abs(cpu.astype(int) - gpu.astype(int)).max() <= 1


def test_shipped_model_loads_through_the_registry():
    import roomfuse

    assert DEFAULT_CHECKPOINT.is_file(), f"{DEFAULT_CHECKPOINT} is not shipped"
    # Inside the package, so that an installed wheel has it (tests/test_packaging.py).
    assert DEFAULT_CHECKPOINT.is_relative_to(Path(roomfuse.__file__).parent)
    grower = make_grower("nca", device="cpu")
    image, known = canvas()
    out = grower.fill(image, known)
    assert np.array_equal(out[known], image[known])
    assert grower.meta.get("history"), "the checkpoint carries its training record"


def test_fully_known_and_fully_unknown_canvases(checkpoint):
    grower = NCAGrower(device="cpu", checkpoint=checkpoint)
    image, _ = canvas()
    assert np.array_equal(grower.fill(image, np.ones(image.shape[:2], bool)), image)
    out = grower.fill(image, np.zeros(image.shape[:2], bool))
    assert out.shape == image.shape


def test_covered_pixels_save_work_but_not_what_shows():
    """With the pixels a person covers marked, the visible part of the fill is nearly
    the same as without, and known pixels are untouched."""
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8), (0, 0), 3)
    known = np.ones((96, 160), bool)
    known[:, 60:100] = False                      # a gap
    known[20:96, 110:150] = False                 # a person
    covered = np.zeros_like(known)
    covered[30:96, 115:145] = True                # the opaque core of that person
    a = NCAGrower(device="cpu").fill(image, known)
    b = NCAGrower(device="cpu").fill(image, known, covered)
    assert np.array_equal(b[known], image[known])
    shows = ~known & ~covered
    assert np.abs(a.astype(int) - b.astype(int))[shows].mean() < 1.0


def test_a_canvas_twice_the_work_height_grows_on_a_grid_twice_as_coarse(checkpoint):
    plain = NCAGrower(device="cpu", checkpoint=checkpoint)
    tall = NCAGrower(device="cpu", checkpoint=checkpoint, work_height=36)
    assert plain.factor_for(144) == 4 and tall.factor_for(35) == 4
    assert tall.factor_for(72) == 8 and tall.factor_for(107) == 8 and tall.factor_for(144) == 16
    image, known = canvas()
    prepared = tall.prepare(image, known)
    assert prepared.known.shape == (72 // 8, 160 // 8)
    out = tall.fill(image, known)
    assert np.array_equal(out[known], image[known]) and out.shape == image.shape
    # The pipeline's live grower takes it from the config; 0 turns it off.
    assert build_grower(GrowConfig(checkpoint=str(checkpoint), device="cpu", work_height=36)).factor_for(72) == 8
    assert build_grower(GrowConfig(checkpoint=str(checkpoint), device="cpu", work_height=0)).factor_for(720) == 4
