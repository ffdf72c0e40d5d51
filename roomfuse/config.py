"""Settings, one frozen dataclass per stage. Defaults are what `render` and `serve` use."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SegmentConfig:
    # mediapipe selfie segmentation: "landscape" (144x256, faster, made for video
    # calls) or "general" (256x256 square).
    model: str = "landscape"
    # Temporal smoothing of the matte. Where the new mask differs little from the
    # smoothed one (edge noise), move only `min_rate` of the way toward it, which damps
    # flicker; where it differs by `snap` or more (real motion), take the new value at
    # once, so the matte never trails a moving head. Measured on the team's talking-head
    # clips: edge jitter (2nd temporal difference) -30 %, mean deviation from the raw
    # matte under 0.6 %.
    min_rate: float = 0.15
    snap: float = 0.4
    # Run the feeds' segmentations in parallel threads (mediapipe releases the GIL).
    threads: int = 2
    # Draw each feed on the canvas as soon as it is segmented (the frame's views and
    # tiles are worked out first, from what the frames before showed), so a thread goes
    # from one feed's segmentation to its drawing and on to the next feed, and neither
    # core waits for the other between the two stages.
    draw_each: bool = True


@dataclass(frozen=True)
class LayoutConfig:
    height: int = 360  # canvas height in pixels (row layout: the feed height)
    gap: int = 64  # pixels between neighbouring feeds
    margin: int = 0  # pixels around the whole arrangement
    mode: str = "row"  # "row" or "grid"
    # Who sits next to whom: "given" keeps the feeds' own order; "auto" seats them so
    # that neighbouring rooms are most alike (colour, brightness, wall and floor lines),
    # which leaves the grower less to invent at each join. Decided when feeds join or
    # leave and reviewed now and then, never frame by frame.
    order: str = "auto"
    # A pixel is "known background" when the person alpha is below this.
    background_below: float = 0.2
    # Draw, grow and compose at the detail the cameras give: where every picture is
    # enlarged at least twice, the canvas is worked on shrunk by the whole part of that
    # (four 640x480 webcams 2.3x on a 4032x720 row: at 2016x360) and the composite is
    # enlarged once at the end. False: always at the canvas's own size.
    at_detail: bool = True


@dataclass(frozen=True)
class FramingConfig:
    """Every person the same size on the canvas, every pair of eyes on one line."""

    enabled: bool = True
    # Face height (brow to chin, as the face detector boxes it) as a fraction of the
    # tile height: 0.24 is a head-and-shoulders shot, and what a person 2 m from a
    # 640x480 webcam reaches at the zoom limit.
    face_height: float = 0.24
    # If a far person cannot reach face_height, everyone is drawn at their size, but
    # never smaller than this: one distant camera should not shrink the whole room.
    min_face_height: float = 0.12
    eye_line: float = 0.38  # where the eyes sit, as a fraction of the tile height from its top
    # Enlarge a feed at most this much over the plain fit (the whole picture at tile
    # height): beyond 2x a webcam picture is visibly soft.
    max_zoom: float = 2.0
    min_zoom: float = 0.25  # a face filling the camera is shrunk at most this far
    # A shrunk picture's tile is narrowed to the picture, but kept at least this many
    # tile heights wide: the grower has less room to invent and people sit closer, as
    # they would in one room.
    seat_width: float = 0.8
    # Faces are looked for this often per feed (a detection costs about 5 ms on 2
    # cores; it runs in a worker thread, off the frame path).
    detect_hz: float = 5.0
    # The calm camera operator: the view moves only when the measured subject (a median
    # over the last window_s) leaves the committed one by more than these, for longer
    # than confirm_s. Positions are in face heights, so the deadband is the same on the
    # canvas for a close-up and for a distant person.
    window_s: float = 0.5
    # Sizes over a longer window: people rarely change distance quickly, and a brief
    # change of the measured size (a bowed head) must not pump the zoom.
    size_window_s: float = 1.2
    deadband_eye: float = 0.15
    deadband_x: float = 0.35
    deadband_zoom: float = 0.12  # in log size (about 12 %)
    confirm_s: float = 0.2
    # A re-frame is a critically damped move that is 95 % done after this long. With
    # the window and confirmation above, a person who steps aside is in frame again
    # within a second (at most 29 frames at 30 fps, tests/test_framing.py).
    move_s: float = 0.5
    # Where a shrunk picture ends inside its tile, the person fades out over this
    # fraction of the picture's height instead of being cut by a hard line.
    edge_fade: float = 0.08


@dataclass(frozen=True)
class MemoryConfig:
    enabled: bool = True
    # Fraction a remembered pixel moves toward each new background sighting: slow, so
    # a person's soft edge or a passing shadow does not burn in.
    rate: float = 0.05
    # Forget a remembered pixel after this many seconds without seeing it (the room may
    # have changed: a door opened, the light moved).
    max_age_s: float = 20.0
    # Pixels this close (in pixels) to a person are not trusted as background: the
    # matte's soft edge still carries hair and shoulders.
    guard_px: int = 3
    # Learn from every learn_every-th frame (moving as far as that many frames of `rate`
    # would): the plate follows the room over seconds, and learning is most of the
    # memory's cost. What a frame shows of the plate is always that frame's.
    learn_every: int = 2


@dataclass(frozen=True)
class GrowConfig:
    grower: str = "nca"  # the growth model; "telea" is the classical baseline
    device: str = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
    # torch intra-op threads for a learned grower on the CPU. Its per-frame ops are
    # small: a second thread saves little and its spinning steals the core that decodes
    # and segments (2 feeds at 360: 46.8 fps end to end with 2, 50.4 with 1).
    threads: int = 1
    # The growth model's weights (a file written by `roomfuse train`); None: the weights
    # shipped inside the package. Learned growers only.
    checkpoint: str | None = None
    # "float32", or "float16": half the memory traffic on CUDA, slightly different
    # results; on a CPU the model always runs in float32. Learned growers only.
    precision: str = "float32"
    # The growth model works on a grid 1/4 of a canvas this tall (what it is trained and
    # measured at); a canvas k whole times taller uses a k times coarser grid, so the
    # model sees the same grid and a 720-high call costs a quarter of the cells it
    # would at 1/4. What it fills lies behind people or, once the room fill is built,
    # only near the pictures. 0: always 1/4. Learned growers only.
    work_height: int = 360
    # Grow one frame behind, beside the next frame's work: each frame shows what was
    # grown from the frame before (its own known pixels pasted over it) while the grower
    # works on this one in the pipeline's pool. What is grown is invented and changes
    # slowly, so a frame's lag there does not show; the grower's share of the frame
    # (a fifth to a third at 720) then overlaps segmentation and drawing instead of
    # adding to them. Synchronous on the first frame and whenever the seats move.
    behind: bool = True
    # Once the room fill is in place the live grower fills only what is unknown inside
    # the pictures (behind people, and there mostly covered by them): it then starts on
    # every steady_every-th canvas; between, the fill behind people is the last one
    # grown, while the room fill and every known pixel are the frame's own. 1: every
    # canvas. Only with `behind`.
    steady_every: int = 6
    # Before the room fill is in place the live grower fills the gaps too; what it grows
    # there changes slowly (its state is carried from canvas to canvas), so it starts on
    # every `every`-th canvas, and between, a frame shows the last fill with its own known
    # pixels pasted over it. 1: every canvas. Only with `behind`.
    every: int = 2


@dataclass(frozen=True)
class RoomFillConfig:
    """The joined background of gaps and margins, built off the frame path (roomfill.py)."""

    enabled: bool = True
    # The still fill that builds it (growth/joiner.py): the growth rule's structure, then
    # the rooms' texture. "nca-tex" takes the structure from the trained network
    # instead (less real on held-out gaps: models/README.md).
    grower: str = "rule-tex"
    # Build in the calling thread (render: deterministic output) instead of a worker.
    inline: bool = False
    # Every check_frames frames, compare the plates near the holes with those the fill
    # was built from; rebuild when they differ locally by more than change_level (0..255,
    # after removing a uniform change of light, which the live correction follows) or
    # when more than `uncovered` of the canvas became known where the fill is built (its
    # own pixels and the band inside the pictures around them: a person moved away from
    # a picture's edge).
    check_frames: int = 15
    change_level: float = 6.0
    uncovered: float = 0.02
    # A rebuild takes a core for about a second: never more often than this.
    min_interval_s: float = 10.0
    # Pictures move (framing follows a person): the fill applies farther than `band`
    # pixels from every picture (the live grower fills the band; 0: right up to them,
    # where a picture that drifted uncovers the plate it was built from); a picture that
    # moved more than rebuild_px since the fill was built asks for a new one, more than
    # drop_px and the fill is not shown until then. A band of live fill reads as a
    # streak around each picture: off by default. (Pixels of the canvas as it is worked:
    # at the cameras' detail, LayoutConfig.at_detail, so a camera pixel or a little more.)
    band: int = 0
    rebuild_px: int = 4
    drop_px: int = 24
    fade_s: float = 0.5           # a new fill cross-fades in over this long
    correct_frames: int = 5       # frames between updates of the live colour correction
    nice: int = 10                # the worker's OS priority offset (Linux)


@dataclass(frozen=True)
class CompositeConfig:
    # How far each feed's colour moves toward its neighbours' (0 = off, 1 = all the way).
    harmonize: float = 0.5
    # Never change a channel's gain by more than this factor either way.
    max_gain: float = 1.25
    # Time constant of the gains, in frames: exposure changes are followed, not jumped.
    smooth_frames: int = 15
    # The gain field is worked out every gain_every frames (each time moved on as far as
    # that many frames of smoothing would) and kept between while the tiles stay.
    gain_every: int = 2
    # Where two rooms meet, each side's colour near the join is pulled this far toward
    # the other's (1 = they meet exactly); the pull fades out toward the middle of the
    # tile, so each room keeps its own look where its person stands.
    join_match: float = 0.9
    max_join_gain: float = 1.4  # never change a channel by more than this at a join


@dataclass(frozen=True)
class PipelineConfig:
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    framing: FramingConfig = field(default_factory=FramingConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    grow: GrowConfig = field(default_factory=GrowConfig)
    fill: RoomFillConfig = field(default_factory=RoomFillConfig)
    composite: CompositeConfig = field(default_factory=CompositeConfig)
    fps: float = 30.0  # output frame rate; sources are sampled at their own timestamps


@dataclass(frozen=True)
class ServerLimits:
    """What `roomfuse serve` allows, so that one client, or many, cannot take it over.
    Each is a flag of `serve`; a refusal is one log line."""

    # Rooms at once. A live room costs about 30-40 MB and 8 threads, and on two CPU
    # cores two rooms of two already fill the machine.
    max_rooms: int = 8
    # Open HTTP connections, in all and per client address. A browser in a room holds
    # one or two (it polls the room's state); a page load opens up to six.
    max_connections: int = 256
    max_connections_per_address: int = 32
    # A request header must arrive complete within this of the connection opening (or
    # of its first byte after the previous answer); a request body within
    # body_timeout_s of its header. An offer is 5-10 KB: far under a second on any
    # network a video call could run over.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    # A keep-alive connection with no request in flight is closed after this.
    idle_timeout_s: float = 30.0
    # Wrong room keys per client address per minute before its keys are refused.
    wrong_keys_per_minute: int = 10
