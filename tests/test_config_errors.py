"""One error boundary: a setting the machine cannot honour stops every command with one
line naming the flag and exit status 2, never a traceback."""
from __future__ import annotations

import argparse
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from roomfuse.argtypes import add_device_argument
from roomfuse.errors import ConfigError, RoomfuseError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    image = np.full((48, 64, 3), 120, np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    cv2.imwrite(str(folder / "image.png"), image)
    cv2.imwrite(str(folder / "mask.png"), mask)
    return folder


COMMANDS = {
    "serve": ["serve", "--port", "0", "--segmenter", "key"],
    "render": ["render", "synthetic:1", "-o", "{tmp}/out.mp4", "--segmenter", "key", "--frames", "2"],
    "bench": ["bench", "synthetic:1", "--segmenter", "key", "--frames", "2", "--warmup", "1"],
    "inpaint": ["inpaint", "--image", "{img}/image.png", "--mask", "{img}/mask.png", "--output", "{tmp}/o.png"],
    "extend": ["extend", "--image", "{img}/image.png", "--width", "96", "--output", "{tmp}/o.png"],
    "train": ["train", "--out", "{tmp}/nca.pt", "--iterations", "1"],
    "eval": ["eval", "--out", "{tmp}/eval", "--frames", "2"],
}


@no_cuda
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_device_cuda_without_cuda_is_one_line_and_exit_2(command, images, tmp_path):
    argv = [a.format(tmp=tmp_path, img=images) for a in COMMANDS[command]] + ["--device", "cuda"]
    proc = subprocess.run([sys.executable, "-m", "roomfuse", *argv], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("W0000")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "--device cuda" in lines[0] and "CUDA" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_every_command_defines_device_the_same_way():
    from roomfuse.cli import COMMANDS as ALL, build_parser

    for name in ALL:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        device = [a for a in sub._actions if "--device" in a.option_strings]
        if name == "join":
            assert not device  # join runs no model
            continue
        assert len(device) == 1 and tuple(device[0].choices) == ("auto", "cpu", "cuda"), name
        assert device[0].default == "auto", name


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, RoomfuseError)
    p = argparse.ArgumentParser()
    add_device_argument(p)
    assert p.parse_args([]).device == "auto"
