"""Where ``medcolor demo`` gets E's ImageNet weights: torchvision's download first, then
the files kept beside the repository (whatever the working directory), and only then random weights,
with a loud warning."""

from __future__ import annotations

import logging
import time
import urllib.error
from pathlib import Path

import pytest
import torch

from medcolor import demo
from medcolor.cli import main
from medcolor.errors import WeightsError


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """An empty torchvision cache, no $MEDCOLOR_WEIGHTS / $MEDCOLOR_SHARED, the working directory elsewhere."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv("MEDCOLOR_WEIGHTS", raising=False)
    monkeypatch.delenv("MEDCOLOR_SHARED", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


@pytest.fixture
def offline(monkeypatch):
    """torchvision's download fails as it does without a network; records the attempts."""
    import torchvision

    calls = []

    def fail(self, *a, **k):
        calls.append(self.url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fail)
    return calls


def test_download_is_tried_first(fresh_machine, monkeypatch):
    import torchvision

    calls = []
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", lambda self, **k: calls.append(k) or {})
    assert demo.find_weights("mobilenet_v2") == "imagenet"
    assert calls == [{"progress": True, "check_hash": True}]


def test_offline_falls_back_to_the_repositorys_weights_whatever_the_cwd(fresh_machine, offline, mobilenet_weights):
    t0 = time.time()
    found = demo.find_weights("mobilenet_v2")
    assert time.time() - t0 < 10 and len(offline) == 1  # one quick failed try, no hanging
    assert found is not None and Path(found).resolve() == mobilenet_weights.resolve()
    assert not Path(demo.local_weight_files("mobilenet_v2")[-1]).is_relative_to(Path.cwd())


def test_shared_folder_and_explicit_file(fresh_machine, offline, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "weights").mkdir(parents=True)
    (shared / "weights" / demo.WEIGHTS_FILE).write_bytes(b"")
    monkeypatch.setenv("MEDCOLOR_SHARED", str(shared))
    assert demo.find_weights("mobilenet_v2") == str(shared / "weights" / demo.WEIGHTS_FILE)
    offline.clear()
    monkeypatch.setenv("MEDCOLOR_WEIGHTS", str(tmp_path / "mine.pth"))
    with pytest.raises(WeightsError, match=r"MEDCOLOR_WEIGHTS=.*mine\.pth is not a file"):
        demo.find_weights("mobilenet_v2")
    (tmp_path / "mine.pth").write_bytes(b"")
    assert demo.find_weights("mobilenet_v2") == str(tmp_path / "mine.pth")
    assert offline == []  # an explicit file: no download tried


def test_nothing_found_means_random_weights_and_a_loud_warning(fresh_machine, offline, monkeypatch, caplog):
    monkeypatch.setattr(demo, "local_weight_files", lambda backbone: [fresh_machine / "absent.pth"])
    assert demo.find_weights("mobilenet_v2") is None
    with caplog.at_level(logging.WARNING, logger="medcolor.demo"):
        demo._warn_random("mobilenet_v2")
    assert "RANDOMLY" in caplog.text and "MEDCOLOR_WEIGHTS" in caplog.text


def test_a_stalled_download_times_out(fresh_machine, monkeypatch):
    """torch.hub opens the URL without a timeout: the demo sets one for the attempt (and restores it)."""
    import socket

    import torchvision

    seen = []

    def stalled(self, **k):
        seen.append(socket.getdefaulttimeout())
        raise TimeoutError("timed out")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", stalled)
    before = socket.getdefaulttimeout()
    assert demo.download_imagenet_weights("mobilenet_v2", timeout=5) is False
    assert seen == [5] and socket.getdefaulttimeout() == before


# ------------------------------------------------------------------ the demo's figure and the colorize message
@pytest.fixture
def colorized_xrays(tmp_path, shared_path, mobilenet_weights):
    """A colorU + MobileNetV2 network (not trained) saved as a model file, 3 real X-rays colorized by it, and
    predictions.csv-like rows for them (ground truth + probabilities)."""
    import pandas as pd

    from medcolor.inference import colorize_files, predict_files
    from medcolor.io import save_model
    from medcolor.model import ColorTransferNet

    torch.manual_seed(0)
    net = ColorTransferNet.create("colorU", "mobilenet_v2", 2, str(mobilenet_weights), progress=False)
    norm = {"mean": 0.5028, "std": 0.2902}
    model = save_model(
        net, tmp_path / "model.safetensors", label_names=["NORMAL", "PNEUMONIA"], normalization=norm, size=64
    )
    root = shared_path("data", "kermany-pneumonia-224", "train")
    files = sorted((root / "NORMAL").glob("*.jpeg"))[:2] + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:1]
    tiles = colorize_files(model, files, tmp_path / "colorized", grid=False)
    rows = predict_files(model, files, precision="32-true", device="cpu").rename(
        columns={"NORMAL": "prob:NORMAL", "PNEUMONIA": "prob:PNEUMONIA"}
    )
    rows["target:NORMAL"] = [1.0, 1.0, 0.0]
    rows["target:PNEUMONIA"] = [0.0, 0.0, float("nan")]
    return model, files, tiles, pd.DataFrame(rows)


