"""Images, clips and masks for training and evaluating growers.

The team data lives under ``$ROOMFUSE_DATA`` (default ``../shared/data``, see
``roomfuse.datapath``). A fixed part of it, ``EVAL_SPLIT``, is held out: training never reads those
files, and every figure reported for the growth model comes from them. The split is
written here, in code, so it cannot drift between runs or machines.

Training also reads photos that installed packages ship (scikit-image, matplotlib), which
adds variety to a small team set without downloading anything.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..datapath import data_root as default_data_root
from ..errors import RoomfuseError

DATA_ENV = "ROOMFUSE_DATA"
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp"}
CLIP_EXT = {".mp4", ".mkv", ".avi", ".gif", ".mov", ".webm"}

# Held out from training, relative to the data root. Chosen to span easy and hard scenes:
# a plain room corner, a subway platform, a cathedral nave, a derelict hall; three NYU
# rooms; a static empty room with people walking in and a handheld bedroom; two webcam
# clips. (The ASL clips share one office room, so the room of intel_asl_walk is not new
# to the model; its person and motion are.)
EVAL_SPLIT = frozenset({
    "images/wide/jitsi_background-2.jpg",
    "images/wide/sunhays80_img_062.png",
    "images/wide/urban100_img_065.png",
    "images/wide/pixabay_lost-places-1928728_1280.jpg",
    "images/indoor/nyu_119_image.png",
    "images/indoor/nyu_308_image.png",
    "images/indoor/nyu_377_image.png",
    "scene_clips/intel_one_by_one_person_detection.mp4",
    "scene_clips/sam2_bedroom.mp4",
    "person_clips/intel_asl_walk.mkv",
    "person_clips/pyfeat_single_face.mp4",
})

# Photos shipped inside installed packages: (module, file name). Grey ones are textures.
PACKAGE_IMAGES = [
    ("skimage", "astronaut.png"), ("skimage", "chelsea.png"), ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"), ("skimage", "motorcycle_left.png"),
    ("skimage", "motorcycle_right.png"), ("skimage", "brick.png"), ("skimage", "grass.png"),
    ("skimage", "gravel.png"), ("skimage", "camera.png"), ("skimage", "color.png"),
    ("matplotlib", "grace_hopper.jpg"),
]


class DataError(RoomfuseError):
    """A data file or folder is missing or cannot be decoded; the message names it."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else the project's data location ($ROOMFUSE_DATA, ...)."""
    return Path(root) if root is not None else default_data_root()


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB; raises DataError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_frames(path: str | os.PathLike, step: int = 1, limit: int | None = None,
                start: int = 0) -> list[np.ndarray]:
    """Decode every ``step``-th frame from ``start`` (RGB uint8), at most ``limit``."""
    import av  # only the clip readers need PyAV

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as box:
            for i, frame in enumerate(box.decode(video=0)):
                if i < start or (i - start) % step:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                if limit is not None and len(frames) >= limit:
                    break
    except av.error.FFmpegError as err:
        raise DataError(f"{path}: cannot decode clip ({err})") from None
    if not frames:
        raise DataError(f"{path}: no frames decoded")
    return frames


