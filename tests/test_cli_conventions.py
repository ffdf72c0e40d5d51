"""How the `roomfuse` command behaves everywhere: defaults in --help, --version, one key
format, what `serve` prints (addresses others can use, no native log lines), progress
and a "wrote" line from the commands that write files, the training curves."""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from roomfuse import cli
from roomfuse.native_logs import StderrFilter, is_native
from roomfuse.rtc.connection import is_loopback
from roomfuse.rtc.ice import machine_addresses

ROOT = Path(__file__).resolve().parents[1]


def roomfuse(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roomfuse", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def flags(command: str):
    """(subparser, its optional actions) of one command, as `roomfuse COMMAND --help` builds them."""
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return sub, [a for a in sub._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_flag_with_a_default_shows_it_in_help(command):
    sub, actions = flags(command)
    formatter = sub._get_formatter()
    for action in actions:
        d = action.default
        if d is None or d is False or d == []:
            continue  # a switch that is off, or a flag whose absence means "not at all"
        text = formatter._format_action(action)
        assert "default" in text, f"roomfuse {command} {action.option_strings[0]}: no default in {text!r}"
    # The shipped help as a user sees it says it too.
    assert "(default: " in sub.format_help()


def test_version():
    result = roomfuse("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"roomfuse \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_one_key_format_everywhere(capsys):
    """The key travels in the URL's fragment (#key=), in help, errors, docs and the page."""
    texts = {f"roomfuse {c} --help": flags(c)[0].format_help() for c in cli.COMMANDS}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                 *sorted((ROOT / "roomfuse" / "rtc" / "static").glob("*.js"))]:
        texts[str(path.relative_to(ROOT))] = path.read_text()
    assert cli.main(["join"]) == 2
    texts["join error"] = capsys.readouterr().err
    for where, text in texts.items():
        assert "?key=" not in text, where
    assert "#key=" in texts["roomfuse join --help"] and "#key=" in texts["join error"]


def test_readme_training_command_writes_a_new_file():
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if "roomfuse train --" in line]
    assert commands
    for line in commands:
        out = re.search(r"--out (\S+)", line)
        assert out and "models/" not in out.group(1), line
    assert "models/" not in dict((a.dest, a.default) for a in flags("train")[1])["out"]


# ---- serve: what it prints ------------------------------------------------------------

def serve_output(tmp_path, *args, lines: int = 1) -> tuple[list[str], str]:
    """The first ``lines`` lines `roomfuse serve ARGS` prints, and its stderr up to then."""
    err_path = tmp_path / "serve.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "roomfuse", "serve", "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        out = [proc.stdout.readline() for _ in range(lines)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        proc.stdout.close()
    return out, err_path.read_text()


def test_serve_on_every_interface_prints_the_addresses_others_can_use_and_warns(tmp_path):
    others = [a for a in machine_addresses() if ":" not in a and not is_loopback(a)]
    out, err = serve_output(tmp_path, "--host", "0.0.0.0", "--segmenter", "key", "--grower", "telea",
                            lines=max(1, len(others)))
    shown = [re.match(r"roomfuse serve: +(?:open|or) http://([^:/]+):\d+/#key=\S+$", line.strip()) for line in out]
    assert all(shown), out
    hosts = [m.group(1) for m in shown]
    if others:
        assert hosts == sorted(others, key=others.index) or sorted(hosts) == sorted(others), (hosts, others)
        assert not any(is_loopback(h) for h in hosts)
        assert "travel in plain text" in err and "--tls-cert" in err, err
    else:  # a machine with loopback only: that is what there is to share
        assert hosts == ["127.0.0.1"]


def test_serve_on_loopback_does_not_warn_and_prints_no_native_log_lines(tmp_path):
    out, err = serve_output(tmp_path)  # the real segmenter: mediapipe is built before the address
    assert out[0].startswith("roomfuse serve: open http://127.0.0.1:"), (out, err)
    assert "plain text" not in err
    for line in err.splitlines():
        # absl's own format (severity, date, time, thread, file:line]), whatever the filter thinks
        assert not re.match(r"[IWEF]\d{4} \d\d:\d\d:", line), line
    assert "TensorFlow Lite" not in err and "absl" not in err, err


def test_native_log_filter_drops_only_native_lines_and_passes_partial_lines_at_once(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text(
        "import os, sys, time\n"
        "from roomfuse.native_logs import StderrFilter\n"
        "with StderrFilter():\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    os.write(2, b'W0000 00:00:1796123506.587315   26756 inference_feedback_manager.cc:114] Feedback\\n')\n"
        "    print('a real warning', file=sys.stderr, flush=True)\n"
        "    os.write(2, b'\\rtrain:  10%|#')\n"
        "    time.sleep(0.5)\n"
        "    print('Error: the end', file=sys.stderr, flush=True)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    os.set_blocking(proc.stderr.fileno(), False)
    import time

    time.sleep(0.35)  # the bar's partial line is out before its line ends
    early = proc.stderr.read() or b""
    proc.wait(10)
    rest = proc.stderr.read() or b""
    assert b"train:  10%" in early, early
    text = (early + rest).decode()
    assert text == "a real warning\n\rtrain:  10%|#Error: the end\n", repr(text)


def test_filter_is_undone_when_stopped():
    before = os.fstat(2)
    f = StderrFilter().start()
    assert os.fstat(2).st_ino != before.st_ino
    f.stop()
    assert os.fstat(2).st_ino == before.st_ino


# ---- commands that write files --------------------------------------------------------

@pytest.fixture()
def picture(tmp_path):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (0, 0), 3)
    mask = np.zeros((90, 120), np.uint8)
    mask[30:60, 40:80] = 255
    cv2.imwrite(str(tmp_path / "in.png"), image)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    return tmp_path


@pytest.mark.parametrize("command, extra, size, share", [
    ("inpaint", ["--mask", "mask.png"], "120x90", 11),
    ("extend", ["--width", "160"], "160x90", 25),
])
def test_inpaint_and_extend_show_progress_and_say_what_they_wrote(picture, command, extra, size, share):
    result = roomfuse(command, "--image", "in.png", *extra, "--output", "out.png", "--grower", "telea",
                      cwd=picture)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"wrote out\.png \({size}, {share} % grown with telea, \d+\.\d s\)\n", result.stdout), result.stdout
    assert f"{command}: 100%" in result.stderr and "2/2" in result.stderr, result.stderr
    assert cv2.imread(str(picture / "out.png")).shape[1::-1] == tuple(map(int, size.split("x")))


def test_train_writes_the_checkpoint_and_its_curves(tmp_path, monkeypatch, capsys):
    """`roomfuse train` end to end on a handful of synthetic pictures in place of the team
    data, with a small network and crops (the subject is what the command writes and
    says, not the model's quality)."""
    from dataclasses import dataclass, field

    from roomfuse.growth import train as training

    @dataclass(frozen=True)
    class Small(training.TrainConfig):
        crop: tuple = (16, 32)
        min_steps: int = 4
        max_steps: int = 5
        model: dict = field(default_factory=lambda: {"channels": 8, "hidden": 16})

    rng = np.random.default_rng(0)
    images = [cv2.GaussianBlur(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8), (0, 0), 4) for _ in range(4)]
    known = np.ones((96, 160), bool)
    known[:, 70:90] = False
    tiny = training.TrainData(images, [], val_cases=[(images[0], known)], train_cases=[(images[1], known)])
    monkeypatch.setattr(training.TrainData, "load", classmethod(lambda cls, root: tiny))
    monkeypatch.setattr(training, "TrainConfig", Small)
    out = tmp_path / "new" / "mine.pt"
    code = cli.main(["train", "--out", str(out), "--iterations", "4", "--val-every", "2", "--batch", "2",
                     "--device", "cpu", "--data", str(tmp_path)])
    assert code == 0
    curves = tmp_path / "new" / "mine-curves.png"
    assert out.is_file() and curves.is_file()
    picture = cv2.imread(str(curves))
    assert picture is not None and picture.shape[1] > picture.shape[0] > 200
    assert picture.std() > 20  # drawn, not blank
    printed = capsys.readouterr()
    assert printed.out.strip().splitlines()[-1].startswith(f"wrote {out} and {curves} after ")
    assert "train: 100%" in printed.err and "4/4" in printed.err