def test_the_demo_grid_labels_each_tile_with_truth_and_probability_without_overlaps(colorized_xrays, tmp_path):
    _, files, tiles, rows = colorized_xrays
    fig = demo.labelled_grid_figure(tiles, rows, title="T = colorU")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3
    titles = [ax._left_title for ax in shown]  # set_title(loc="left"); matplotlib keeps it here
    first = titles[0].get_text().splitlines()
    assert first[0] == files[0].name
    assert first[2] == f"NORMAL: yes / {rows['prob:NORMAL'][0]:.2f}"
    assert titles[2].get_text().splitlines()[3] == f"PNEUMONIA: ? / {rows['prob:PNEUMONIA'][2]:.2f}"  # blank target
    boxes = [t.get_window_extent(renderer) for t in titles] + [ax.get_window_extent(renderer) for ax in shown]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b) or (a.width == 0 or b.width == 0)  # no title over a title or a tile
    assert min(ax.get_window_extent(renderer).width for ax in shown) > 300  # big tiles (px at 100 dpi)
    path = demo.labelled_grid(tiles, rows, tmp_path / "grid.png")
    assert path.is_file() and path.stat().st_size > 10_000


def test_colorize_counts_the_images_and_the_grid_apart(colorized_xrays, tmp_path, capsys):
    from medcolor.cli import main

    model, files, _, _ = colorized_xrays
    assert main(["colorize", str(model), *map(str, files), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"3 colorized images and a grid written to {tmp_path / 'out'}" in out, out
    assert (
        len(list((tmp_path / "out").glob("*_colorized.png"))) == 3
        and (tmp_path / "out" / "colorized_grid.png").is_file()
    )
    assert main(["colorize", str(model), str(files[0]), "-o", str(tmp_path / "one")]) == 0
    assert f"1 colorized image and a grid written to {tmp_path / 'one'}" in capsys.readouterr().out


def test_the_colorize_grid_titles_do_not_overlap(colorized_xrays, shared_path, tmp_path, monkeypatch):
    """Six real Kermany images with long names (NORMAL2-IM-0383-0001.jpeg, person1000_bacteria_2931.jpeg):
    their titles in colorized_grid.png were one line each, touching their neighbours; each is now wrapped to
    its tile, and no title overlaps another title or another image."""
    import medcolor.display
    from medcolor.inference import colorize_files

    model = colorized_xrays[0]
    root = shared_path("data", "kermany-pneumonia-224", "train")
    files = sorted((root / "NORMAL").glob("NORMAL2-*.jpeg"))[:3] + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:3]
    drawn = {}
    save = medcolor.display.save_figure

    def check_then_save(fig, path, **kw):
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        shown = [ax for ax in fig.axes if ax.images]
        titles = [ax.title for ax in shown if ax.title.get_text()]
        drawn["titles"] = [t.get_text() for t in titles]
        boxes = [t.get_window_extent(r) for t in titles] + [ax.get_window_extent(r) for ax in shown]
        drawn["overlaps"] = [
            (i, j) for i in range(len(titles)) for j in range(len(boxes)) if i != j and boxes[i].overlaps(boxes[j])
        ]  # title i over title or image j
        return save(fig, path, **kw)

    monkeypatch.setattr(medcolor.display, "save_figure", check_then_save)
    written = colorize_files(model, files, tmp_path / "grid")
    assert written[-1].name == "colorized_grid.png" and written[-1].is_file()
    assert [t.replace("\n", "") for t in drawn["titles"]] == [f.name for f in files]  # every name, whole
    assert all(max(len(x) for x in t.splitlines()) <= 20 for t in drawn["titles"]), drawn["titles"]
    assert drawn["overlaps"] == []


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--colorizer", "bogus"], "--colorizer (model.colorizer): unknown colorizer 'bogus'"),
        (["--backbone", "bogus"], "--backbone (model.backbone): unknown backbone 'bogus'"),
        (["--weights", "{tmp}/absent.pth"], "--weights (model.weights): "),
        (["--data", "{tmp}/absent.yaml"], "absent.yaml does not exist"),
        (["--lr", "-1"], "--lr"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_every_demo_option_is_checked_before_weights_are_sought_or_anything_trains(
    tmp_path, monkeypatch, capsys, argv, named
):
    """`demo --colorizer bogus` trained the whole baseline first (minutes) and then failed."""
    import medcolor.training

    def must_not_run(*a, **k):
        raise AssertionError("reached before the options were checked")

    monkeypatch.setattr(medcolor.training, "train", must_not_run)
    monkeypatch.setattr(demo, "find_weights", must_not_run)
    t0 = time.perf_counter()
    rc = main(["demo", "-o", str(tmp_path / "out"), *(a.format(tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err
    assert rc == 2 and named in err and "Traceback" not in err, err
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "out").exists()
