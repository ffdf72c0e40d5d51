"""The growth network and its checkpoints."""
import pytest
import torch

from roomfuse.growth.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from roomfuse.growth.model import GrowthNet, NCAConfig
from roomfuse.growth.rule import RuleConfig


def test_last_layer_starts_at_zero_so_the_update_is_zero():
    net = GrowthNet(NCAConfig(channels=10, hidden=32))
    state = torch.rand(2, 10, 7, 9)
    assert torch.count_nonzero(net(state)) == 0


def test_perception_sees_colour_differences_not_absolute_colour():
    net = GrowthNet(NCAConfig(channels=7, hidden=8))
    ramp = torch.arange(12, dtype=torch.float32).expand(1, 7, 6, 12).contiguous()
    feats = net.perceive(ramp)
    assert feats.shape == (1, 25, 6, 12)
    colour, rest = feats[:, :9], feats[:, 9:]            # R, G, B: sobel x, sobel y, laplacian
    assert torch.allclose(colour[0, 0::3, :, 1:-1], torch.ones(3, 6, 10))   # d/dx = 1
    assert torch.allclose(colour[0, 1::3], torch.zeros(3, 6, 12))          # d/dy = 0
    assert torch.allclose(colour[0, 2::3, :, 1:-1], torch.zeros(3, 6, 10), atol=1e-6)
    assert torch.equal(rest[:, 0::4], ramp[:, 3:])       # other channels keep identity
    # A uniform brightness shift changes no colour feature at all.
    shifted = ramp.clone()
    shifted[:, :3] += 0.3
    assert torch.allclose(net.perceive(shifted)[:, :9], colour, atol=1e-5)


def test_config_rejects_a_state_without_hidden_channels():
    with pytest.raises(ValueError):
        GrowthNet(NCAConfig(channels=6))


def test_checkpoint_round_trip_keeps_config_and_weights(tmp_path):
    cfg = NCAConfig(channels=12, hidden=24)
    net = GrowthNet(cfg)
    torch.nn.init.normal_(net.fc2.weight)
    rule = RuleConfig(alpha=0.3, grow_steps=7, frame_steps=1)
    path = tmp_path / "m.pt"
    save_checkpoint(path, net, rule, factor=4, meta={"iterations": 5})
    loaded, rule2, factor, meta = load_checkpoint(path)
    assert loaded.config == cfg and rule2 == rule and factor == 4
    assert meta == {"iterations": 5}
    state = torch.rand(1, 12, 5, 5)
    assert torch.equal(loaded(state), net(state))


def test_loading_something_else_fails_with_the_path(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_checkpoint(bogus)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_perception_of_gathered_cells_equals_the_dense_perception():
    from roomfuse.growth.rule import Cells

    net = GrowthNet(NCAConfig(channels=9, hidden=8))
    state = torch.rand(2, 9, 7, 11)
    known = torch.rand(2, 1, 7, 11) > 0.4
    known[0, 0, 0, 0] = known[1, 0, 6, 10] = False         # corners use the padding
    cells = Cells(known)
    flat = state.permute(0, 2, 3, 1).reshape(-1, 9)
    dense = net.perceive(state).permute(0, 2, 3, 1)[~known[:, 0]]
    assert torch.allclose(net.perceive_gathered(flat[cells.neigh]), dense, atol=1e-6)
