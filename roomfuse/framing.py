"""Framing: people the same size, eyes on one line, moved like a calm camera operator.

Each feed gets a ``View`` (frames.py): which point of its picture sits at its tile's
anchor (the horizontal centre, on the eye line) and how much the picture is enlarged
over the plain fit. The layout draws the feed through it. Per feed:

1. Find the faces a few times a second: mediapipe's full-range face detector on a
   256-px-wide copy, in a worker thread, off the frame path. Where it finds no face but
   the matte shows a person, the head of the matte stands in.
2. Commit a subject (where the faces are and how big) only when the measurement, a
   median over the last ``window_s``, has left the committed one by more than a deadband
   for ``confirm_s``: gestures, nods and detector noise never move the camera; a person
   who steps aside or comes closer does.
3. Aim: every committed face at one common height on the canvas (the largest the
   farthest person reaches within ``max_zoom``), eyes on ``eye_line``, faces centred.
4. Move there with a critically damped spring (no overshoot, no pumping); a settled view
   stops exactly, so a static camera gives a static picture.
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Hashable, Sequence

import cv2
import numpy as np

from .config import FramingConfig
from .frames import Cutout, View
from .regions import shrink

DETECT_WIDTH = 256  # the full-range detector reads 192x192: a larger copy finds no more


@dataclass(frozen=True)
class Face:
    """A face box and its eye height, in fractions of the picture's width and height."""

    x: float
    y: float
    w: float
    h: float
    eye: float


@dataclass(frozen=True)
class Subject:
    """Who a feed should frame: the people's centre, eye line and face size (fractions of
    the picture's width, height and height), and their horizontal extent."""

    cx: float
    eye: float
    face: float
    x0: float
    x1: float

    @staticmethod
    def of(faces: Sequence[Face]) -> "Subject | None":
        """Several people in one feed are framed together: centred as a group, sized by
        their median face."""
        if not faces:
            return None
        x0 = min(f.x for f in faces)
        x1 = max(f.x + f.w for f in faces)
        return Subject(cx=(x0 + x1) / 2, eye=float(np.mean([f.eye for f in faces])),
                       face=float(np.median([f.h for f in faces])), x0=x0, x1=x1)


def plain_view(cfg: FramingConfig) -> View:
    """The whole picture at tile height: today's layout."""
    return View(0.5, cfg.eye_line, 1.0)