def resize_height(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h == height:
        return img
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def list_media(root: Path) -> dict[str, list[str]]:
    """Relative paths of the team data by kind; raises DataError if the root is absent."""
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found (set {DATA_ENV})")
    kinds = {"images": [], "person_clips": [], "scene_clips": []}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        ext = path.suffix.lower()
        if rel.startswith("images/") and ext in IMAGE_EXT:
            kinds["images"].append(rel)
        elif rel.startswith("person_clips/") and ext in CLIP_EXT:
            kinds["person_clips"].append(rel)
        elif rel.startswith("scene_clips/") and ext in CLIP_EXT:
            kinds["scene_clips"].append(rel)
    return kinds


def split_media(root: Path, held_out: bool) -> dict[str, list[str]]:
    """The training part (``held_out=False``) or the evaluation part of the team data."""
    return {kind: [p for p in paths if (p in EVAL_SPLIT) == held_out]
            for kind, paths in list_media(root).items()}


def package_images() -> list[np.ndarray]:
    """Real photos shipped by installed packages (those that are missing are skipped)."""
    import importlib

    out = []
    for module, name in PACKAGE_IMAGES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        base = Path(mod.__file__).parent
        path = base / "data" / name if module == "skimage" else \
            base / "mpl-data" / "sample_data" / name
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def clip_stills(root: Path, rel_paths: list[str], per_clip: int, height: int) -> list[np.ndarray]:
    """``per_clip`` frames spread over each clip, resized to ``height``."""
    out = []
    for rel in rel_paths:
        frames = read_frames(root / rel)
        idx = np.linspace(0, len(frames) - 1, per_clip).round().astype(int)
        out.extend(resize_height(frames[i], height) for i in sorted(set(idx)))
    return out


def person_masks(frames: list[np.ndarray], keep_empty: bool = False) -> list[np.ndarray]:
    """mediapipe selfie-segmentation person masks (bool) for RGB frames. Masks covering
    under 2 % of the frame are dropped unless ``keep_empty`` (one mask per frame)."""
    import mediapipe as mp

    masks = []
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1) as seg:
        for frame in frames:
            prob = seg.process(frame).segmentation_mask
            mask = prob > 0.5
            if keep_empty or mask.mean() > 0.02:
                masks.append(mask)
    return masks


# ---------------------------------------------------------------- training samples


def _jitter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Colour jitter on float 0..1: channel order, per-channel gain, brightness, contrast,
    gamma. The channel shuffle keeps the few training photos' palettes from becoming
    the model's idea of what rooms look like."""
    img = np.ascontiguousarray(img[..., rng.permutation(3)])
    img = img * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.75, 1.25) + mean + rng.uniform(-0.08, 0.08)
    return np.clip(img, 0, 1) ** np.float32(rng.uniform(0.8, 1.25))


