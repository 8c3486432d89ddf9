"""Reading user images: every Pillow mode, EXIF orientation, centre crop, and bad files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentedit.errors import InputError
from latentedit.image_files import list_images, load_image_tensor


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16", "LA", "1"])
def test_every_mode_loads_as_rgb_in_range(tmp_path, mode):
    rgb = Image.fromarray(np.random.RandomState(0).randint(0, 255, (20, 30, 3), dtype=np.uint8))
    image = rgb.convert("L").convert(mode) if mode in ("I;16", "1", "LA") else rgb.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    tensor, info = load_image_tensor(path, 16)
    assert tensor.shape == (3, 16, 16)
    assert -1.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    assert info["center_cropped"] and info["original_size"] == [30, 20]


def test_sixteen_bit_uses_full_range(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(path)
    tensor, _ = load_image_tensor(path, 8)
    assert float(tensor.min()) == pytest.approx(1.0)


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 20, 3), np.uint8)
    array[:, :10] = 255  # left half white
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    tensor, info = load_image_tensor(path, 10)
    assert info["original_size"] == [10, 20]  # width and height swapped by the rotation
    top, bottom = float(tensor[:, :3].mean()), float(tensor[:, -3:].mean())
    assert top > 0.5 > bottom  # the white half is now on top


def test_alpha_kept_when_asked(tmp_path):
    array = np.zeros((8, 8, 4), np.uint8)
    array[:4, :, 3] = 255
    path = tmp_path / "mask.png"
    Image.fromarray(array, "RGBA").save(path)
    tensor, info = load_image_tensor(path, 8, keep_alpha=True)
    assert tensor.shape == (4, 8, 8) and info["has_alpha"]
    assert float(tensor[3, :4].min()) == 1.0 and float(tensor[3, 4:].max()) == 0.0


def test_bad_files_give_input_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:2000])
    for name, message in [("empty.png", "empty"), ("text.png", "not an image"), ("truncated.png", "corrupt"),
                          ("missing.png", "does not exist")]:
        with pytest.raises(InputError, match=message):
            load_image_tensor(tmp_path / name, 8)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 Mpx, a few kB on disk
    with pytest.raises(InputError, match="too large|above the limit"):
        load_image_tensor(path, 8)


def test_list_images_expands_folders(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    with pytest.raises(InputError):
        list_images([])


def test_list_images_searches_subfolders_in_a_fixed_order(tmp_path):
    for relative in ("z.png", "sub/b/2.png", "sub/a.png", "sub/b/1.png", ".git/x.png", "sub/.y.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images([tmp_path])]
    assert found == ["sub/a.png", "sub/b/1.png", "sub/b/2.png", "z.png"]


def test_images_below_the_minimum_size_are_refused(tmp_path):
    from latentedit.image_files import MIN_IMAGE_SIDE

    for size in [(1, 1), (MIN_IMAGE_SIDE - 1, 64)]:
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        Image.new("RGB", size).save(path)
        with pytest.raises(InputError, match=f"at least {MIN_IMAGE_SIDE} px on the shorter side"):
            load_image_tensor(path, 16)
    Image.new("RGB", (MIN_IMAGE_SIDE, 40)).save(tmp_path / "ok.png")
    assert load_image_tensor(tmp_path / "ok.png", 16, warn=pytest.fail)[0].shape == (3, 16, 16)
