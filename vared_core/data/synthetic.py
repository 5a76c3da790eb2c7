"""A synthetic motion-pattern video dataset: real H.264 mp4 files plus train/val list files.

Each class is a motion pattern over a textured background (seeded multi-scale colour noise): pans in
several directions, rotation, zoom, global flicker, a small object moving on a still scene. Every clip
draws a **motion level** (0 = static … ``motion_levels - 1`` = fast; it scales the pattern's speed or
amplitude) and a **clutter level** (0 = clean; more distractor blobs drifting in random directions and
more per-frame sensor noise), balanced within each class, so the redundancy of clips varies inside every
class, which is what VA-RED² exploits. At motion level 0 the pattern does not move, so such clips carry
no class evidence beyond the object's presence, unless the set has an **appearance cue**
(``appearance > 0``): then every clip's scene carries a colour cast, its own class's with probability
``appearance`` and a random class's otherwise, a partial cue as scene appearance is in real video. The
cue can fade with the motion level, as fast motion blurs what a scene looks like: its reliability
(``appearance_fast``) or its strength (``cast_fast``), so static clips are told by appearance and fast
ones by motion.

Layout written under ``root``::

    classes.txt                    one class name a line (label i = line i + 1)
    train.csv, val.csv             CSV: path,label,motion,clutter (paths relative to root)
    videos/<class>/<class>_NNN.mp4 H.264 (libx264, yuv420p, one encoder thread: same seed, same bytes)

Why one file of ~450 lines: rendering a clip, encoding it and writing the balanced set with its lists
are one generator whose parts share the per-clip levels and the seeded random state.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = ["PATTERNS", "SyntheticInfo", "class_cast", "make_synthetic", "render_clip", "write_mp4"]

#: Class patterns in the order classes are taken (``classes=N`` uses the first N): the first six cover
#: every kind of motion, so even small sets mix pans, rotation, zoom, flicker and object motion.
PATTERNS: tuple[str, ...] = (
    "pan_right", "pan_left", "rotate_cw", "zoom_in", "flicker", "object_right",
    "pan_up", "pan_down", "rotate_ccw", "zoom_out", "object_left", "object_down", "object_up",
    "pan_up_right", "pan_down_left", "pan_up_left", "pan_down_right",
    "object_up_right", "object_down_left", "object_up_left", "object_down_right",
)  # fmt: skip

_DIRECTIONS = {  # unit vectors in image coordinates (x right, y down)
    "right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0),
    "up_right": (0.7071, -0.7071), "down_left": (-0.7071, 0.7071),
    "up_left": (-0.7071, -0.7071), "down_right": (0.7071, 0.7071),
}  # fmt: skip

# Speeds per motion level, for a 64-pixel short side (scaled with the frame size where they are lengths).
_PAN_PX = 1.0  # content shift, pixels per frame
_OBJECT_PX = 1.5  # object shift, pixels per frame
_ROTATE_DEG = 2.0  # degrees per frame
_ZOOM_LOG = 0.02  # log-scale change per frame
_ZOOM_MAX = 4.0  # total zoom over a clip is capped at ×4 (long clips slow down instead)
_FLICKER_AMP = 0.12  # relative brightness amplitude
_FLICKER_PERIOD = 6.0  # frames
_BLOBS_PER_CLUTTER = 2
_NOISE_PER_CLUTTER = 2.0  # std of per-frame Gaussian noise, grey levels
_BLOB_PX = 0.5  # max distractor drift, pixels per frame
_CAST = 64.0  # colour cast of the appearance cue: grey levels at full saturation (±15 % per clip); at 40 a
# tiny base confused neighbouring hues on a fifth of the static clips
# Widths (even, 16–256) whose H.264 frames decord 0.6 fails to copy out ("DECORDArrayCopyFromTo: The size
# must exactly match"); found by writing and decoding every even width from 16 to 256.
_DECORD_BAD_WIDTHS = frozenset({16, 24, 48, 72})


@dataclass(frozen=True)
class SyntheticInfo:
    """What `make_synthetic` wrote.

    Attributes:
        root: the dataset folder.
        train_list / val_list: CSV list files (``path,label,motion,clutter``), readable by `VideoDataset`.
        classes_file: ``classes.txt``.
        classes: class names (label i = ``classes[i]``).
        num_train / num_val: videos per split.
        frames / width / height / fps: video geometry.
        motion_levels / clutter_levels: number of levels of each (values 0 … levels - 1).
        seed: the seed used.
        appearance: reliability of the appearance cue (0: none); for static clips when it falls with motion.
        appearance_fast: its reliability for the fastest clips (equal to ``appearance`` unless given).
        cast_fast: the cast's strength for the fastest clips relative to static ones (1: no fade).
    """

    root: Path
    train_list: Path
    val_list: Path
    classes_file: Path
    classes: tuple[str, ...]
    num_train: int
    num_val: int
    frames: int
    width: int
    height: int
    fps: int
    motion_levels: int
    clutter_levels: int
    seed: int
    appearance: float = 0.0
    appearance_fast: float = 0.0
    cast_fast: float = 1.0


def _bilinear_wrap(tex: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample a periodic (B_h, B_w, C) texture at float coordinates (any equal shapes S) → S×C float32."""
    bh, bw, c = tex.shape
    y0f, x0f = np.floor(ys), np.floor(xs)
    fy, fx = (ys - y0f).astype(np.float32)[..., None], (xs - x0f).astype(np.float32)[..., None]
    y0, x0 = y0f.astype(np.int64) % bh, x0f.astype(np.int64) % bw
    y1, x1 = (y0 + 1) % bh, (x0 + 1) % bw
    flat = tex.reshape(-1, c)
    r0, r1 = y0 * bw, y1 * bw
    top = np.take(flat, r0 + x0, axis=0) * (1 - fx) + np.take(flat, r0 + x1, axis=0) * fx
    bottom = np.take(flat, r1 + x0, axis=0) * (1 - fx) + np.take(flat, r1 + x1, axis=0) * fx
    return top * (1 - fy) + bottom * fy


