"""roomfuse inpaint / extend: results and one-line errors with exit status 2."""
import argparse

import cv2
import numpy as np
import pytest

from roomfuse import tools


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def inpaint(argv):
    return tools.inpaint_main(parse(tools.add_inpaint_arguments, argv))


def extend(argv):
    return tools.extend_main(parse(tools.add_extend_arguments, argv))


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (0, 0), 2)
    mask = np.zeros((60, 80), np.uint8)
    mask[20:40, 30:50] = 255
    cv2.imwrite(str(tmp_path / "img.png"), img)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    cv2.imwrite(str(tmp_path / "small_mask.png"), mask[:50])
    (tmp_path / "notes.png").write_text("not an image")
    return tmp_path, img, mask


def test_inpaint_fills_only_the_masked_pixels(files):
    d, img, mask = files
    assert inpaint(["--image", str(d / "img.png"), "--mask", str(d / "mask.png"),
                    "--output", str(d / "out.png"), "--grower", "blend"]) == 0
    out = cv2.imread(str(d / "out.png"))
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert not np.array_equal(out[mask > 0], img[mask > 0])


def test_extend_widens_and_keeps_the_original_in_the_middle(files):
    d, img, _ = files
    assert extend(["--image", str(d / "img.png"), "--width", "120",
                   "--output", str(d / "wide.png"), "--grower", "telea"]) == 0
    out = cv2.imread(str(d / "wide.png"))
    assert out.shape == (60, 120, 3)
    assert np.array_equal(out[:, 20:100], img)
    assert out[:, :20].std() > 0 and out[:, :20].mean() > 10    # grown, not black


@pytest.mark.parametrize("argv, name, reason", [
    (["--image", "{d}/nope.png", "--mask", "{d}/mask.png"], "nope.png", "no such file"),
    (["--image", "{d}/img.png", "--mask", "{d}/absent.png"], "absent.png", "no such file"),
    (["--image", "{d}/notes.png", "--mask", "{d}/mask.png"], "notes.png", "not a readable image"),
    (["--image", "{d}/img.png", "--mask", "{d}/small_mask.png"], "small_mask.png",
     "sizes must match"),
])
def test_inpaint_bad_input_is_one_line_and_exit_2(files, capsys, argv, name, reason):
    d = files[0]
    argv = [a.format(d=d) for a in argv] + ["--output", str(d / "o.png"), "--grower", "blend"]
    assert inpaint(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err and reason in err
    assert "Traceback" not in err
    assert not (d / "o.png").exists()


def test_extend_rejects_a_narrower_width_and_unknown_grower(files, capsys):
    d = files[0]
    assert extend(["--image", str(d / "img.png"), "--width", "50",
                   "--output", str(d / "o.png"), "--grower", "blend"]) == 2
    assert "narrower" in capsys.readouterr().err
    assert extend(["--image", str(d / "img.png"), "--width", "100",
                   "--output", str(d / "o.png"), "--grower", "magic"]) == 2
    assert "magic" in capsys.readouterr().err


def test_unwritable_output_is_reported(files, capsys):
    d = files[0]
    assert inpaint(["--image", str(d / "img.png"), "--mask", str(d / "mask.png"),
                    "--output", str(d / "no_dir" / "o.png"), "--grower", "blend"]) == 2
    assert "no_dir" in capsys.readouterr().err
