"""Folder adapter: scikit-image's sample photos (and digits) as image folders, no fastai involved."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from adapters_helpers import IG_PAGE, page_predictions, photo_cnn, pil_pixels, write_sample_photos

import data_adapters.folder_images as folder_module
from data_adapters import AdapterError, from_folder, source_from_folder
from data_adapters.classes import read_classes
from data_adapters.errors import ChannelsError, ClassCountError
from data_adapters.folder import image_paths

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SIZE = (48, 64)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return root, write_sample_photos(root)


def test_subfolder_labels_images_and_predictions_end_to_end(photos):
    root, written = photos
    model = photo_cnn(3)
    source = source_from_folder(root, model, size=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert source.classes == ["animal", "object", "person"]
    files = sorted(written.values(), key=lambda p: p.relative_to(root).as_posix())
    batch = next(iter(source.dataset))
    assert batch.inputs.shape == (len(files), 3) + SIZE
    expected = torch.stack([pil_pixels(f, "RGB", SIZE) for f in files])
    assert torch.equal(batch.inputs, expected)
    assert batch.labels == [source.classes.index(f.parent.name) for f in files]

    with torch.no_grad():
        scores = torch.softmax(model(_normalize(expected)), dim=1)
    vis = source.visualizer(title="photos")
    page = vis.page(IG_PAGE)
    json.dumps(page)
    assert [ex["id"] for ex in page["examples"]] == [0, 1, 2, 3]
    for ex_id, index, score in page_predictions(page):
        assert index == int(scores[ex_id].argmax())
        assert score == pytest.approx(float(scores[ex_id].max()), abs=1e-5)
    for ex in page["examples"]:
        assert ex["label"]["name"] == files[ex["id"]].parent.name
        assert ex["models"][0]["attributions"][0]["image"]
    second = vis.page(dict(IG_PAGE, page=1))
    assert [ex["id"] for ex in second["examples"]] == list(range(4, len(files)))
    assert vis.page(IG_PAGE)["examples"][0]["label"] == page["examples"][0]["label"]  # pages back


def test_grayscale_crop_and_first_image_size(photos, tmp_path):
    root, written = photos
    source = source_from_folder(root, photo_cnn(3, channels=1), channels=1, size=32, resize="crop")
    batch = next(iter(source.dataset))
    assert batch.inputs.shape[1:] == (1, 32, 32)
    # no size: every image takes the first image's size
    source = source_from_folder(root, photo_cnn(3), batch_size=2)
    shapes = {tuple(b.inputs.shape[1:]) for b in source.dataset}
    assert len(shapes) == 1


def test_regex_labels_and_unmatched_files(photos, tmp_path):
    _, written = photos
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, path in written.items():
        (flat / f"{path.parent.name}_{name}.png").write_bytes(path.read_bytes())
    (flat / "mystery.png").write_bytes(written["coffee"].read_bytes())
    source = source_from_folder(flat, photo_cnn(3), labels=r"^(?P<label>[a-z]+)_", size=32)
    assert source.classes == ["animal", "object", "person"]
    names = sorted(p.name for p in flat.iterdir())
    labels = [v for b in source.dataset for v in b.labels]
    expected = [source.classes.index(n.split("_")[0]) if "_" in n else None for n in names]
    assert labels == expected and None in labels
    with pytest.raises(AdapterError, match="matches no file name"):
        source_from_folder(flat, photo_cnn(3), labels=r"^zebra_(\w+)")
    with pytest.raises(AdapterError, match="valid regex"):
        source_from_folder(flat, photo_cnn(3), labels=r"([unclosed")


def test_csv_labels_with_header_and_missing_files(photos, tmp_path):
    root, written = photos
    rows = [("animal/chelsea.png", "cat"), ("person/astronaut.png", "human"), ("object/coffee.png", "")]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("filename,label\n" + "".join(f"{f},{lbl}\n" for f, lbl in rows))
    source = source_from_folder(root, photo_cnn(2), labels=csv_path, size=32)
    assert source.classes == ["cat", "human"]
    batch = next(iter(source.dataset))
    assert batch.labels == [0, 1, None]  # CSV order; an empty label is unlabeled
    assert torch.equal(batch.inputs[1], pil_pixels(written["astronaut"], "RGB", (32, 32)))
    vis = from_folder(root, photo_cnn(2), labels=str(csv_path), size=32)
    assert [ex["label"] for ex in vis.page(IG_PAGE)["examples"]][2] is None

    bad = tmp_path / "bad.csv"
    bad.write_text("animal/chelsea.png,cat\nanimal/dog.png,dog\nzoo/lion.jpg,lion\n")
    with pytest.raises(AdapterError, match=r"names 2 file\(s\) missing.*animal/dog\.png, zoo/lion\.jpg"):
        from_folder(root, photo_cnn(2), labels=bad)
    with pytest.raises(AdapterError, match="label CSV not found"):
        from_folder(root, photo_cnn(2), labels=tmp_path / "nope.csv")


def test_unlabeled_folder_with_class_file(photos, tmp_path):
    _, written = photos
    flat = tmp_path / "unlabeled"
    flat.mkdir()
    for name in ("chelsea", "coffee"):
        (flat / f"{name}.png").write_bytes(written[name].read_bytes())
    class_file = tmp_path / "classes.txt"
    class_file.write_text("tabby\nespresso\nrocket\n")
    vis = from_folder(flat, photo_cnn(3), classes=class_file, size=32)
    assert vis.classes == ["tabby", "espresso", "rocket"]
    page = vis.page(IG_PAGE)
    assert len(page["examples"]) == 2 and all(ex["label"] is None for ex in page["examples"])
    assert {p["label"] for ex in page["examples"] for p in ex["models"][0]["predictions"]} <= set(vis.classes)
    numbered = from_folder(flat, photo_cnn(4), size=32)  # unlabeled and no class list: outputs are numbered
    assert numbered.classes == ["0", "1", "2", "3"]


def test_corrupt_files_are_skipped_and_counted(photos, tmp_path, caplog):
    root, written = photos
    data = tmp_path / "mixed"
    (data / "animal").mkdir(parents=True)
    (data / "object").mkdir()
    (data / "animal" / "a_chelsea.png").write_bytes(written["chelsea"].read_bytes())
    (data / "animal" / "b_garbage.png").write_bytes(b"this is not an image at all")
    (data / "object" / "c_truncated.png").write_bytes(written["coffee"].read_bytes()[:200])
    (data / "object" / "d_coffee.png").write_bytes(written["coffee"].read_bytes())
    (data / "object" / "notes.txt").write_text("not an image extension: never listed")
    with caplog.at_level(logging.WARNING, logger="data_adapters.folder"):
        source = source_from_folder(data, photo_cnn(2), size=32, batch_size=2)
        batches = list(source.dataset) + list(source.dataset)
    assert [b.inputs.shape[0] for b in batches] == [1, 1, 1, 1]
    assert sorted(p.name for p in source.dataset.skipped) == ["b_garbage.png", "c_truncated.png"]
    warnings = [r for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert len(warnings) == 2  # once per file, not once per pass
    page = source.visualizer().page(IG_PAGE)
    assert [ex["label"]["name"] for ex in page["examples"]] == ["animal", "object"]


def test_clear_errors(photos, tmp_path):
    root, _ = photos
    with pytest.raises(AdapterError, match="image folder not found"):
        from_folder(tmp_path / "nowhere", photo_cnn(3))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(AdapterError, match="no image files"):
        from_folder(empty, photo_cnn(3))
    with pytest.raises(AdapterError, match="3 class names but the model has 5 outputs"):
        from_folder(root, photo_cnn(5), size=32)
    with pytest.raises(AdapterError, match="class file not found"):
        from_folder(root, photo_cnn(3), classes=tmp_path / "classes.txt")
    with pytest.raises(AdapterError, match="both mean and std"):
        from_folder(root, photo_cnn(3), mean=IMAGENET_MEAN)
    with pytest.raises(ChannelsError, match=r"expects 1-channel images but got 3-channel ones \(pass channels=1\)"):
        from_folder(root, photo_cnn(3, channels=1), size=32)  # RGB images, grayscale model
    with pytest.raises(AdapterError, match="the model failed on the first examples"):
        from_folder(root, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 3)), size=32)  # no conv


def test_a_sub_folder_that_is_not_a_class_is_shown_unlabeled_with_one_warning(photos, caplog):
    """A ``person/`` folder next to the classes' folders: its image is shown without a label (it still has
    predictions and attributions worth seeing), and one warning names the folder and counts its images."""
    root, written = photos
    with caplog.at_level(logging.WARNING, logger="data_adapters.folder"):
        source = source_from_folder(root, photo_cnn(2), classes=["animal", "object"], size=32)
    messages = [r.getMessage() for r in caplog.records if r.name == "data_adapters.folder"]
    assert messages == ["showing 1 image unlabeled: sub-folder 'person' (1 image) is not one of the 2 classes"]
    assert source.info["unknown_labels"] == {"person": 1} and source.info["classes_from"] == "given"
    files = sorted(written.values(), key=lambda p: p.relative_to(root).as_posix())
    labels = [v for b in source.dataset for v in b.labels]
    assert labels == [{"animal": 0, "object": 1}.get(f.parent.name) for f in files]
    page = source.visualizer().page(dict(IG_PAGE, page_size=8))
    person = [ex for ex in page["examples"] if files[ex["id"]].parent.name == "person"]
    assert len(person) == 1 and person[0]["label"] is None and person[0]["models"][0]["predictions"]


def test_unknown_csv_labels_are_counted_per_label(photos, tmp_path, caplog):
    root, _ = photos
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("animal/chelsea.png,cat\nanimal/cat.png,lion\nobject/coffee.png,mug\nobject/rocket.png,mug\n")
    with caplog.at_level(logging.WARNING, logger="data_adapters.folder"):
        source = source_from_folder(root, photo_cnn(2), classes=["cat", "dog"], labels=csv_path, size=32)
    assert [v for b in source.dataset for v in b.labels] == [0, None, None, None]
    assert [r.getMessage() for r in caplog.records if r.name == "data_adapters.folder"] == [
        "showing 3 images unlabeled: labels 'lion' (1 image), 'mug' (2 images) are not any of the 2 classes"
    ]


def test_classes_come_from_the_labels_unless_given(photos):
    root, _ = photos
    assert source_from_folder(root, photo_cnn(3), size=32).info["classes_from"] == "labels"
    assert source_from_folder(root, photo_cnn(3), labels=None, size=32).info["classes_from"] == "outputs"


def test_a_class_count_mismatch_carries_both_counts(photos):
    root, _ = photos
    with pytest.raises(ClassCountError) as caught:
        source_from_folder(root, photo_cnn(5), size=32)
    assert (caught.value.given, caught.value.outputs, caught.value.names) == (3, 5, ["animal", "object", "person"])


def test_class_files_json_by_content_and_clear_errors(tmp_path):
    txt = tmp_path / "classes.txt"
    txt.write_text('["cat", "dog"]\n')  # a JSON list saved as .txt: two classes, not one named '["cat", "dog"]'
    assert read_classes(txt) == ["cat", "dog"]
    lines = tmp_path / "names"
    lines.write_text("cat\n\ndog [large]\n")
    assert read_classes(lines) == ["cat", "dog [large]"]
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"1": ["n2", "dog"], "0": ["n1", "cat"]}))
    assert read_classes(index) == ["cat", "dog"]
    for name in ("broken.json", "broken.txt", "broken"):
        bad = tmp_path / name
        bad.write_text('["a", "b"')
        with pytest.raises(AdapterError, match=rf"class file .*{name} is not valid JSON: Expecting ',' delimiter"):
            read_classes(bad)


@pytest.mark.slow
def test_large_folder_is_read_lazily(tmp_path, monkeypatch):
    """50,000 files: listing them is fine, reading them is not; a page reads about one batch."""
    from PIL import Image

    n = 50_000
    big = tmp_path / "big"
    for cls in ("a", "b"):
        (big / cls).mkdir(parents=True)
    original = tmp_path / "one.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(original)
    try:
        for i in range(n):  # hard links: 50,000 names, one file's bytes on disk
            os.link(original, big / ("a" if i % 2 else "b") / f"{i:05d}.png")
        reads = []
        real = folder_module.load_image
        monkeypatch.setattr(folder_module, "load_image", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
        source = source_from_folder(big, photo_cnn(2), batch_size=16)
        assert len(source.dataset) == n
        page = source.visualizer().page(IG_PAGE)
        assert [ex["label"]["name"] for ex in page["examples"]] == ["a"] * 4  # a/00001.png, a/00003.png, ...
        assert len(reads) <= 2 * 16  # the class-count check and the first page: one batch each
    finally:
        shutil.rmtree(big, ignore_errors=True)


def test_start_up_memory_is_bounded_at_large_sizes(photos):
    """At 2048x2048 an RGB image is 48 MB: a batch is cut once it reaches 64 MiB (two images), and the
    forward pass that checks the class count sees two examples (eight took 5 GB with resnet18)."""
    root, _ = photos
    seen = []
    model = photo_cnn(3)
    model.register_forward_hook(lambda m, inputs, output: seen.append(int(inputs[0].shape[0])))
    source = source_from_folder(root, model, size=2048)
    assert seen == [2]
    sizes = [int(b.inputs.shape[0]) for b in source.dataset]
    assert sizes == [2, 2, 1] and sum(sizes) == 5


def test_symlink_loops_and_links_to_folders_read_each_real_folder_once(photos, tmp_path):
    root, written = photos
    data = tmp_path / "linked"
    shutil.copytree(root, data)
    (data / "animal" / "up").symlink_to("..", target_is_directory=True)  # a loop
    (data / "object" / "again").symlink_to("..", target_is_directory=True)  # a second loop
    (data / "person" / "cats").symlink_to(data / "animal", target_is_directory=True)  # a folder seen elsewhere
    files = image_paths(data)
    assert len(files) == len(written) == len({os.path.realpath(f) for f in files})


def test_high_bit_depth_images_keep_their_range(tmp_path):
    """A 16-bit grayscale PNG is scaled by 65535, a float TIFF in 0..1 kept; a float TIFF outside 0..1 is
    refused with a message naming the file and the mode (convert('RGB') saturated the first and blacked
    out the second)."""
    from PIL import Image

    ramp = np.linspace(0, 1, 64 * 64, dtype=np.float64).reshape(64, 64)
    (tmp_path / "a").mkdir()
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "a" / "depth16.png")
    Image.fromarray(ramp.astype(np.float32), "F").save(tmp_path / "a" / "float.tif")
    Image.fromarray((ramp * 1000).astype(np.float32), "F").save(tmp_path / "a" / "kelvin.tif")
    for channels in (1, 3):
        source = source_from_folder(tmp_path, photo_cnn(1, channels=channels), labels=None, channels=channels)
        (batch,) = list(source.dataset)
        assert batch.inputs.shape == (2, channels, 64, 64)
        for x in batch.inputs:
            assert torch.allclose(x, torch.from_numpy(ramp).float().expand_as(x), atol=1 / 255)
        assert {p.name for p in source.dataset.skipped} == {"kelvin.tif"}
        why = source.dataset.skipped[tmp_path / "a" / "kelvin.tif"]
        assert "kelvin.tif" in why and "mode F" in why and "0..1" in why