def _periodic_upsample_matrix(n: int, size: int) -> np.ndarray:
    """(size, n) matrix: periodic linear interpolation of n samples onto size points."""
    pos = np.arange(size) * n / size
    i0 = np.floor(pos).astype(np.int64)
    f = (pos - i0).astype(np.float32)
    m = np.zeros((size, n), np.float32)
    m[np.arange(size), i0 % n] += 1 - f
    m[np.arange(size), (i0 + 1) % n] += f
    return m


def _texture(rng: np.random.Generator, size: int, finest: int) -> np.ndarray:
    """Periodic size×size×3 colour noise (0–255) summed over cell sizes finest, 2·finest, 4·finest, …"""
    planes = np.zeros((3, size, size), np.float32)
    cell, weight = finest, 1.0
    while cell <= size // 2:
        n = max(2, size // cell)
        grid = rng.random((n, n, 3)).astype(np.float32)
        up = _periodic_upsample_matrix(n, size)
        for ch in range(3):
            planes[ch] += weight * (up @ grid[..., ch] @ up.T)
        cell, weight = cell * 2, weight * 0.9
    tex = np.ascontiguousarray(planes.transpose(1, 2, 0))
    tex -= tex.mean()
    tex *= 55.0 / (tex.std() + 1e-6)
    return np.clip(tex + 128.0, 0, 255)


def _paste_disk(frame: np.ndarray, cy: float, cx: float, r: float, paint: np.ndarray) -> None:
    """Blend a soft-edged disk of radius r at (cy, cx) into frame (H, W, 3), wrapping at the edges.

    ``paint`` is an RGB colour (3,) or a texture (B, B, 3) that moves with the disk.
    """
    h, w = frame.shape[:2]
    span = int(2 * r + 3)
    top, left = math.floor(cy - r - 1), math.floor(cx - r - 1)
    rows = np.arange(top, top + min(span, h)) % h
    cols = np.arange(left, left + min(span, w)) % w
    dy = ((rows - cy + h / 2) % h - h / 2).astype(np.float32)[:, None]
    dx = ((cols - cx + w / 2) % w - w / 2).astype(np.float32)[None, :]
    alpha = np.clip(r - np.sqrt(dy * dy + dx * dx) + 0.5, 0.0, 1.0)[..., None]
    if paint.ndim == 3:
        shape = alpha.shape[:2]
        paint = _bilinear_wrap(paint, np.broadcast_to(dy, shape), np.broadcast_to(dx, shape))
    window = np.ix_(rows, cols)
    frame[window] = frame[window] * (1 - alpha) + paint * alpha


def render_clip(
    pattern: str,
    *,
    frames: int,
    width: int,
    height: int,
    motion: int,
    clutter: int,
    rng: np.random.Generator,
    cast: np.ndarray | None = None,
) -> np.ndarray:
    """Render one synthetic clip as RGB frames.

    Args:
        pattern: one of `PATTERNS`.
        frames / width / height: clip geometry (pixels).
        motion: motion level ≥ 0; speeds (pixels, degrees, zoom per frame; flicker amplitude) are
            ``level ×`` a per-pattern unit (±15 % per clip), lengths scaled by ``min(width, height) / 64``.
        clutter: clutter level ≥ 0: ``2·level`` distractor blobs and per-frame noise of std ``2·level``.
        rng: the clip's random generator (texture, jitter, blobs, noise).
        cast: optional RGB offset (grey levels): every frame's scene is made grey on average per channel
            (a white balance, before flicker, objects, blobs and noise) and the cast added, so the scene's
            mean colour is the cast in every frame (see `class_cast`).

    Returns:
        uint8 array (frames, height, width, 3).

    Example:
        >>> render_clip("pan_right", frames=4, width=32, height=24, motion=1, clutter=0,
        ...             rng=np.random.default_rng(0)).shape
        (4, 24, 32, 3)
    """
    if pattern not in PATTERNS:
        raise ValueError(f"render_clip: unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if motion < 0 or clutter < 0:
        raise ValueError(f"render_clip: motion and clutter levels must be ≥ 0, got {motion}, {clutter}")
    unit = min(width, height) / 64.0
    tex_size = 2 * max(width, height)
    tex = _texture(rng, tex_size, finest=max(2, round(4 * unit)))
    tint = None if cast is None else 128.0 + np.asarray(cast, np.float32)
    speed = motion * rng.uniform(0.85, 1.15)
    origin = rng.uniform(0, tex_size, 2)
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    cy, cx = (height - 1) / 2, (width - 1) / 2
    kind, _, direction = pattern.partition("_")
    jitter = math.radians(rng.uniform(-15, 15))
    if direction in _DIRECTIONS:
        ux, uy = _DIRECTIONS[direction]
        c, s = math.cos(jitter), math.sin(jitter)
        ux, uy = c * ux - s * uy, s * ux + c * uy
    else:
        ux = uy = 0.0
    zoom_rate = _ZOOM_LOG * speed
    if frames > 1 and zoom_rate * (frames - 1) > math.log(_ZOOM_MAX):
        zoom_rate = math.log(_ZOOM_MAX) / (frames - 1)
    # object and distractor blobs: (cy, cx, vy, vx, radius, colour)
    obj_r = max(2.5, 7.0 * unit)
    obj_tex: np.ndarray = np.zeros((1, 1, 3), np.float32)
    if kind == "object":
        obj_tex = _texture(rng, int(4 * obj_r) + 4, finest=max(2, round(2 * unit))) * 0.6
        obj_tex += rng.uniform(80, 140, 3).astype(np.float32)
        obj_tex[..., rng.integers(3)] = 255.0  # one saturated channel: the object stands out from the scene
    obj_pos = (rng.uniform(0, height), rng.uniform(0, width))
    blobs = [
        (rng.uniform(0, height), rng.uniform(0, width), *(rng.uniform(-1, 1, 2) * _BLOB_PX * unit),
         rng.uniform(3.0, 6.0) * unit, rng.uniform(0, 255, 3).astype(np.float32))
        for _ in range(_BLOBS_PER_CLUTTER * clutter)
    ]  # fmt: skip
    noise_std = _NOISE_PER_CLUTTER * clutter
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        angle, scale, shift = 0.0, 1.0, (0.0, 0.0)
        if kind == "pan":
            shift = (uy * _PAN_PX * unit * speed * t, ux * _PAN_PX * unit * speed * t)
        elif kind == "rotate":
            angle = math.radians(_ROTATE_DEG * speed * t) * (1 if direction == "cw" else -1)
        elif kind == "zoom":
            scale = math.exp(zoom_rate * t * (1 if direction == "in" else -1))
        # content rotated by `angle` (clockwise on screen for angle > 0), scaled by `scale`, shifted by `shift`
        ca, sa = math.cos(angle), math.sin(angle)
        qy, qx = (ys - cy - shift[0]) / scale, (xs - cx - shift[1]) / scale
        frame = _bilinear_wrap(tex, origin[0] + ca * qy - sa * qx, origin[1] + sa * qy + ca * qx)
        if tint is not None:  # the visible scene's mean colour is exactly the cue, however much of it is seen
            frame += tint - frame.mean((0, 1))
        if kind == "flicker":
            frame *= 1.0 + _FLICKER_AMP * speed * math.sin(2 * math.pi * t / _FLICKER_PERIOD)
        if kind == "object":
            oy = obj_pos[0] + uy * _OBJECT_PX * unit * speed * t
            ox = obj_pos[1] + ux * _OBJECT_PX * unit * speed * t
            _paste_disk(frame, oy, ox, obj_r, obj_tex)
        for by, bx, vy, vx, r, colour in blobs:
            _paste_disk(frame, by + vy * t, bx + vx * t, r, colour)
        if noise_std:
            frame += rng.standard_normal(frame.shape, dtype=np.float32) * noise_std
        out[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return out


def write_mp4(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    *,
    fps: int = 25,
    crf: int = 20,
    preset: str = "veryfast",
    faststart: bool = False,
) -> None:
    """Encode RGB frames (T, H, W, 3) uint8 as H.264 mp4 (libx264, yuv420p, one thread: deterministic).

    Args:
        path: output file. frames: uint8 (T, H, W, 3), H and W even (yuv420p).
        fps: frame rate. crf / preset: libx264 quality (lower crf = better) and speed preset.
        faststart: put the index (moov atom) before the data, as streaming sites do.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.mp4"
        >>> write_mp4(p, np.zeros((4, 16, 16, 3), np.uint8)); p.stat().st_size > 0
        True
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_mp4: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"write_mp4: need ≥ 1 frame and even width/height for yuv420p, got {t}×{h}×{w}")
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(
            "libx264", rate=fps,
            # mbtree off: with it, the libx264 in PyAV 18's wheels now and then encodes the same frames to
            # different bytes (~1 file in 2,000, even single-threaded); without it 7,200 encodes were identical.
            options={"threads": "1", "crf": str(crf), "preset": preset, "x264-params": "mbtree=0"},
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def class_cast(label: int, classes: int) -> np.ndarray:
    """The colour cast of class ``label`` of ``classes``: hues evenly spaced round the colour wheel, as an
    RGB offset of ``_CAST`` grey levels (zero mean over the channels, so brightness is unchanged)."""
    hue = 2 * math.pi * label / classes
    rgb = np.array([math.cos(hue), math.cos(hue - 2 * math.pi / 3), math.cos(hue + 2 * math.pi / 3)])
    return (_CAST * rgb / np.abs(rgb).max()).astype(np.float32)


def _balanced(rng: np.random.Generator, levels: int, n: int) -> np.ndarray:
    """n levels in 0 … levels-1, each used ⌊n/levels⌋ or ⌈n/levels⌉ times, in random order."""
    return rng.permutation(np.resize(np.arange(levels), n))


def make_synthetic(
    root: str | os.PathLike[str],
    *,
    classes: int,
    videos_per_class: int,
    frames: int,
    size: int = 64,
    seed: int = 0,
    val_fraction: float = 0.25,
    width: int | None = None,
    height: int | None = None,
    fps: int = 25,
    motion_levels: int = 4,
    clutter_levels: int = 3,
    appearance: float = 0.0,
    appearance_fast: float | None = None,
    cast_fast: float = 1.0,
) -> SyntheticInfo:
    """Write a synthetic motion-pattern dataset (see the module doc for the layout).

    Video ``j`` of class ``c`` is rendered from its own generator seeded with ``(seed, c, j)``: the same
    arguments give byte-identical files. Within each class, motion and clutter levels are spread evenly
    over the videos in a seeded random order; the last ``round(videos_per_class · val_fraction)`` videos
    of each class (at least one when ``val_fraction > 0``, at most all but one) form the val split.

    Args:
        root: output folder (created; existing files are overwritten).
        classes: number of classes, at most ``len(PATTERNS)``; the first N of `PATTERNS`.
        videos_per_class: videos per class (both splits).
        frames: frames per video.
        size: frame side when ``width`` / ``height`` are not given (pixels, even; width ≥ 32 and not one
            of the few small widths decord 0.6 cannot decode: 48, 72).
        seed: seed of everything random.
        val_fraction: share of each class's videos written to ``val.csv``.
        width / height: frame size (even pixels), e.g. 320 × 240 for decoding benchmarks.
        fps: frame rate stored in the files.
        motion_levels / clutter_levels: number of levels (≥ 1) of each.
        appearance: reliability of the appearance cue in [0, 1]. 0 (default): no colour cast, clips show
            their class by motion only. Above 0: each clip's scene carries its class's `class_cast` with
            this probability, else a uniformly drawn class's, so appearance alone is right for
            ``appearance + (1 - appearance) / classes`` of the clips, static ones included.
        appearance_fast: the cue's reliability at the fastest motion level instead, in [0, 1]; levels in
            between interpolate linearly from ``appearance`` at the static level. ``None``: ``appearance``
            at every level. ``appearance=1, appearance_fast=0``: static clips always show their class's
            cast, the fastest ones a random class's.
        cast_fast: the cast's strength at the fastest motion level relative to the static level's, in
            [0, 1]; levels in between interpolate linearly. 1 (default): every level the same. 0 with
            ``appearance=1``: static clips show their class's full cast, the fastest ones a grey scene.

    Returns:
        A `SyntheticInfo`.

    Example:
        >>> import tempfile
        >>> info = make_synthetic(tempfile.mkdtemp(), classes=2, videos_per_class=4, frames=8, size=32, seed=0)
        >>> info.classes, info.num_train, info.num_val
        (('pan_right', 'pan_left'), 6, 2)
    """
    width = size if width is None else width
    height = size if height is None else height
    problems = []
    if not 1 <= classes <= len(PATTERNS):
        problems.append(f"classes must be in [1, {len(PATTERNS)}] (one per motion pattern), got {classes}")
    if videos_per_class < 1 or frames < 1:
        problems.append(f"videos_per_class and frames must be ≥ 1, got {videos_per_class}, {frames}")
    if width < 32 or height < 16 or width % 2 or height % 2:
        problems.append(f"width ≥ 32 and height ≥ 16 must be even (H.264 yuv420p), got {width}×{height}")
    elif width in _DECORD_BAD_WIDTHS:
        problems.append(
            f"decord 0.6 cannot decode frames {width} pixels wide (a frame-stride bug); pick another width, "
            f"e.g. {width + 8}"
        )
    if not 0.0 <= val_fraction < 1.0:
        problems.append(f"val_fraction must be in [0, 1), got {val_fraction}")
    if motion_levels < 1 or clutter_levels < 1 or seed < 0 or fps < 1:
        problems.append(
            f"motion_levels, clutter_levels, fps must be ≥ 1 and seed ≥ 0, got {motion_levels}, "
            f"{clutter_levels}, {fps}, {seed}"
        )
    if not 0.0 <= appearance <= 1.0:
        problems.append(f"appearance must be in [0, 1], got {appearance}")
    if appearance_fast is not None and not 0.0 <= appearance_fast <= 1.0:
        problems.append(f"appearance_fast must be in [0, 1], got {appearance_fast}")
    if not 0.0 <= cast_fast <= 1.0:
        problems.append(f"cast_fast must be in [0, 1], got {cast_fast}")
    if problems:
        raise ValueError("make_synthetic: " + "; ".join(problems))
    base = Path(root)
    names = PATTERNS[:classes]
    fast = appearance if appearance_fast is None else appearance_fast
    reliability = np.linspace(appearance, fast, motion_levels)  # one level: the static level's value
    strength = np.linspace(1.0, cast_fast, motion_levels)
    n_val = 0
    if val_fraction > 0 and videos_per_class > 1:
        n_val = min(videos_per_class - 1, max(1, round(videos_per_class * val_fraction)))
    rows: dict[str, list[tuple[str, int, int, int]]] = {"train": [], "val": []}
    for label, name in enumerate(names):
        folder = base / "videos" / name
        folder.mkdir(parents=True, exist_ok=True)
        level_rng = np.random.default_rng([seed, label, 1 << 30])
        motion = _balanced(level_rng, motion_levels, videos_per_class)
        clutter = _balanced(level_rng, clutter_levels, videos_per_class)
        for j in range(videos_per_class):
            cast = None
            if appearance > 0 or fast > 0:  # a generator of its own: the sets without the cue keep their bytes
                cue_rng = np.random.default_rng([seed, label, j, 1 << 29])
                shown = label if cue_rng.random() < reliability[motion[j]] else int(cue_rng.integers(classes))
                cast = class_cast(shown, classes) * cue_rng.uniform(0.85, 1.15) * strength[motion[j]]
            clip = render_clip(
                name, frames=frames, width=width, height=height, motion=int(motion[j]), clutter=int(clutter[j]),
                rng=np.random.default_rng([seed, label, j]), cast=cast,
            )
            rel = f"videos/{name}/{name}_{j:03d}.mp4"
            write_mp4(base / rel, clip, fps=fps)
            split = "val" if j >= videos_per_class - n_val else "train"
            rows[split].append((rel, label, int(motion[j]), int(clutter[j])))
    classes_file = base / "classes.txt"
    classes_file.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    lists = {}
    for split, split_rows in rows.items():
        lists[split] = base / f"{split}.csv"
        with open(lists[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["path", "label", "motion", "clutter"])
            writer.writerows(split_rows)
    return SyntheticInfo(
        root=base, train_list=lists["train"], val_list=lists["val"], classes_file=classes_file,
        classes=tuple(names), num_train=len(rows["train"]), num_val=len(rows["val"]), frames=frames,
        width=width, height=height, fps=fps, motion_levels=motion_levels, clutter_levels=clutter_levels, seed=seed,
        appearance=appearance, appearance_fast=fast, cast_fast=cast_fast,
    )
