"""toyfaces: determinism, sizes, counterfactuals, attribute statistics, exports and the CLI."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentedit.data import toyfaces
from latentedit.data.toyfaces import (ATTRIBUTE_NAMES, EXPECTED_FREQUENCIES, HAIR_COLOURS, attribute_vector,
                                      render, render_face, sample_params)
from latentedit.data.toyfaces_export import export_toyfaces, read_folder_attributes
from latentedit.errors import InputError

N_STATS = 2000


@pytest.fixture(scope="module")
def attribute_table() -> np.ndarray:
    """Attributes of faces 0..N_STATS-1 of the training seed, ``[N, A]`` 0/1 (params only, no rendering)."""
    return np.stack([attribute_vector(sample_params(toyfaces.TRAIN_SEED, i)) for i in range(N_STATS)])


def column(table: np.ndarray, name: str) -> np.ndarray:
    return table[:, ATTRIBUTE_NAMES.index(name)].astype(bool)


def test_same_seed_and_index_give_identical_pixels():
    first = render_face(0, 17)
    assert np.array_equal(first, render_face(0, 17))
    assert not np.array_equal(first, render_face(0, 18))
    assert not np.array_equal(first, render_face(1, 17))
    assert sample_params(0, 17) == sample_params(0, 17)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_sizes_shape_dtype_and_same_picture(size):
    pixels = render_face(0, 3, size)
    assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
    # Every size draws the same picture: downscaled to 64 px it matches the 64 px render closely.
    small = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.BOX), dtype=np.float64)
    assert np.abs(small - render_face(0, 3, 64).astype(np.float64)).mean() < 4.0


def test_render_rejects_bad_sizes_and_indices():
    with pytest.raises(InputError):
        render(sample_params(0, 0), size=8)
    with pytest.raises(InputError):
        sample_params(0, -1)


def _face_with(predicate, seed=0):
    return next(sample_params(seed, i) for i in range(5000) if predicate(sample_params(seed, i).attributes))


def test_glasses_counterfactual_changes_only_the_eye_region():
    params = _face_with(lambda a: not a["Eyeglasses"] and not a["Wearing_Hat"])
    with_glasses = params.with_attributes(Eyeglasses=1)
    assert with_glasses.nuisance == params.nuisance
    assert {k: v for k, v in with_glasses.attributes.items() if k != "Eyeglasses"} == \
           {k: v for k, v in params.attributes.items() if k != "Eyeglasses"}
    before, after = render(params), render(with_glasses)
    changed = np.abs(before.astype(int) - after.astype(int)).max(axis=2) > 0
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 60  # bold rims: many pixels change at 64 px
    # Confined to a horizontal band around the eyes; corners and the bottom half untouched.
    assert rows.min() >= 18 and rows.max() <= 42
    assert not changed[:12, :12].any() and not changed[-12:, :].any()
    assert changed.mean() < 0.15


def test_counterfactual_without_changes_is_the_same_image():
    params = sample_params(0, 42)
    assert np.array_equal(render(params.with_attributes()), render(params))


@pytest.mark.parametrize("name", ["Smiling", "Male", "Young", "Wearing_Lipstick", "Wearing_Hat", "Bangs",
                                  "Wavy_Hair", "Mustache", "No_Beard", "Pale_Skin", "Rosy_Cheeks",
                                  "Mouth_Slightly_Open", "Bald"])
def test_every_attribute_changes_pixels_but_not_the_background_corner(name):
    params = _face_with(lambda a: not a["Bald"] and not a["Bangs"])
    flipped = params.with_attributes(**{name: 1 - params.attributes[name]})
    before, after = render(params), render(flipped)
    assert not np.array_equal(before, after), f"{name} has no visible effect"
    assert np.array_equal(before[:6, :6], after[:6, :6])


def test_setting_a_hair_colour_clears_the_others():
    params = _face_with(lambda a: a["Black_Hair"])
    blond = params.with_attributes(Blond_Hair=1)
    assert [blond.attributes[n] for n in HAIR_COLOURS] == [0, 1, 0, 0]
    with pytest.raises(InputError, match="exactly one hair colour"):
        params.with_attributes(Black_Hair=0)
    with pytest.raises(InputError, match="only one hair colour"):
        params.with_attributes(Blond_Hair=1, Gray_Hair=1)
    # The four hair colours render differently from one another.
    renders = [render(params.with_attributes(**{n: 1})).astype(int) for n in HAIR_COLOURS]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(renders[i] - renders[j]).mean() > 2.0


def test_bald_clears_bangs_and_rejects_explicit_bangs():
    params = _face_with(lambda a: a["Bangs"])
    bald = params.with_attributes(Bald=1)
    assert bald.attributes["Bangs"] == 0
    with pytest.raises(InputError, match="bald"):
        bald.with_attributes(Bangs=1)
    assert bald.with_attributes(Bald=0, Bangs=1).attributes["Bangs"] == 1


def test_with_attributes_rejects_unknown_names_and_bad_values():
    params = sample_params(0, 0)
    with pytest.raises(InputError, match="unknown"):
        params.with_attributes(Blonde_Hair=1)
    with pytest.raises(InputError, match="0 or 1"):
        params.with_attributes(Smiling=2)


def test_exactly_one_hair_colour_everywhere(attribute_table):
    colours = attribute_table[:, [ATTRIBUTE_NAMES.index(n) for n in HAIR_COLOURS]]
    assert (colours.sum(axis=1) == 1).all()
    assert not (column(attribute_table, "Bald") & column(attribute_table, "Bangs")).any()


def test_attribute_frequencies_match_the_documented_values(attribute_table):
    measured = attribute_table.mean(axis=0)
    for name, frequency in zip(ATTRIBUTE_NAMES, measured):
        assert abs(frequency - EXPECTED_FREQUENCIES[name]) < 0.035, (name, frequency)
        if name not in ("No_Beard", "Young"):  # CelebA polarity: most faces have no beard and are young
            assert 0.08 <= frequency <= 0.6, (name, frequency)
    for name in HAIR_COLOURS:
        assert measured[ATTRIBUTE_NAMES.index(name)] >= 0.15


def test_attribute_correlations(attribute_table):
    male, young = column(attribute_table, "Male"), column(attribute_table, "Young")
    blond, gray = column(attribute_table, "Blond_Hair"), column(attribute_table, "Gray_Hair")
    bald = column(attribute_table, "Bald")
    assert blond[~male].mean() > blond[male].mean() + 0.1
    assert gray[~young].mean() > gray[young].mean() + 0.2
    assert not (column(attribute_table, "Mustache") & ~male).any()
    assert not (~column(attribute_table, "No_Beard") & ~male).any()
    assert not (column(attribute_table, "Wearing_Lipstick") & male).any()
    assert not (bald & ~male).any()
    assert bald[male & ~young].mean() > bald[male & young].mean() + 0.2


def test_nuisance_is_drawn_independently_of_attributes():
    # Nuisance draws come from their own stream: faces with opposite attributes share the distribution.
    params = [sample_params(0, i) for i in range(600)]
    male = np.array([p.attributes["Male"] for p in params], dtype=bool)
    for field in ("hair_length", "skin_tone", "background_hue", "tilt_deg"):
        values = np.array([getattr(p.nuisance, field) for p in params])
        spread = values.std()
        assert abs(values[male].mean() - values[~male].mean()) < 0.3 * spread, field
    assert all(dataclasses.is_dataclass(p.nuisance) for p in params[:3])


def test_dataset_items():
    torch = pytest.importorskip("torch")
    dataset = toyfaces.ToyFacesDataset(seed=1, start=10, count=4, size=32)
    assert len(dataset) == 4
    image, attrs = dataset[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    expected = render_face(1, 12, 32)
    assert np.array_equal(((image.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), expected)
    assert attrs.tolist() == attribute_vector(sample_params(1, 12)).tolist()
    with pytest.raises(IndexError):
        dataset[4]


def read_celeba_minimal(path):
    """A CelebA reader as other projects write it: split every line on whitespace."""
    lines = open(path).read().split("\n")
    count = int(lines[0])
    names = lines[1].split()
    rows = [line.split() for line in lines[2:2 + count]]
    return count, names, {row[0]: [int(v) for v in row[1:]] for row in rows}


def test_celeba_export_parses_back(tmp_path):
    result = export_toyfaces(tmp_path, count=12, size=32, seed=1, start=5, fmt="celeba", progress=False)
    assert result["rendered"] == 12
    count, names, rows = read_celeba_minimal(tmp_path / "list_attr_celeba.txt")
    assert count == 12 and tuple(names) == ATTRIBUTE_NAMES
    assert list(rows) == [f"{k:06d}.png" for k in range(1, 13)]
    for k, (filename, values) in enumerate(rows.items()):
        expected = attribute_vector(sample_params(1, 5 + k)) * 2 - 1
        assert values == expected.astype(int).tolist()
        pixels = np.asarray(Image.open(tmp_path / "img_align_celeba" / filename).convert("RGB"))
        assert np.array_equal(pixels, render_face(1, 5 + k, 32))
    # CelebA layout: values padded to two characters, one space apart.
    third_line = (tmp_path / "list_attr_celeba.txt").read_text().splitlines()[2]
    fields = third_line[len("000001.png"):]
    assert third_line.startswith("000001.png ") and len(fields) == 3 * len(ATTRIBUTE_NAMES)
    assert all(fields[i:i + 3] in (" -1", "  1") for i in range(0, len(fields), 3))


def test_folder_export(tmp_path):
    export_toyfaces(tmp_path, count=5, size=32, fmt="folder", progress=False)
    names, filenames, values = read_folder_attributes(tmp_path / "attributes.csv")
    assert tuple(names) == ATTRIBUTE_NAMES and filenames == [f"{k:06d}.png" for k in range(1, 6)]
    assert values[3].tolist() == attribute_vector(sample_params(0, 3)).astype(int).tolist()
    assert all((tmp_path / "images" / name).is_file() for name in filenames)


def test_export_resumes_after_a_partial_run(tmp_path):
    export_toyfaces(tmp_path, count=8, size=32, fmt="celeba", progress=False)
    image_dir = tmp_path / "img_align_celeba"
    reference = {p.name: p.read_bytes() for p in image_dir.iterdir()}
    for name in ("000002.png", "000007.png", "000008.png"):
        (image_dir / name).unlink()
    (tmp_path / "list_attr_celeba.txt").unlink()
    (image_dir / ".000002.png.123.tmp").write_bytes(b"half an image")  # left by a killed run
    result = export_toyfaces(tmp_path, count=8, size=32, fmt="celeba", workers=2, progress=False)
    assert (result["rendered"], result["skipped"]) == (3, 5)
    assert {p.name: p.read_bytes() for p in image_dir.iterdir()} == reference
    assert read_celeba_minimal(tmp_path / "list_attr_celeba.txt")[0] == 8


def test_export_refuses_a_folder_holding_another_export(tmp_path):
    export_toyfaces(tmp_path, count=2, size=32, progress=False)
    with pytest.raises(InputError, match="different toyfaces export"):
        export_toyfaces(tmp_path, count=2, size=64, progress=False)


def _cli(args):
    from latentedit.cli.main import cli

    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_cli_single_counterfactual_render(tmp_path):
    out = tmp_path / "face.png"
    code, text = _cli(["data", "toyfaces", "--seed", "0", "--index", "7", "--set", "Blond_Hair=1",
                       "--set", "Eyeglasses=0", "--size", "64", "-o", str(out)])
    assert code == 0, text
    expected = render(sample_params(0, 7).with_attributes(Blond_Hair=1, Eyeglasses=0), 64)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected)


@pytest.mark.parametrize("args, message", [
    (["--index", "3", "--set", "Blonde_Hair=1"], "unknown toyfaces attribute 'Blonde_Hair'"),
    (["--index", "3", "--set", "Smiling=2"], "must be 0 or 1"),
    (["--index", "3", "--set", "Smiling"], "expected NAME=0|1"),
    (["--set", "Smiling=1", "--n", "3"], "needs --index"),
    ([], "give --n"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    code, text = _cli(["data", "toyfaces", "-o", str(tmp_path / "x.png"), *args])
    assert code == 2
    assert message in text and "Traceback" not in text


def test_cli_export(tmp_path):
    code, text = _cli(["data", "toyfaces", "--n", "3", "--size", "32", "--quiet", "--workers", "1",
                       "-o", str(tmp_path / "set")])
    assert code == 0, text
    assert read_celeba_minimal(tmp_path / "set" / "list_attr_celeba.txt")[0] == 3
