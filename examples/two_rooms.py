"""Two people from two different rooms, joined into one: the pipeline from Python.

    .venv/bin/python examples/two_rooms.py [OUT.mp4]

Reads two webcam clips from the team data (ROOMFUSE_DATA, default ../shared/data),
writes the composite, and prints what each stage cost on this machine.
"""
import sys

import numpy as np

from roomfuse.capture import ClipSource
from roomfuse.config import LayoutConfig, PipelineConfig
from roomfuse.datapath import data_root
from roomfuse.pipeline import Pipeline, StageTimer
from roomfuse.sinks import VideoWriter

out_path = sys.argv[1] if len(sys.argv) > 1 else "two_rooms.mp4"
clips = data_root() / "person_clips"
sources = [ClipSource(clips / "intel_asl_bird.mkv"), ClipSource(clips / "pyfeat_single_face.mp4")]
config = PipelineConfig(layout=LayoutConfig(height=360, gap=96))

costs = {}
with Pipeline(config) as pipe, VideoWriter(out_path, fps=30) as out:
    for i in range(90):  # three seconds at 30 fps
        timer = StageTimer()
        with timer.stage("decode"):
            frames = [s.frame_at(i / 30) for s in sources]
        result = pipe.process(frames, timer=timer)
        out.write(result.image)
        for stage, ms in timer.ms.items():
            costs.setdefault(stage, []).append(ms)

w, h = result.canvas.size
print(f"wrote {out_path} ({w}x{h}); median cost per frame:")
for stage, values in costs.items():
    print(f"  {stage:<10} {np.median(values):6.2f} ms")
