"""Preprocessing and augmentation of the paper (Sec. IV-B), on 1-channel tensors.

Training: a random square crop of non-square images, resized to the input size (320 by default),
then random rotation (-10..+10 degrees) and zoom (0..10 %), each applied with probability 0.75 as in
fastai's ``aug_transforms`` (which the paper used): rotation and zoom are drawn independently, merged
into one affine warp with reflection padding; as in fastai's ``Zoom``, the zoomed window's centre is
drawn uniformly over the positions that keep the window inside the image.  Evaluation: resize the
short side, centre crop.  Both normalise with one mean/std (the paper: CheXpert's, 0.5028 / 0.2902).

All randomness comes from an explicit ``torch.Generator`` seeded per sample, so augmentations are the
same whatever the number of DataLoader workers, across resumed runs, and whether the affine warp runs
per sample in a worker or batched on the GPU.  The batched warp (:func:`rotate_zoom`) is torch's
``affine_grid`` + ``grid_sample``; the per-sample warp in a CPU worker (:func:`rotate_zoom_one`) is
OpenCV's ``warpAffine`` with the same pixel mapping and the same reflection at the borders, 4-6x faster
on a CPU core than ``grid_sample`` on one image.  They differ only by OpenCV's 1/32-pixel quantisation
of source positions (mean absolute difference ~1e-4 of the [0, 1] range on natural images).

uint8 batches: where the stored image is 8-bit and needs no resize, a training/validation view hands the
DataLoader the uint8 crop (:meth:`TrainTransform.crop_uint8`: a quarter of the float32 bytes through the
workers, the collate and the worker -> main process queue) and the model side converts and normalises the
whole batch (:func:`normalize_batch`) with the same float32 arithmetic as the per-sample path, so the result is
bit-identical.  A worker-side rotation/zoom of such an image runs on the uint8 pixels (OpenCV's fixed-point
bilinear warp, rounded to whole gray levels) only where ``TrainTransform.uint8_augment`` is set: the warped
values then differ from the float warp by at most one gray level (1/255); by default a warped sample takes the
float path, so every run gives the same numbers as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info
from torchvision.transforms.v2 import functional as TF

from medcolor.errors import ConfigError
from medcolor.normalization import CHEXPERT_MEAN, CHEXPERT_STD
from medcolor.utils import derive_seed


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's augmentation ranges."""

    max_rotate: float = 10.0  # degrees, uniform in [-max_rotate, max_rotate]
    max_zoom: float = 1.1  # scale factor, uniform in [1, max_zoom] (zoom 0-10 %)
    p: float = 0.75  # probability of each of rotation and zoom

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ConfigError(f"augmentation probability p must be in [0, 1], got {self.p}")
        if self.max_zoom < 1:
            raise ConfigError(f"max_zoom must be >= 1 (1.1 = zoom up to 10 %), got {self.max_zoom}")
        if self.max_rotate < 0:
            raise ConfigError(f"max_rotate must be >= 0 degrees, got {self.max_rotate}")


