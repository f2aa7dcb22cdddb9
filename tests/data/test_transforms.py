"""The paper's augmentation (Sec. IV-B): ranges and probabilities, checked statistically with fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from medcolor.data.transforms import (
    AugmentConfig,
    BatchRotateZoom,
    EvalTransform,
    TrainTransform,
    center_square_crop,
    compute_mean_std,
    random_square_crop,
    rotate_zoom,
    rotate_zoom_one,
    sample_rotate_zoom,
)
from medcolor.errors import ConfigError
from medcolor.utils import derive_seed


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return np.array([sample_rotate_zoom(torch.Generator().manual_seed(s)) for s in range(20000)])


def test_rotation_and_zoom_stay_in_the_papers_ranges(draws):
    angles, scales = draws[:, 0], draws[:, 1]
    assert angles.min() >= -10 and angles.max() <= 10
    assert scales.min() >= 1.0 and scales.max() <= 1.1
    rotated, zoomed = angles != 0, scales != 1
    # each applied with probability 0.75 (binomial 99.9 % interval for n = 20000 is about +-0.01)
    assert abs(rotated.mean() - 0.75) < 0.012
    assert abs(zoomed.mean() - 0.75) < 0.012
    # independent of each other (fastai draws them separately)
    assert abs((rotated & zoomed).mean() - 0.75**2) < 0.012
    # uniform over their ranges when applied
    assert stats.kstest(angles[rotated], stats.uniform(loc=-10, scale=20).cdf).pvalue > 0.001
    assert stats.kstest(scales[zoomed], stats.uniform(loc=1, scale=0.1).cdf).pvalue > 0.001


def test_zoom_centre_is_random_within_the_image(draws):
    scales, dx, dy = draws[:, 1], draws[:, 2], draws[:, 3]
    room = 1 - 1 / scales
    assert (np.abs(dx) <= room + 1e-12).all() and (np.abs(dy) <= room + 1e-12).all()
    assert (dx[scales == 1] == 0).all() and (dy[scales == 1] == 0).all()
    zoomed = scales != 1
    # uniform over the positions that keep the zoomed window inside the image (fastai's Zoom)
    u = (dx[zoomed] / room[zoomed] + 1) / 2
    assert stats.kstest(u, stats.uniform().cdf).pvalue > 0.001
    assert abs(np.corrcoef(dx[zoomed], dy[zoomed])[0, 1]) < 0.03


def test_shifted_zoom_stays_inside_the_image():
    x = torch.linspace(0, 1, 41).view(1, 1, 1, 41).expand(1, 1, 41, 41).contiguous()  # value = column
    room = 1 - 1 / 1.1
    right = rotate_zoom(x, torch.tensor([0.0]), torch.tensor([1.1]), torch.tensor([[room, 0.0]]))
    left = rotate_zoom(x, torch.tensor([0.0]), torch.tensor([1.1]), torch.tensor([[-room, 0.0]]))
    assert float(right[..., -1].mean()) == pytest.approx(1.0, abs=0.02) and float(right[..., 0].mean()) > 0.05
    assert float(left[..., 0].mean()) == pytest.approx(0.0, abs=0.02) and float(left[..., -1].mean()) < 0.95


def test_draws_are_reproducible_per_seed():
    a = sample_rotate_zoom(torch.Generator().manual_seed(7))
    b = sample_rotate_zoom(torch.Generator().manual_seed(7))
    c = sample_rotate_zoom(torch.Generator().manual_seed(8))
    assert a == b and a != c


def test_random_square_crop_covers_the_long_axis_uniformly():
    img = torch.arange(10 * 40, dtype=torch.float32).view(1, 10, 40)
    offsets = []
    for s in range(3000):
        crop = random_square_crop(img, torch.Generator().manual_seed(s))
        assert crop.shape == (1, 10, 10)
        offsets.append(int(crop[0, 0, 0]))  # the first column index
    offsets = np.array(offsets)
    assert offsets.min() == 0 and offsets.max() == 30
    counts = np.bincount(offsets, minlength=31)
    assert stats.chisquare(counts).pvalue > 0.001
    tall = torch.zeros(1, 50, 20)
    assert random_square_crop(tall, torch.Generator().manual_seed(0)).shape == (1, 20, 20)


def test_identity_parameters_leave_images_untouched():
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(rotate_zoom(x, torch.zeros(3), torch.ones(3)), x)


def test_rotation_matches_rot90_inside_the_image():
    x = torch.rand(1, 1, 9, 9)
    y = rotate_zoom(x, torch.tensor([90.0]), torch.tensor([1.0]))
    assert torch.allclose(y, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-5) or torch.allclose(
        y, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5
    )


def test_zoom_enlarges_the_centre():
    x = torch.zeros(1, 1, 41, 41)
    x[..., 10:31, 10:31] = 1.0  # a 21 px square in the middle
    y = rotate_zoom(x, torch.tensor([0.0]), torch.tensor([1.1]))
    assert float(y.sum()) == pytest.approx(float(x.sum()) * 1.1**2, rel=0.05)  # area grows by 1.21


def test_batched_device_path_equals_per_sample_path():
    img = torch.rand(1, 48, 64)
    seeds = [11, 12, 13, 14]
    per_sample = torch.stack([TrainTransform(32, 0.5, 0.25)(img, s) for s in seeds])
    no_affine = torch.stack([TrainTransform(32, 0.5, 0.25, rotate_zoom_here=False)(img, s) for s in seeds])
    batched = BatchRotateZoom()(no_affine, torch.tensor(seeds))
    # the worker warps with OpenCV, the batch with grid_sample: the same map up to OpenCV's 1/32 px steps
    assert (per_sample - batched).abs().max() < 0.25 / 0.25 * 0.05  # normalised with std 0.25
    assert (per_sample - batched).abs().mean() < 2e-3 / 0.25


def test_train_and_eval_transforms_shapes_and_normalisation():
    img = torch.full((1, 30, 50), 0.5028)
    out = TrainTransform(24, 0.5028, 0.2902)(img, derive_seed(1))
    assert out.shape == (1, 24, 24) and torch.allclose(out, torch.zeros_like(out), atol=1e-4)
    ev = EvalTransform(24, 0.0, 1.0)
    assert torch.equal(ev(img), ev(img)) and ev(img).shape == (1, 24, 24)


def test_bad_parameters_are_rejected():
    with pytest.raises(ConfigError, match="probability"):
        AugmentConfig(p=1.5)
    with pytest.raises(ConfigError, match="max_zoom"):
        AugmentConfig(max_zoom=0.9)
    with pytest.raises(ConfigError, match="input size"):
        TrainTransform(size=4)


def test_compute_mean_std():
    class Fake:
        def __init__(self):
            rng = np.random.default_rng(0)
            self.imgs = [rng.random((8, 10)).astype(np.float32) for _ in range(5)]

        def __len__(self):
            return len(self.imgs)

        def load_image(self, i):
            return self.imgs[i]

    f = Fake()
    mean, std = compute_mean_std(f)
    allpix = np.concatenate([i.ravel() for i in f.imgs])
    assert mean == pytest.approx(allpix.mean(), abs=1e-6) and std == pytest.approx(allpix.std(), abs=1e-6)
    with pytest.raises(ConfigError, match="empty"):
        compute_mean_std([])


@pytest.fixture(scope="module")
def xray(shared_path) -> torch.Tensor:
    """A real chest X-ray (Kermany), 96 px square."""
    from medcolor.data.readers import load_reduced, to_float

    path = sorted(shared_path("data", "kermany-pneumonia-224", "train", "NORMAL").glob("*.jpeg"))[0]
    img = torch.from_numpy(to_float(load_reduced(path, 96)))[None]
    return center_square_crop(img).contiguous()


@pytest.mark.parametrize(
    "angle,scale,dx,dy", [(10.0, 1.0, 0.0, 0.0), (-7.5, 1.1, 0.05, -0.03), (0.0, 1.04, -0.02, 0.0)]
)
def test_opencv_warp_of_one_image_matches_the_batched_grid_sample(xray, angle, scale, dx, dy):
    """rotate_zoom_one (OpenCV, in CPU workers) and rotate_zoom (grid_sample, batched on the device) are the
    same geometric map with the same border reflection: on a real X-ray they agree to 1/32 pixel."""
    img = xray
    one = rotate_zoom_one(img, angle, scale, dx, dy)
    batched = rotate_zoom(img[None], torch.tensor([angle]), torch.tensor([scale]), torch.tensor([[dx, dy]]))[0]
    diff = (one - batched).abs()
    assert one.shape == img.shape and one.dtype == torch.float32
    assert float(diff.mean()) < 1e-3 and float(diff.max()) < 0.03
    assert float((one - img).abs().mean()) > 10 * float(diff.mean())  # it did warp


def test_opencv_warp_reflects_at_the_borders_like_grid_sample():
    x = torch.rand(1, 17, 23)  # noise: every pixel differs, non-square, odd sizes
    one = rotate_zoom_one(x, 30.0, 1.0)  # corners map outside the image: reflected
    batched = rotate_zoom(x[None], torch.tensor([30.0]), torch.tensor([1.0]))[0]
    assert float((one - batched).abs().mean()) < 0.02  # noise has gradients of ~0.5 per pixel
    assert torch.equal(rotate_zoom_one(x, 0.0, 1.0), x)
