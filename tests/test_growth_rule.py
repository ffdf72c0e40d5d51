"""The growth rule: clamping, neighbourhood gating, state carry, determinism."""
import numpy as np
import pytest
import torch

from roomfuse.growth.classical import line_blend
from roomfuse.growth.model import ALIVE, GEOMETRY, GrowthNet, NCAConfig
from roomfuse.growth.rule import GrowthRule, GrowthState, RuleConfig, fire_pattern, row_blend


RGB_SLICE = slice(0, 3)


def busy_net(seed=0, channels=8):
    """A network with a non-zero last layer, so every step really writes something."""
    torch.manual_seed(seed)
    net = GrowthNet(NCAConfig(channels=channels, hidden=16))
    torch.nn.init.normal_(net.fc2.weight, 0, 0.3)
    return net


def inputs(h=20, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, h, w, generator=g)
    known = torch.ones(1, 1, h, w, dtype=torch.bool)
    known[..., 5:15, 8:20] = False
    return image, known


@pytest.mark.parametrize("train", [False, True])
def test_known_cells_never_change(train):
    image, known = inputs()
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=12))
    out, state = rule(image, known, train=train, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[known.expand_as(out)], image[known.expand_as(image)])
    assert torch.equal(state.cells[:, RGB_SLICE][known.expand_as(out)], image[known.expand_as(image)])
    # ... and the hole really was written
    hole = ~known.expand_as(out)
    assert not torch.allclose(out[hole], row_blend(image, known)[hole])


def test_cell_with_too_few_alive_neighbours_is_not_written():
    h, w = 12, 40
    image = torch.rand(1, 3, h, w)
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    known[..., :, :4] = True                      # life only on the left edge
    rule = GrowthRule(busy_net(), RuleConfig(alpha=0.2, schedule="hash"))
    start = rule.init_state(image, known)
    after = rule.step(start, known, phase=0)
    changed = (after != start).any(dim=1)[0]      # (h, w)
    # Column 4 touches three alive cells (3/9 >= 0.2): its cells that this step's fire
    # pattern picks are written. Column 5 and beyond see no alive cell yet and must be
    # left exactly as they were.
    parity = fire_pattern(h, w, (0, 0), 0)[:, 4]
    assert 0 < int(parity.sum()) < h
    assert torch.equal(changed[:, 4], parity)
    assert not changed[:, 5:].any()
    assert torch.equal(after[0, ALIVE, :, 4] == 1, parity)
    assert (after[0, ALIVE, :, 5:] == 0).all()


def test_growth_front_moves_at_most_one_cell_per_step():
    h, w = 6, 20
    image = torch.rand(1, 3, h, w)
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    known[..., :, 0] = True
    rule = GrowthRule(busy_net(), RuleConfig(alpha=0.2))
    _, state = rule(image, known, steps=6)
    alive = state.cells[0, ALIVE] > 0.5
    assert alive[:, 1].all() and alive[:, 2].any()
    assert not alive[:, 7:].any()


def test_state_round_trip_keeps_hidden_cells_and_clamps_revealed_ones():
    image, known = inputs()
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=10, frame_steps=0, follow=0.0))
    _, state = rule(image, known)
    # Same frame, zero steps: the carried state comes back unchanged.
    out2, state2 = rule(image, known, state)
    assert torch.equal(state2.cells, state.cells) and state2.phase == state.phase
    # Reveal part of the hole and hide a part that was known.
    known2 = known.clone()
    known2[..., 5:15, 8:12] = True
    known2[..., 0:3, 0:3] = False
    image2 = torch.rand_like(image)
    out3, state3 = rule(image2, known2, state)
    assert torch.equal(out3[known2.expand_as(out3)], image2[known2.expand_as(image2)])
    still = ~known & ~known2
    # Cells hidden in both frames keep colour, life and hidden channels (their gap
    # geometry is recomputed: the hole around them changed).
    carried = [0, 1, 2, ALIVE] + list(range(GEOMETRY.stop, state.cells.shape[1]))
    assert torch.equal(state3.cells[:, carried][:, :, still[0, 0]], state.cells[:, carried][:, :, still[0, 0]])
    # Newly hidden cells remember the colour last seen there.
    assert torch.equal(out3[0, :, 0:3, 0:3], image[0, :, 0:3, 0:3])


def test_the_state_goes_in_and_out_and_its_clock_runs_on():
    """The caller holds the state; its step number advances by the steps run, and the
    hash schedule reads it. ``advance`` is the loop the call runs."""
    image, known = inputs()
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=5, frame_steps=2, schedule="hash"))
    _, first = rule(image, known)
    _, second = rule(image, known, first)
    assert first.phase == 5 and second.phase == 7
    # The same frame from the same cells at another step fires other cells.
    _, other = rule(image, known, GrowthState(first.cells, 6))
    assert not torch.equal(other.cells, second.cells)
    # By hand: start, then carry, with the step numbers the state kept.
    cells = rule.advance(image, known, None, 0, 5)
    assert torch.equal(cells, first.cells)
    assert torch.equal(rule.advance(image, known, cells, 5, 2), second.cells)


