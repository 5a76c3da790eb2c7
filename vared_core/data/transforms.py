"""Clip transforms on C×T×H×W tensors: TSN multi-scale crop, flip, normalise, K-LeftCenterRight views.

Every function takes and returns tensors whose last two dims are (H, W), so a clip ``(C, T, H, W)``
and a stack of views ``(V, C, T, H, W)`` both work. Geometric functions keep the dtype: cropping and
resizing ``uint8`` clips first and converting to float last (`to_float`) is the cheap order, and what
`train_transform` / `test_transform` do. Random functions take a ``torch.Generator`` so a dataset can
make them reproducible. The callable classes wrap the functions with their settings and name the
layout they expect (``…CTHW``); `ComposeCTHW` chains them and passes the generator along.

Why one file of ~430 lines: each transform is a small function plus the callable class that carries its
settings; apart, each class would live away from the only function it calls.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CenterCropCTHW",
    "ClipTransform",
    "ComposeCTHW",
    "MultiScaleCropCTHW",
    "NormalizeCTHW",
    "RandomHorizontalFlipCTHW",
    "ResizeShortSideCTHW",
    "ThreeCropCTHW",
    "ToFloatCTHW",
    "center_crop",
    "crop",
    "hflip",
    "multi_scale_crop_box",
    "normalize",
    "resize",
    "resize_short_side",
    "test_transform",
    "three_crop",
    "to_float",
    "train_transform",
]

#: Per-channel (R, G, B) mean of ImageNet for pixels scaled to [0, 1]: the default of `normalize`.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel (R, G, B) standard deviation of ImageNet for pixels scaled to [0, 1].
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: A clip transform: ``(clip, generator) -> clip``.
ClipTransform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _hw(x: torch.Tensor) -> tuple[int, int]:
    if x.dim() < 3:
        raise ValueError(f"expected a clip (..., H, W) such as C×T×H×W, got shape {tuple(x.shape)}")
    return int(x.shape[-2]), int(x.shape[-1])


def to_float(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels 0–255 → ``float32`` in [0, 1]; float input is returned as float32 unchanged.

    Example:
        >>> to_float(torch.full((3, 1, 2, 2), 255, dtype=torch.uint8)).max().item()
        1.0
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The (height, width) window at (top, left) of every frame; a view, no copy.

    Example:
        >>> crop(torch.zeros(3, 2, 10, 12), 1, 2, 4, 5).shape
        torch.Size([3, 2, 4, 5])
    """
    h, w = _hw(x)
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(f"crop box (top={top}, left={left}, {height}×{width}) does not fit a {h}×{w} frame")
    return x[..., top : top + height, left : left + width]


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The centred ``size`` (int = square, or (height, width)) window of every frame.

    Example:
        >>> center_crop(torch.zeros(3, 2, 10, 12), 8).shape
        torch.Size([3, 2, 8, 8])
    """
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = _hw(x)
    return crop(x, (h - th) // 2, (w - tw) // 2, th, tw)


def resize(x: torch.Tensor, size: tuple[int, int], *, antialias: bool = True) -> torch.Tensor:
    """Bilinear resize of every frame to ``size`` = (height, width); keeps the dtype (uint8 is fast).

    ``antialias`` low-pass filters when shrinking (like PIL), avoiding aliasing of fine textures.

    Example:
        >>> resize(torch.zeros(3, 2, 10, 12, dtype=torch.uint8), (5, 6)).shape
        torch.Size([3, 2, 5, 6])
    """
    h, w = _hw(x)
    if (h, w) == tuple(size):
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w) if x.dim() != 4 else x.transpose(0, 1)  # (T, C, H, W) view for CTHW
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
    if x.dim() == 4:
        return out.transpose(0, 1)
    return out.reshape(*lead, *size)


def resize_short_side(x: torch.Tensor, size: int, *, antialias: bool = True) -> torch.Tensor:
    """Resize so the shorter side is ``size`` pixels, keeping the aspect ratio (long side rounded).

    Example:
        >>> resize_short_side(torch.zeros(3, 2, 240, 320), 112).shape
        torch.Size([3, 2, 112, 149])
    """
    h, w = _hw(x)
    if h <= w:
        target = (size, max(size, round(w * size / h)))
    else:
        target = (max(size, round(h * size / w)), size)
    return resize(x, target, antialias=antialias)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left↔right.

    Example:
        >>> hflip(torch.arange(3.).reshape(1, 1, 1, 3)).flatten().tolist()
        [2.0, 1.0, 0.0]
    """
    return x.flip(-1)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` per channel for float C×T×H×W (or V×C×T×H×W) clips in [0, 1].

    The defaults are ImageNet's statistics for [0, 1] pixels (`IMAGENET_MEAN`, `IMAGENET_STD`).

    Example:
        >>> normalize(torch.full((3, 1, 1, 1), 0.5), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).flatten().tolist()
        [0.0, 0.0, 0.0]
    """
    if not x.is_floating_point():
        raise ValueError(f"normalize expects a float clip in [0, 1], got {x.dtype}; apply to_float first")
    c = x.shape[-4] if x.dim() >= 4 else 0
    if c != len(mean) or c != len(std):
        raise ValueError(
            f"normalize: the clip has {c} channels (dim -4 of {tuple(x.shape)}) but mean/std have "
            f"{len(mean)}/{len(std)} entries; pass one value per channel"
        )
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - m) / s


def multi_scale_crop_box(
    height: int,
    width: int,
    *,
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    more_fix_crop: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop box (``GroupMultiScaleCrop``): scale jitter plus corner/centre offsets.

    Crop height and width are ``scales[i]·min(H, W)`` and ``scales[j]·min(H, W)`` with ``|i - j| ≤
    max_distort`` (so the aspect ratio jitters too), chosen uniformly among the allowed pairs; the box is
    placed at one of the 5 fixed positions (4 corners + centre), or 13 with ``more_fix_crop`` (adding
    edge midpoints and quarter points).

    Returns:
        ``(top, left, crop_height, crop_width)`` in pixels.

    Example:
        >>> top, left, h, w = multi_scale_crop_box(240, 320, generator=torch.Generator().manual_seed(0))
        >>> h in (240, 210, 180, 158) and w in (240, 210, 180, 158)
        True
    """
    base = min(height, width)
    sizes = [max(1, int(base * s)) for s in scales]
    pairs = [(sizes[i], sizes[j]) for i in range(len(sizes)) for j in range(len(sizes)) if abs(i - j) <= max_distort]
    ch, cw = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
    sh, sw = (height - ch) // 4, (width - cw) // 4
    offsets = [(0, 0), (0, 4 * sw), (4 * sh, 0), (4 * sh, 4 * sw), (2 * sh, 2 * sw)]
    if more_fix_crop:
        offsets += [(2 * sh, 0), (2 * sh, 4 * sw), (4 * sh, 2 * sw), (0, 2 * sw),
                    (sh, sw), (sh, 3 * sw), (3 * sh, sw), (3 * sh, 3 * sw)]
    top, left = offsets[int(torch.randint(len(offsets), (1,), generator=generator))]
    return top, left, ch, cw


def three_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Left, centre and right ``size``×``size`` crops along the longer side (top/centre/bottom for portrait).

    The shorter side must already be ``size`` (use `resize_short_side`); a square frame gives three
    identical views.

    Args:
        x: C×T×H×W clip with ``min(H, W) == size``.
        size: crop side in pixels.

    Returns:
        3×C×T×size×size views, in the order left (or top), centre, right (or bottom).

    Example:
        >>> three_crop(torch.zeros(3, 2, 112, 149), 112).shape
        torch.Size([3, 3, 2, 112, 112])
    """
    h, w = _hw(x)
    if min(h, w) != size:
        raise ValueError(f"three_crop needs the shorter side == {size}, got a {h}×{w} frame; resize_short_side first")
    if w >= h:
        boxes = [(0, left) for left in (0, (w - size) // 2, w - size)]
    else:
        boxes = [(top, 0) for top in (0, (h - size) // 2, h - size)]
    return torch.stack([crop(x, t, left, size, size) for t, left in boxes])


class ToFloatCTHW:
    """Callable `to_float` for C×T×H×W clips (uint8 0–255 → float32 0–1)."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_float(x)

    def __repr__(self) -> str:
        return "ToFloatCTHW()"


class ResizeShortSideCTHW:
    """Callable `resize_short_side` for C×T×H×W clips.

    Example:
        >>> ResizeShortSideCTHW(56)(torch.zeros(3, 2, 64, 128)).shape
        torch.Size([3, 2, 56, 112])
    """

    def __init__(self, size: int, *, antialias: bool = True) -> None:
        self.size, self.antialias = size, antialias

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return resize_short_side(x, self.size, antialias=self.antialias)

    def __repr__(self) -> str:
        return f"ResizeShortSideCTHW({self.size})"


class CenterCropCTHW:
    """Callable `center_crop` for C×T×H×W clips."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = size

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return center_crop(x, self.size)

    def __repr__(self) -> str:
        return f"CenterCropCTHW({self.size})"


class MultiScaleCropCTHW:
    """TSN multi-scale crop of a C×T×H×W clip, resized to ``size``×``size`` (same box for every frame).

    Args:
        size: output side in pixels.
        scales / max_distort / more_fix_crop: see `multi_scale_crop_box`.
        antialias: see `resize`.

    Example:
        >>> t = MultiScaleCropCTHW(112)
        >>> t(torch.zeros(3, 8, 240, 320, dtype=torch.uint8), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 8, 112, 112])
    """

    def __init__(
        self,
        size: int,
        *,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        more_fix_crop: bool = True,
        antialias: bool = True,
    ) -> None:
        if size < 1 or not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"MultiScaleCropCTHW: need size ≥ 1 and scales in (0, 1], got {size}, {scales}")
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort
        self.more_fix_crop, self.antialias = more_fix_crop, antialias

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = _hw(x)
        box = multi_scale_crop_box(
            h, w, scales=self.scales, max_distort=self.max_distort, more_fix_crop=self.more_fix_crop,
            generator=generator,
        )
        return resize(crop(x, *box), (self.size, self.size), antialias=self.antialias)

    def __repr__(self) -> str:
        return f"MultiScaleCropCTHW({self.size}, scales={self.scales}, max_distort={self.max_distort})"


class RandomHorizontalFlipCTHW:
    """Mirror the whole clip (every frame alike) with probability ``p``.

    Example:
        >>> RandomHorizontalFlipCTHW(p=1.0)(torch.arange(2.).reshape(1, 1, 1, 2)).flatten().tolist()
        [1.0, 0.0]
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlipCTHW: p is a probability in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if float(torch.rand((), generator=generator)) < self.p:
            return hflip(x)
        return x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlipCTHW(p={self.p})"


class NormalizeCTHW:
    """Callable `normalize` (default: ImageNet mean/std for [0, 1] pixels)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if any(s <= 0 for s in std):
            raise ValueError(f"NormalizeCTHW: std values must be > 0, got {tuple(std)}")
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

    def __repr__(self) -> str:
        return f"NormalizeCTHW(mean={self.mean}, std={self.std})"


class ThreeCropCTHW:
    """Resize the shorter side to ``size`` then take `three_crop`: C×T×H×W → 3×C×T×size×size."""

    def __init__(self, size: int, *, antialias: bool = True) -> None:
        self.size, self.antialias = size, antialias

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return three_crop(resize_short_side(x, self.size, antialias=self.antialias), self.size)

    def __repr__(self) -> str:
        return f"ThreeCropCTHW({self.size})"


class ComposeCTHW:
    """Apply transforms in order, handing each the same generator.

    Example:
        >>> t = ComposeCTHW([CenterCropCTHW(4), ToFloatCTHW()])
        >>> t(torch.zeros(3, 2, 8, 8, dtype=torch.uint8)).dtype
        torch.float32
    """

    def __init__(self, transforms: Sequence[ClipTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return f"ComposeCTHW({self.transforms})"


def train_transform(
    size: int,
    *,
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    flip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ComposeCTHW:
    """The seed's training augmentation: multi-scale/corner crop → ``size``², flip p = 0.5, normalise.

    Input: uint8 (or float 0–1) C×T×H×W; output: float32 C×T×size×size.

    Example:
        >>> t = train_transform(32)
        >>> t(torch.zeros(3, 4, 48, 64, dtype=torch.uint8), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4, 32, 32])
    """
    steps: list[ClipTransform] = [MultiScaleCropCTHW(size, scales=scales)]
    if flip:
        steps.append(RandomHorizontalFlipCTHW(0.5))
    steps += [ToFloatCTHW(), NormalizeCTHW(mean, std)]
    return ComposeCTHW(steps)


def test_transform(
    size: int,
    *,
    crops: int = 3,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ComposeCTHW:
    """Test views: shorter side → ``size``, then 3 crops (left/centre/right) or 1 centre crop; normalise.

    Input: uint8 C×T×H×W. Output: float32 3×C×T×size×size (``crops=3``) or C×T×size×size (``crops=1``).
    With a K-clip sampler this gives the seed's *K-LeftCenterRight* protocol (3K views per video).

    Example:
        >>> test_transform(32)(torch.zeros(3, 4, 48, 64, dtype=torch.uint8)).shape
        torch.Size([3, 3, 4, 32, 32])
    """
    if crops == 3:
        steps: list[ClipTransform] = [ThreeCropCTHW(size)]
    elif crops == 1:
        steps = [ResizeShortSideCTHW(size), CenterCropCTHW(size)]
    else:
        raise ValueError(f"test_transform: crops must be 1 (centre) or 3 (left/centre/right), got {crops}")
    return ComposeCTHW([*steps, ToFloatCTHW(), NormalizeCTHW(mean, std)])


test_transform.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name