class FaceFinder:
    """mediapipe face detection, full-range model (bundled with mediapipe, works
    offline). The short-range model is 3x cheaper but misses a person standing 2 m back,
    and its boxes are a different size, so mixing the two would break equal sizes."""

    def __init__(self, min_score: float = 0.5, min_relative: float = 0.4):
        import mediapipe as mp  # heavy import; only when a real finder is built

        self._model = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_score)
        self.min_relative = min_relative

    def __call__(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        if w > DETECT_WIDTH:
            image = shrink(image, (DETECT_WIDTH, max(1, round(h * DETECT_WIDTH / w))))
        found = self._model.process(np.ascontiguousarray(image)).detections or ()
        h, w = image.shape[:2]
        faces = []
        for d in found:
            b = d.location_data.relative_bounding_box
            k = np.array([(p.x * w, p.y * h) for p in d.location_data.relative_keypoints[:6]])
            faces.append(Face(b.xmin, b.ymin, b.width, face_size(b.height, k, h), (k[0, 1] + k[1, 1]) / 2 / h))
        if faces:
            # A face far smaller than the largest is someone far behind, or a picture
            # on the wall: not who this camera is for.
            big = max(f.h for f in faces)
            faces = [f for f in faces if f.h >= self.min_relative * big]
        return faces

    def close(self) -> None:
        self._model.close()


# The detector's box shrinks by up to a fifth when a head bows (measured on the team's
# signing clips), so the size used is the median of four measures, each scaled to the
# box's height on the team clips: the box, the distance between the eyes (which a nod
# leaves alone), between the ears (likewise) and from the eyes to the mouth (which a
# turn of the head leaves alone). Keypoints: right eye, left eye, nose, mouth, right
# ear, left ear.
EYES_TO_FACE, EARS_TO_FACE, EYE_MOUTH_TO_FACE = 2.5, 1.15, 2.43


def face_size(box_h: float, k: np.ndarray, height: int) -> float:
    """Face height as a fraction of the picture's height, robust to a bowed or turned
    head. ``k``: the six keypoints in pixels."""
    eye = (k[0] + k[1]) / 2
    sizes = [box_h * height, EYES_TO_FACE * np.linalg.norm(k[0] - k[1]),
             EARS_TO_FACE * np.linalg.norm(k[4] - k[5]), EYE_MOUTH_TO_FACE * np.linalg.norm(eye - k[3])]
    return float(np.median(sizes)) / height


# The head of a matte against the face detector's box, measured on 95 frames of six team
# person clips: the detector's box is 0.63 of the matte head's height (median; 0.55-0.97
# between clips: hoods and hair) as it spans brow to chin and the matte hair to chin, and
# the eyes sit 0.42 of the head's height below its top. A fallback, so rough is enough.
HEAD_TO_FACE = 0.63
HEAD_EYE = 0.42
HEAD_ASPECT = 1.3  # head height over head width


def head_from_matte(alpha: np.ndarray) -> Face | None:
    """Where the face would be, from the person matte alone: the top of the silhouette,
    as wide as the middle of the head. For a head turned away from the camera, and for
    sources with no real face (synthetic participants)."""
    h, w = alpha.shape
    person = alpha > 0.5
    rows = person.sum(axis=1)
    if rows.sum() < 0.005 * h * w:
        return None
    tall = np.nonzero(rows >= max(2, 0.01 * w))[0]
    if len(tall) == 0:
        return None
    top = int(tall[0])
    head = 0.2 * h
    for _ in range(4):  # head height from the width of its middle, to a fixed point
        band = rows[int(top + 0.25 * head):int(top + 0.75 * head) + 1]
        if len(band) == 0:
            break
        head = max(4.0, HEAD_ASPECT * float(np.median(band)))
    y1 = min(h, int(top + head) + 1)
    cols = np.nonzero(person[top:y1].any(axis=0))[0]
    xs = np.nonzero(person[top:y1])[1]
    cx = float(xs.mean()) if len(xs) else float(cols.mean())
    width = head / HEAD_ASPECT
    return Face(x=(cx - width / 2) / w, y=(top + (1 - HEAD_TO_FACE) * head) / h, w=width / w,
                h=HEAD_TO_FACE * head / h, eye=(top + HEAD_EYE * head) / h)


def spring(x: np.ndarray, v: np.ndarray, target: np.ndarray, omega: float, dt: float):
    """One exact step of a critically damped spring (stable for any dt): the position
    approaches the target without overshoot, as fast as it can without oscillating."""
    d = x - target
    e = math.exp(-omega * dt)
    j = (v + omega * d) * dt
    return target + (d + j) * e, (v - omega * j) * e


class Operator:
    """One feed's camera operator: a committed subject, and the view moving toward it."""

    def __init__(self, cfg: FramingConfig, fps: float):
        self.cfg = cfg
        self.dt = 1.0 / fps
        self.t = 0.0
        self.subject: Subject | None = None
        self.recent: deque[tuple[float, Subject]] = deque()
        self._away_since: float | None = None  # when the measurement left the deadband
        self.state: np.ndarray | None = None  # cx, eye, log zoom
        self.velocity = np.zeros(3)
        self.reframes = 0  # how many times the subject was re-committed (for tests, logs)
        self.aspect = 4 / 3  # picture width over height; the Framer sets it from the frames

    def observe(self, subject: Subject | None) -> None:
        """A measurement at the current time (None: nobody found). Nobody found leaves
        the view where it is: an empty chair is not a reason to move the camera."""
        c = self.cfg
        if subject is not None:
            self.recent.append((self.t, subject))
        while self.recent and self.recent[0][0] < self.t - max(c.window_s, c.size_window_s):
            self.recent.popleft()
        near = [s for t, s in self.recent if t >= self.t - c.window_s]
        if not near:
            return
        sizes = [s.face for t, s in self.recent if t >= self.t - c.size_window_s]

        def median(f):
            return float(np.median([getattr(s, f) for s in near]))

        measured = Subject(cx=median("cx"), eye=median("eye"), face=float(np.median(sizes)),
                           x0=median("x0"), x1=median("x1"))
        if self.subject is None:
            self.subject = measured  # someone appeared: frame them at once
            self.reframes += 1
            return
        if not self._moved(measured, self.subject):
            self._away_since = None
        elif self._away_since is None:
            self._away_since = self.t
        elif self.t - self._away_since >= c.confirm_s - 1e-9:
            self.subject, self._away_since = measured, None
            self.reframes += 1

    def _moved(self, m: Subject, s: Subject) -> bool:
        c = self.cfg
        face = max(s.face, 1e-3)
        return (abs(m.eye - s.eye) / face > c.deadband_eye
                or abs(m.cx - s.cx) * self.aspect / face > c.deadband_x
                or abs(math.log(max(m.face, 1e-3) / face)) > c.deadband_zoom)

    def step(self, target: View) -> View:
        """Advance one frame toward ``target``; a new view jumps there at once."""
        goal = np.array([target.cx, target.eye, math.log(target.zoom)])
        if self.state is None:
            self.state = goal
        else:
            omega = 4.74 / max(self.cfg.move_s, 1e-3)  # 95 % of the way after move_s
            self.state, self.velocity = spring(self.state, self.velocity, goal, omega, self.dt)
            # Settled: stop exactly, so a still camera yields an unchanging picture.
            if np.abs(self.state - goal).max() < 2e-4 and np.abs(self.velocity).max() < 2e-3:
                self.state, self.velocity = goal, np.zeros(3)
        self.t += self.dt
        return View(float(self.state[0]), float(self.state[1]), float(math.exp(self.state[2])),
                    goal_zoom=target.zoom)


def aim(subjects: dict[Hashable, Subject], aspects: dict[Hashable, float],
        cfg: FramingConfig) -> dict[Hashable, View]:
    """The view each framed feed should settle at: one face size for everyone (the
    largest the farthest person reaches, within the limits), eyes on the eye line."""
    if not subjects:
        return {}

    def reach(k: Hashable) -> float:
        # The most a feed may be enlarged: the zoom limit, and its group of people
        # (with a face width of room each side) must fit the tile's width.
        s, a = subjects[k], aspects[k]
        group = (s.x1 - s.x0) * a + 1.6 * s.face
        return max(cfg.min_zoom, min(cfg.max_zoom, a / max(group, 1e-3)))

    face = min(cfg.face_height, min(reach(k) * s.face for k, s in subjects.items()))
    face = max(face, min(cfg.min_face_height, cfg.face_height))
    return {k: View(s.cx, s.eye, float(np.clip(face / max(s.face, 1e-3), cfg.min_zoom, reach(k))))
            for k, s in subjects.items()}


class Framer:
    """The framing stage: cutouts in, one ``View`` per feed out. Keeps an operator and a
    face finder per feed key, so a feed keeps its framing when seats change and a
    newcomer starts fresh.

    ``finder``: "mediapipe" (face detection, matte as fallback) or "matte" (the matte's
    head only: no model, for synthetic sources). ``sync``: detect on the frame path
    (deterministic, for tests); otherwise in a worker thread, results a frame or two
    later, except a new feed's first look, which is taken at once so it starts framed.
    """

    def __init__(self, cfg: FramingConfig = FramingConfig(), fps: float = 30.0,
                 finder: str = "mediapipe", sync: bool = False):
        if finder not in ("mediapipe", "matte"):
            raise ValueError(f"face finder must be 'mediapipe' or 'matte', got {finder!r}")
        self.cfg = cfg
        self.fps = fps
        self.finder_kind = finder
        self.every = max(1, round(fps / max(cfg.detect_hz, 1e-3)))
        self.operators: dict[Hashable, Operator] = {}
        self.finders: dict[Hashable, FaceFinder] = {}
        self._due: dict[Hashable, int] = {}  # frames until the next look
        self._pending: dict[Hashable, Future] = {}
        self._worker = None if sync else ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")

    @staticmethod
    def look(finder: "FaceFinder | None", cut: Cutout) -> Subject | None:
        """Find who to frame in one cutout (runs in the worker thread)."""
        faces = finder(cut.frame.image) if finder is not None else []
        if not faces:
            head = head_from_matte(cut.alpha)
            faces = [head] if head is not None else []
        return Subject.of(faces)

    def __call__(self, cutouts: Sequence[Cutout], keys: Sequence[Hashable]) -> list[View]:
        self._forget(set(self.operators) - set(keys))
        for i, (key, cut) in enumerate(zip(keys, cutouts)):
            if key not in self.operators:
                op = self.operators[key] = Operator(self.cfg, self.fps)
                if self.finder_kind == "mediapipe":
                    self.finders[key] = FaceFinder()
                op.observe(self.look(self.finders.get(key), cut))  # framed from their first frame
                # Stagger the feeds' looks so they do not all land on one frame.
                self._due[key] = self.every + i % self.every
            self._take(key, cut.frame.size)
            self._look_if_due(key, cut)
        return self._step(keys, [c.frame.size for c in cutouts])

    def views_ahead(self, sizes: Sequence[tuple[int, int]], keys: Sequence[Hashable]) -> list[View] | None:
        """This frame's views before its people are segmented, from the frames' sizes
        (``(width, height)``, one per feed) and the looks taken so far; with
        ``look_again`` after segmentation, the same as calling the framer then. The
        looks run behind the frames anyway; only a new feed, framed from its first
        frame's look, and a framer that looks on the frame path (``sync``) need this
        frame's people first: None then."""
        if self._worker is None or any(k not in self.operators for k in keys):
            return None
        self._forget(set(self.operators) - set(keys))
        for key, size in zip(keys, sizes):
            self._take(key, size)
        return self._step(keys, sizes)

    def look_again(self, cutouts: Sequence[Cutout], keys: Sequence[Hashable]) -> None:
        """After ``views_ahead``: start the looks that are due on this frame's cutouts."""
        for key, cut in zip(keys, cutouts):
            self._look_if_due(key, cut)

    def _take(self, key: Hashable, size: tuple[int, int]) -> None:
        """The feed's picture shape, and a look that has finished since the last frame,
        to the feed's operator."""
        op = self.operators[key]
        op.aspect = size[0] / size[1]
        pending = self._pending.get(key)
        if pending is not None and pending.done():
            del self._pending[key]
            op.observe(pending.result())

    def _look_if_due(self, key: Hashable, cut: Cutout) -> None:
        self._due[key] -= 1
        if self._due[key] <= 0 and key not in self._pending:
            self._due[key] = self.every
            if self._worker is None:
                self.operators[key].observe(self.look(self.finders.get(key), cut))
            else:
                self._pending[key] = self._worker.submit(self.look, self.finders.get(key), cut)

    def _step(self, keys: Sequence[Hashable], sizes: Sequence[tuple[int, int]]) -> list[View]:
        aspects = {k: w / h for k, (w, h) in zip(keys, sizes)}
        subjects = {k: self.operators[k].subject for k in keys if self.operators[k].subject is not None}
        targets = aim(subjects, aspects, self.cfg)
        plain = plain_view(self.cfg)
        return [self.operators[k].step(targets.get(k, plain)) for k in keys]

    def _forget(self, gone: set) -> None:
        for k in gone:
            self.operators.pop(k, None)
            self._due.pop(k, None)
            pending = self._pending.pop(k, None)
            finder = self.finders.pop(k, None)
            if pending is not None and not pending.cancel():
                # A look is running with this finder: close it when the look is done.
                pending.add_done_callback(lambda _f, m=finder: m is not None and m.close())
            elif finder is not None:
                finder.close()

    def reset(self) -> None:
        self._forget(set(self.operators))

    def close(self) -> None:
        self.reset()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