def test_states_join_for_a_batch_and_split_back():
    a = GrowthState(torch.rand(1, 8, 4, 6), 3)
    b = GrowthState(torch.rand(1, 8, 4, 6), 40)
    both = GrowthState.join([a, b])
    assert both.cells.shape[0] == 2 and both.phase.tolist() == [3, 40]
    back = both.split()
    assert [s.phase for s in back] == [3, 40] and all(type(s.phase) is int for s in back)
    assert torch.equal(back[0].cells, a.cells) and torch.equal(back[1].cells, b.cells)
    assert GrowthState.join([a]) is a and a.split()[0] is a
    assert a.fits(torch.zeros(1, 3, 4, 6))
    assert not a.fits(torch.zeros(2, 3, 4, 6)) and not a.fits(torch.zeros(1, 3, 4, 7))


def test_state_of_another_size_starts_afresh():
    image, known = inputs()
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=3))
    _, state = rule(image, known)
    small_img, small_known = image[..., :10, :10], known[..., :10, :10]
    out, new = rule(small_img, small_known, state)
    assert new.cells.shape[2:] == (10, 10) and new.phase == 3
    ref, _ = rule(small_img, small_known)
    assert torch.equal(out, ref)


def test_inference_is_deterministic_on_cpu():
    image, known = inputs(seed=3)
    rule = GrowthRule(busy_net(seed=2), RuleConfig(grow_steps=8))
    a, sa = rule(image, known)
    b, sb = rule(image, known)
    assert torch.equal(a, b) and torch.equal(sa.cells, sb.cells)


def test_untrained_network_returns_exactly_the_row_blend():
    image, known = inputs()
    rule = GrowthRule(GrowthNet(NCAConfig()), RuleConfig(grow_steps=6))
    out, _ = rule(image, known)
    assert torch.equal(out, row_blend(image, known))


def test_row_blend_matches_the_numpy_blend():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 24, 3)).astype(np.float32)
    known = rng.random((16, 24)) > 0.6
    known[3] = False                                   # a row with nothing known
    ref = line_blend(img, known)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    k = torch.from_numpy(known)[None, None]
    got = row_blend(t, k)[0].permute(1, 2, 0).numpy()
    rows = known.any(axis=1)
    np.testing.assert_allclose(got[rows], ref[rows], atol=1e-3)
    assert np.isfinite(got).all()


def test_fire_pattern_is_fixed_about_half_and_changes_with_the_step():
    a = fire_pattern(64, 64, (0, 0), 5)
    assert torch.equal(a, fire_pattern(64, 64, (0, 0), 5))
    assert 0.45 < a.float().mean() < 0.55
    assert (a != fire_pattern(64, 64, (0, 0), 6)).float().mean() > 0.4
    # a crop fires exactly the cells the whole canvas would
    assert torch.equal(fire_pattern(10, 20, (7, 9), 5), a[7:17, 9:29])


def test_carried_fill_follows_the_new_frame_at_the_follow_rate():
    image, known = inputs()
    hole = ~known.expand(1, 3, *known.shape[2:])
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=6, frame_steps=0, follow=0.25))
    out, state = rule(image, known)
    image2 = image * 0.5                                   # the scene got darker
    out2, _ = rule(image2, known, state)
    target = row_blend(image2, known)
    carried = hole & (state.cells[:, ALIVE:ALIVE + 1] > 0.5)  # cells the first frame grew
    assert carried.sum() > 20
    assert torch.allclose(out2[carried], 0.75 * out[carried] + 0.25 * target[carried], atol=1e-6)
    unreached = hole & ~carried                             # start afresh from the new frame
    assert torch.equal(out2[unreached], target[unreached])


def test_following_damps_border_noise_in_the_fill():
    """Noise on the known border moves a carried fill far less than a per-frame fill."""
    image, known = inputs(seed=5)
    hole = ~known.expand(1, 3, *known.shape[2:])
    rule = GrowthRule(GrowthNet(NCAConfig(channels=8, hidden=8)), RuleConfig(frame_steps=1))
    g = torch.Generator().manual_seed(0)
    state, carried, fresh = None, [], []
    for _ in range(12):
        noisy = (image + 0.05 * torch.randn(image.shape, generator=g)).clamp(0, 1)
        out, state = rule(noisy, known, state)
        carried.append(out[hole])
        fresh.append(rule(noisy, known)[0][hole])
    def change(seq):
        return torch.stack([(a - b).abs().mean() for a, b in zip(seq[5:], seq[4:-1])]).mean()
    assert change(carried) < 0.4 * change(fresh)


def test_mean_schedule_writes_every_eligible_cell_and_nothing_beyond():
    h, w = 12, 40
    image = torch.rand(1, 3, h, w)
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    known[..., :, :4] = True
    rule = GrowthRule(busy_net(), RuleConfig(alpha=0.2, schedule="mean"))
    start = rule.init_state(image, known)
    changed = (rule.step(start, known) != start).any(dim=1)[0]
    assert changed[:, 4].all() and not changed[:, 5:].any()
    with pytest.raises(ValueError):
        RuleConfig(schedule="random")


def test_skipped_cells_are_never_written_and_others_still_grow():
    """Cells a person will cover keep their starting fill; the rest of the hole grows."""
    image, known = inputs()
    skip = torch.zeros_like(known)
    skip[..., 7:13, 11:17] = True                 # inside the hole
    rule = GrowthRule(busy_net(), RuleConfig(grow_steps=10))
    start = rule.init_state(image, known)
    out, state = rule(image, known, skip=skip)
    s = skip.expand_as(out)
    assert torch.equal(out[s], start[:, RGB_SLICE][s])
    grown = (~known & ~skip).expand_as(out)
    assert not torch.allclose(out[grown], start[:, RGB_SLICE][grown])