def sample_rotate_zoom(
    generator: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[float, float, float, float]:
    """Draw ``(angle in degrees, zoom scale, x shift, y shift)`` for one image; identity parts are 0, 1, 0,
    0.  The shifts move the zoomed window's centre (in [-1, 1] image coordinates) uniformly within
    ``+-(1 - 1/scale)``, where the window stays inside the image (fastai's ``Zoom`` draws it the same way)."""
    u = torch.rand(6, generator=generator, dtype=torch.float64).tolist()
    angle = (2 * u[1] - 1) * cfg.max_rotate if u[0] < cfg.p else 0.0
    scale = 1 + u[3] * (cfg.max_zoom - 1) if u[2] < cfg.p else 1.0
    room = 1 - 1 / scale
    return angle, scale, (2 * u[4] - 1) * room, (2 * u[5] - 1) * room


def rotate_zoom(
    images: torch.Tensor, angles: torch.Tensor, scales: torch.Tensor, shifts: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotate by ``angles`` (degrees) and zoom in by ``scales`` a batch ``(B, C, H, W)`` around centres
    ``shifts`` ``(B, 2)`` (x, y in [-1, 1] image coordinates; default the image centre), one warp per
    image (bilinear, reflection padding).  Images with angle 0, scale 1 and no shift are returned unchanged."""
    if images.ndim != 4:
        raise ValueError(f"rotate_zoom expects (B, C, H, W), got {tuple(images.shape)}")
    shifts = torch.zeros(len(angles), 2) if shifts is None else shifts.to(torch.float32).reshape(-1, 2)
    identity = (angles == 0) & (scales == 1) & (shifts == 0).all(1)
    if bool(identity.all()):
        return images
    theta_rad = angles.to(torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(theta_rad) / scales, torch.sin(theta_rad) / scales
    dx, dy = shifts[:, 0].to(cos.dtype), shifts[:, 1].to(cos.dtype)
    mat = torch.stack([torch.stack([cos, -sin, dx], -1), torch.stack([sin, cos, dy], -1)], 1)
    grid = F.affine_grid(mat.to(images.device, images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    keep = identity.to(images.device).view(-1, 1, 1, 1)
    return torch.where(keep, images, warped)


def _affine_theta(angle: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """The 2x3 ``affine_grid`` matrix of :func:`rotate_zoom` (output -> input, normalised coordinates)."""
    rad = math.radians(angle)
    cos, sin = math.cos(rad) / scale, math.sin(rad) / scale
    return np.array([[cos, -sin, dx], [sin, cos, dy]], dtype=np.float64)


def pixel_affine(theta: np.ndarray, height: int, width: int) -> np.ndarray:
    """``theta`` (``affine_grid``'s normalised output -> input map, ``align_corners=False``) as a 2x3 map of
    pixel coordinates (pixel centres at integers, OpenCV's convention) for a ``height`` x ``width`` image."""
    to_norm = np.array([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]])
    to_pixel = np.array([[width / 2, 0, (width - 1) / 2], [0, height / 2, (height - 1) / 2], [0, 0, 1]])
    return (to_pixel @ np.vstack([theta, [0, 0, 1]]) @ to_norm)[:2]


def rotate_zoom_one(image: torch.Tensor, angle: float, scale: float, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """:func:`rotate_zoom` of one float32 ``(C, H, W)`` image on the CPU with OpenCV (bilinear; reflection
    about the border as ``grid_sample``'s ``padding_mode="reflection"``); identity parameters return it.
    A uint8 image is warped as uint8 (fixed-point weights, rounded to whole gray levels); anything else as float32."""
    if angle == 0 and scale == 1 and dx == 0 and dy == 0:
        return image
    if get_worker_info() is not None and cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)  # a DataLoader worker: one thread each, as torch does in workers
    h, w = image.shape[-2:]
    m = pixel_affine(_affine_theta(angle, scale, dx, dy), h, w)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    keep = torch.uint8 if image.dtype == torch.uint8 else torch.float32
    src = image.detach().to("cpu", keep).numpy()  # a crop's row stride is fine for OpenCV
    out = [cv2.warpAffine(c, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT) for c in src]
    return torch.from_numpy(np.stack(out))


def random_square_crop(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random square of side min(H, W) taken along the long axis of ``(C, H, W)``."""
    h, w = img.shape[-2:]
    s = min(h, w)
    if h == w:
        return img
    off = int(torch.randint(0, max(h, w) - s + 1, (1,), generator=generator))
    return TF.crop(img, off, 0, s, s) if h > w else TF.crop(img, 0, off, s, s)


def center_square_crop(img: torch.Tensor) -> torch.Tensor:
    s = min(img.shape[-2:])
    return TF.center_crop(img, [s, s])


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a square ``(C, S, S)`` image to ``(C, size, size)`` (bilinear, antialiased)."""
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    return TF.resize(img, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


class TrainTransform:
    """Random square crop -> resize -> (optional) rotation/zoom -> normalise, for ``(1, H, W)`` floats.

    Call with the per-sample seed: ``t(img, seed)``.  With ``rotate_zoom_here=False`` the affine part
    is left for :class:`BatchRotateZoom` (e.g. on the GPU), which draws the same parameters from the
    same seed.
    """

    def __init__(
        self,
        size: int = 320,
        mean: float = CHEXPERT_MEAN,
        std: float = CHEXPERT_STD,
        augment: AugmentConfig | None = AugmentConfig(),
        rotate_zoom_here: bool = True,
    ) -> None:
        check_size(size)
        self.size, self.mean, self.std = size, float(mean), float(std)
        self.augment, self.rotate_zoom_here = augment, rotate_zoom_here

    #: True: a worker-side rotation/zoom of a uint8 crop runs on uint8 (<= 1 gray level from the float warp);
    #: False (the default, so that a seed gives the same numbers as the float path): such a sample goes the
    #: float way (normalised in the worker)
    uint8_augment: bool = False

    def __call__(self, img: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(seed, 0))
        out = resize(random_square_crop(img, g), self.size)
        if self.augment is not None and self.rotate_zoom_here:
            out = rotate_zoom_one(out, *self._rotate_zoom_params(seed))
        return (out - self.mean).div_(self.std)  # one new tensor (this runs per sample in the workers)

    def _rotate_zoom_params(self, seed: int) -> tuple[float, float, float, float]:
        assert self.augment is not None
        return sample_rotate_zoom(torch.Generator().manual_seed(derive_seed(seed, 1)), self.augment)

    def crop_uint8(self, img: torch.Tensor, seed: int) -> torch.Tensor | None:
        """The uint8 ``(1, size, size)`` crop of a uint8 ``(1, H, W)`` image for :func:`normalize_batch`, the
        same pixels :meth:`__call__` takes (and warps, on uint8, where it does); None where it resizes (or
        would warp and :attr:`uint8_augment` is off): that image goes the float way."""
        out = random_square_crop(img, torch.Generator().manual_seed(derive_seed(seed, 0)))
        if tuple(out.shape[-2:]) != (self.size, self.size):
            return None
        if self.augment is not None and self.rotate_zoom_here:
            params = self._rotate_zoom_params(seed)
            if params != (0.0, 1.0, 0.0, 0.0):
                if not self.uint8_augment:
                    return None
                out = rotate_zoom_one(out, *params)
        return out


class EvalTransform:
    """Resize (short side) + centre crop to ``size`` -> normalise."""

    def __init__(self, size: int = 320, mean: float = CHEXPERT_MEAN, std: float = CHEXPERT_STD) -> None:
        check_size(size)
        self.size, self.mean, self.std = size, float(mean), float(std)

    def __call__(self, img: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return (resize(center_square_crop(img), self.size) - self.mean) / self.std

    def crop_uint8(self, img: torch.Tensor, seed: int | None = None) -> torch.Tensor | None:
        """The uint8 centre crop for :func:`normalize_batch`, or None where :meth:`__call__` resizes."""
        out = center_square_crop(img)
        return out if tuple(out.shape[-2:]) == (self.size, self.size) else None


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (/ 255), the arithmetic of :func:`medcolor.data.readers.to_float`."""
    return images.to(torch.float32).div_(255)


def normalize_batch(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """A batch of uint8 crops ``(B, 1, H, W)`` (any device) -> normalised float32, bit-identical to what
    :class:`TrainTransform` / :class:`EvalTransform` give for the same pixels per sample: ``(x / 255 - mean) / std``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_batch expects uint8 images, got {images.dtype}")
    return to_unit(images).sub_(float(mean)).div_(float(std))


class BatchRotateZoom(torch.nn.Module):
    """The rotation/zoom part of :class:`TrainTransform` for a whole batch on its device; parameters
    are drawn from each sample's seed exactly as the per-sample path does."""

    def __init__(self, augment: AugmentConfig = AugmentConfig()) -> None:
        super().__init__()
        self.augment = augment

    def params(self, seeds: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Angles ``(B,)``, scales ``(B,)`` and centre shifts ``(B, 2)`` drawn from the samples' seeds."""
        drawn = [sample_rotate_zoom(torch.Generator().manual_seed(derive_seed(int(s), 1)), self.augment) for s in seeds]
        t = torch.tensor(drawn, dtype=torch.float32).reshape(-1, 4)
        return t[:, 0], t[:, 1], t[:, 2:]

    def forward(self, images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        angles, scales, shifts = self.params(seeds.tolist())
        return rotate_zoom(images, angles, scales, shifts)


def check_size(size: int) -> int:
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ConfigError(f"input size must be an integer >= 8 pixels, got {size!r}")
    return int(size)


def compute_mean_std(dataset, max_images: int | None = None, seed: int = 0) -> tuple[float, float]:
    """Pixel mean and standard deviation of a dataset's images (as ``load_image`` returns them, in
    [0, 1]), over all images or a seeded random sample of ``max_images``.  Use them as ``mean``/``std``
    of the transforms; the paper normalised with CheXpert's (``CHEXPERT_MEAN``, ``CHEXPERT_STD``)."""
    n = len(dataset)
    if n == 0:
        raise ConfigError("cannot compute mean/std of an empty dataset")
    idx = np.arange(n)
    if max_images is not None and max_images < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
    total = total_sq = count = 0.0
    for i in idx:
        img = np.asarray(dataset.load_image(int(i)), dtype=np.float64)
        total += img.sum()
        total_sq += np.square(img).sum()
        count += img.size
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    return float(mean), float(std)


__all__ = [
    "AugmentConfig",
    "BatchRotateZoom",
    "EvalTransform",
    "TrainTransform",
    "center_square_crop",
    "compute_mean_std",
    "normalize_batch",
    "pixel_affine",
    "random_square_crop",
    "resize",
    "rotate_zoom",
    "rotate_zoom_one",
    "sample_rotate_zoom",
    "to_unit",
]