class Sampler:
    """Random training crops with holes, returned at the working resolution.

    Every crop is cut at full (canvas) scale, masked there, and brought down with the
    same known-only area average the grower uses at inference (``downsample_known``), so
    training sees exactly the low-resolution inputs the live grower will see.
    """

    def __init__(self, images: list[np.ndarray], person_bank: list[np.ndarray],
                 crop: tuple[int, int], factor: int, seed: int, canvas_height: int = 360):
        if not images:
            raise DataError("no training images found")
        self.factor = factor
        self.crop = crop                         # (h, w) at the working resolution
        self.bank = person_bank
        self.rng = np.random.default_rng(seed)
        self.canvas_height = canvas_height
        # Store each image at 1.4x canvas height so scale augmentation stays a downscale.
        top = int(canvas_height * 1.4)
        self.images = [resize_height(im, top).astype(np.float32) / 255 for im in images]

    def _crop(self, level: float) -> np.ndarray:
        """A random full-scale crop: random image, scale, position, flip, colour."""
        rng = self.rng
        fh, fw = self.crop[0] * self.factor, self.crop[1] * self.factor
        img = self.images[int(rng.integers(len(self.images)))]
        scale = rng.uniform(0.45, 1.0)
        h = max(fh, int(img.shape[0] * scale))
        w = max(fw, int(img.shape[1] * h / img.shape[0]))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        y, x = int(rng.integers(0, h - fh + 1)), int(rng.integers(0, w - fw + 1))
        img = img[y:y + fh, x:x + fw]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return _jitter(rng, np.ascontiguousarray(img))

    def _joined(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Two different crops either side of a gap. Neither image knows what lies
        between them, so the target across the gap is each side's own continuation
        cross-faded linearly: plausible joining, not invention."""
        from .masks import gap_stripe

        a, b = self._crop(level), self._crop(level)
        h, w = a.shape[:2]
        hole = gap_stripe(self.rng, h, w, level)
        cols = np.flatnonzero(hole[0])
        t = np.zeros(w, np.float32)
        t[cols] = (np.arange(len(cols)) + 0.5) / len(cols)
        t[cols[-1] + 1:] = 1
        truth = a * (1 - t)[None, :, None] + b * t[None, :, None]
        return truth, hole

    def _low(self, truth: np.ndarray, hole: np.ndarray):
        from .base import downsample_known

        known = ~hole
        img8 = np.clip(truth * 255 + 0.5, 0, 255).astype(np.uint8)
        low, low_known = downsample_known(img8, known, self.factor)
        h, w = low_known.shape
        truth_low = cv2.resize(truth, (w, h), interpolation=cv2.INTER_AREA)
        return low / 255, low_known, truth_low

    def still(self, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input HxWx3, known HxW, truth HxWx3) at the working resolution, float 0..1."""
        from .masks import random_hole

        if self.rng.random() < 0.2:
            truth, hole = self._joined(level)
        else:
            truth = self._crop(level)
            hole = random_hole(self.rng, *truth.shape[:2], level, self.bank)
        return self._low(truth, hole)

    def sequence(self, level: float, frames: int) -> list[tuple]:
        """A static camera with moving holes: the same crop each frame with fresh sensor
        noise, a fixed gap and a person (or blob) drifting sideways. Truth is static, so
        any change in the fill of a cell that stays hidden is flicker."""
        from .masks import gap_stripe, person_hole, strokes

        rng = self.rng
        truth = self._crop(level)
        h, w = truth.shape[:2]
        gap = gap_stripe(rng, h, w, level)
        mover = person_hole(rng, h, w, level, self.bank) if self.bank else \
            strokes(rng, h, w, level)
        speed = int(rng.integers(-3, 4)) * self.factor
        out = []
        for i in range(frames):
            hole = gap | np.roll(mover, speed * i, axis=1)
            noisy = np.clip(truth + rng.normal(0, 2.0 / 255, truth.shape).astype(np.float32), 0, 1)
            low, low_known, _ = self._low(noisy, hole)
            truth_low = cv2.resize(truth, (low.shape[1], low.shape[0]),
                                   interpolation=cv2.INTER_AREA)
            out.append((low, low_known, truth_low))
        return out


def training_images(root: Path, scene_frames: int = 6, person_frames: int = 2,
                    height: int = 360) -> list[np.ndarray]:
    """Training part of the team data (photos and clip stills) plus package photos. Few
    stills per person clip: most of them share one office room, which would otherwise
    outweigh every other scene."""
    parts = split_media(root, held_out=False)
    imgs = [load_rgb(root / p) for p in parts["images"]]
    imgs += clip_stills(root, parts["scene_clips"], scene_frames, height)
    imgs += clip_stills(root, parts["person_clips"], person_frames, height)
    return imgs + package_images()


def training_person_bank(root: Path, every: int = 6) -> list[np.ndarray]:
    """Person masks from the training person clips (mediapipe), a few per clip."""
    parts = split_media(root, held_out=False)
    frames = []
    for rel in parts["person_clips"]:
        frames += [resize_height(f, 240) for f in read_frames(root / rel, step=every)]
    return person_masks(frames)


# ---------------------------------------------------------------- evaluation cases

GAP_CENTRES = (0.4, 0.5, 0.6)   # gap positions per image: centred and off-centre feeds


def eval_gap_images(root: Path, height: int = 360) -> list[np.ndarray]:
    """Held-out photos and two stills from each held-out scene clip, at canvas height."""
    parts = split_media(root, held_out=True)
    imgs = [resize_height(load_rgb(root / p), height) for p in parts["images"]]
    return imgs + clip_stills(root, parts["scene_clips"], 2, height)


def train_gap_images(root: Path, count: int, height: int = 360) -> list[np.ndarray]:
    """The same kind of cases from training photos, to compare against held-out scores."""
    parts = split_media(root, held_out=False)
    return [resize_height(load_rgb(root / p), height) for p in parts["images"][:count]]


def gap_cases(images: list[np.ndarray], widths, centres=GAP_CENTRES
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, known) pairs: each image cut into two feeds by a gap of each width."""
    from .masks import gap_mask

    return [(img, ~gap_mask(img.shape[0], img.shape[1], w, c))
            for w in widths for img in images for c in centres]
