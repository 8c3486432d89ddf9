"""Image data sets: folder and CelebA layouts, cropping/resizing, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from latentedit.data import datasets as images_module
from latentedit.data.datasets import (CelebADataset, ImageFolderDataset, detect_data_format, load_image,
                                    open_image_dataset, parse_toyfaces_spec)
from latentedit.errors import InputError


def solid(path, color, size=(12, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_load_image_normalises_to_minus_one_one(tmp_path):
    path = solid(tmp_path / "a.png", (255, 0, 51))
    image = load_image(path, 8)
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    expected = torch.tensor([255, 0, 51]) / 127.5 - 1
    assert torch.allclose(image, expected[:, None, None].expand(3, 8, 8), atol=1e-6)


def test_load_image_centre_crops_non_square_images(tmp_path):
    # 30 x 10: red | green | blue bands; the centred 10 x 10 square is pure green.
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :10, 0] = 255
    pixels[:, 10:20, 1] = 255
    pixels[:, 20:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png", 4)
    assert torch.allclose(image[1], torch.ones(4, 4), atol=1e-6)
    assert torch.allclose(image[0], -torch.ones(4, 4), atol=1e-6)


def test_load_image_resize_filters_instead_of_subsampling(tmp_path):
    # A 1-pixel checkerboard averages to grey under a proper filter; nearest-neighbour would keep 0/255.
    pixels = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(tmp_path / "checker.png")
    image = load_image(tmp_path / "checker.png", 8)
    assert image.abs().max() < 0.1


def test_load_image_converts_grayscale_rgba_and_jpeg(tmp_path):
    for name, mode, color in (("g.png", "L", 128), ("rgba.png", "RGBA", (10, 20, 30, 128)), ("c.jpg", "RGB", (200, 100, 0))):
        path = solid(tmp_path / name, color, size=(300, 200), mode=mode)
        image = load_image(path, 16)
        assert image.shape == (3, 16, 16)
        assert image.min() >= -1 and image.max() <= 1


def test_folder_dataset_lists_images_recursively_sorted_and_skips_other_files(tmp_path):
    solid(tmp_path / "b.png", (0, 0, 0))
    solid(tmp_path / "a" / "z.jpg", (255, 255, 255))
    solid(tmp_path / ".hidden" / "x.png", (1, 2, 3))
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = ImageFolderDataset(tmp_path, 8)
    assert [p.relative_to(tmp_path).as_posix() for p in dataset.paths] == ["a/z.jpg", "b.png"]
    assert len(dataset) == 2
    assert dataset[0].shape == (3, 8, 8)
    assert dataset[0].mean() > 0.9 and dataset[1].mean() < -0.9


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no_images"])
def test_folder_dataset_bad_paths_raise_input_error(tmp_path, case):
    target = tmp_path / "data"
    if case == "file":
        target.write_text("x")
    elif case == "empty":
        target.mkdir()
    elif case == "no_images":
        target.mkdir()
        (target / "readme.md").write_text("x")
    with pytest.raises(InputError) as info:
        ImageFolderDataset(target, 16)
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)


def truncated(path, size=(24, 24)):
    """A PNG whose header reads but whose pixels are cut off half-way (passes the scan, fails to decode)."""
    import io

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    return path


def test_min_image_side_is_a_quarter_of_the_training_size_and_at_least_8():
    assert images_module.min_image_side(64) == 16
    assert images_module.min_image_side(256) == 64
    assert images_module.min_image_side(100) == 25
    assert images_module.min_image_side(16) == 8 and images_module.min_image_side(8) == 8


def test_unreadable_and_small_images_are_left_out_with_a_one_line_summary(tmp_path):
    solid(tmp_path / "0.png", (255, 0, 0), size=(16, 20))
    (tmp_path / "1.png").write_bytes(b"this is not a png")
    solid(tmp_path / "2.png", (0, 0, 255), size=(40, 16))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "3.jpg").write_bytes(b"")
    solid(tmp_path / "tiny.png", (0, 255, 0), size=(15, 200))  # shorter side below 64 / 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is warned about; the summary says it all
        dataset = ImageFolderDataset(tmp_path, 64)
    assert [p.name for p in dataset.paths] == ["0.png", "2.png"] and len(dataset) == 2
    assert [(p.relative_to(tmp_path).as_posix(), why) for p, why in dataset.skipped] == [
        ("1.png", "unreadable"), ("sub/3.jpg", "unreadable"), ("tiny.png", "small")]
    assert dataset.skip_summary() == (f"skipped 3 of 5 images under {tmp_path}: 2 unreadable (1.png, sub/3.jpg), "
                                      "1 smaller than 16 px (tiny.png)")
    assert torch.allclose(dataset[1], torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 64, 64))


def test_skip_summary_names_a_few_files_per_reason_and_none_when_nothing_is_skipped(tmp_path):
    solid(tmp_path / "good.png", (0, 0, 0))
    assert ImageFolderDataset(tmp_path, 8).skip_summary() is None
    for i in range(5):
        (tmp_path / f"bad{i}.png").write_bytes(b"garbage")
    dataset = ImageFolderDataset(tmp_path, 8, min_side=1)
    assert dataset.skip_summary().endswith(": 5 unreadable (bad0.png, bad1.png, bad2.png and 2 more)")
    assert "\n" not in dataset.skip_summary()


def test_folder_with_nothing_usable_is_a_one_line_error(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.png").write_bytes(b"garbage")
    solid(tmp_path / "small.png", (1, 2, 3), size=(12, 12))
    with pytest.raises(InputError) as info:
        ImageFolderDataset(tmp_path, 64)
    assert str(info.value) == (f"none of the 3 image files under {tmp_path} can be trained on: "
                               "2 unreadable (0.png, 1.png), 1 smaller than 16 px (small.png)")


def test_an_image_failing_to_decode_later_is_replaced_with_one_log_line(tmp_path, caplog):
    solid(tmp_path / "0.png", (255, 0, 0))
    truncated(tmp_path / "1.png")
    solid(tmp_path / "2.png", (0, 0, 255))
    dataset = ImageFolderDataset(tmp_path, 8)
    assert len(dataset) == 3  # the header reads: the scan cannot tell
    with caplog.at_level("WARNING", logger="latentedit.data"):
        replacement = dataset[1]
        dataset[1]
    assert torch.equal(replacement, dataset[2])
    (record,) = caplog.records  # once per file
    assert "skipping an unreadable image" in record.getMessage() and "1.png" in record.getMessage()
    assert "\n" not in record.getMessage()


def test_folder_of_only_undecodable_images_raises(tmp_path):
    for i in range(3):
        truncated(tmp_path / f"{i}.png")
    dataset = ImageFolderDataset(tmp_path, 8)
    with pytest.raises(InputError, match="could not be read"):
        dataset[0]


def test_many_consecutive_failures_raise_even_in_large_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_CONSECUTIVE_FAILURES", 2)
    for i in range(4):
        truncated(tmp_path / f"{i}.png")
    solid(tmp_path / "9.png", (0, 0, 0))
    dataset = ImageFolderDataset(tmp_path, 8)
    with pytest.raises(InputError):
        dataset[0]
    assert dataset[3].shape == (3, 8, 8)  # 3 fails, 4 (= 9.png) reads


# ----------------------------------------------------------------------------------------------------
# CelebA

ATTR_TEXT = """3
Smiling  Male Eyeglasses
000001.jpg -1  1 -1
000002.jpg  1 -1 -1
000003.jpg  1  1  1
"""


def make_celeba(root, text=ATTR_TEXT, images=("000001.jpg", "000002.jpg", "000003.jpg")):
    root.mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_text(text)
    for i, name in enumerate(images):
        solid(root / "img_align_celeba" / name, (40 * i, 0, 0), size=(178, 218), mode="RGB")
    return root


def test_celeba_reads_attributes_as_zero_one_in_requested_order(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    dataset = CelebADataset(root, 16, attrs=["Male", "Smiling"])
    assert len(dataset) == 3
    assert dataset.attribute_names == ["Male", "Smiling"]
    image, attrs = dataset[1]
    assert image.shape == (3, 16, 16)
    assert attrs.tolist() == [0.0, 1.0]
    assert dataset[0][1].tolist() == [1.0, 0.0]
    assert CelebADataset(root, 16).attribute_names == ["Smiling", "Male", "Eyeglasses"]
    assert CelebADataset(root, 16)[2][1].tolist() == [1.0, 1.0, 1.0]


def test_celeba_unknown_attribute_lists_the_valid_names(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    with pytest.raises(InputError, match="Blond_Hair.*available: Smiling Male Eyeglasses"):
        CelebADataset(root, 16, attrs=["Blond_Hair"])


def test_celeba_missing_image_files_are_reported(tmp_path):
    root = make_celeba(tmp_path / "celeba", images=("000001.jpg", "000003.jpg"))
    with pytest.raises(InputError, match="000002.jpg"):
        CelebADataset(root, 16)


def test_celeba_missing_layout_parts(tmp_path):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(InputError, match="list_attr_celeba.txt"):
        CelebADataset(root, 16)
    (root / "img_align_celeba").rmdir()
    (root / "list_attr_celeba.txt").write_text(ATTR_TEXT)
    with pytest.raises(InputError, match="img_align_celeba"):
        CelebADataset(root, 16)


def test_celeba_malformed_attribute_file_raises(tmp_path):
    root = make_celeba(tmp_path / "celeba", text="1\nSmiling Male\n000001.jpg 1\n")
    with pytest.raises(InputError, match="line 3"):
        CelebADataset(root, 16)


# ----------------------------------------------------------------------------------------------------
# Factory

def test_open_image_dataset_detects_the_layout(tmp_path):
    celeba = make_celeba(tmp_path / "celeba")
    folder = tmp_path / "folder"
    solid(folder / "a.png", (0, 0, 0))
    assert detect_data_format(str(celeba)) == "celeba"
    assert detect_data_format(str(folder)) == "folder"
    assert detect_data_format("toyfaces:3:100") == "toyfaces"
    assert isinstance(open_image_dataset(str(celeba), 8), CelebADataset)
    assert isinstance(open_image_dataset(str(folder), 8), ImageFolderDataset)
    # A CelebA folder can still be read as a plain image folder when asked.
    assert isinstance(open_image_dataset(str(celeba), 8, data_format="folder"), ImageFolderDataset)
    with pytest.raises(InputError, match="--attrs"):
        open_image_dataset(str(folder), 8, attrs=["Smiling"])
    with pytest.raises(InputError, match="data format"):
        open_image_dataset(str(folder), 8, data_format="zip")


def test_parse_toyfaces_spec():
    assert parse_toyfaces_spec("toyfaces") == {}
    assert parse_toyfaces_spec("toyfaces:7") == {"seed": 7}
    assert parse_toyfaces_spec("toyfaces:7:500") == {"seed": 7, "count": 500}
    assert parse_toyfaces_spec("toyfaces::500") == {"count": 500}
    for bad in ("toyfaces:x", "toyfaces:1:0", "toyfaces:-1", "toyfaces:1:2:3", "faces:1"):
        with pytest.raises(InputError):
            parse_toyfaces_spec(bad)
