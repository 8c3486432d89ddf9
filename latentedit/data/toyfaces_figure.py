"""The README figure of toyfaces: labelled samples plus a counterfactual strip of one face."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from latentedit.data import toyfaces
from latentedit.io import save_png

# Short labels for the figure; hair colour, sex and age are always shown.
_SHORT = {
    "Bald": "bald", "Bangs": "bangs", "Eyeglasses": "glasses", "Mouth_Slightly_Open": "open",
    "Mustache": "mustache", "Pale_Skin": "pale", "Rosy_Cheeks": "rosy", "Smiling": "smile",
    "Wavy_Hair": "wavy", "Wearing_Hat": "hat", "Wearing_Lipstick": "lipstick",
}

# (label, overrides) of the counterfactual strip; the first entry is the unchanged face.
COUNTERFACTUALS: tuple[tuple[str, Mapping[str, int]], ...] = (
    ("original", {}),
    ("Blond_Hair=1", {"Blond_Hair": 1}),
    ("Black_Hair=1", {"Black_Hair": 1}),
    ("Gray_Hair=1", {"Gray_Hair": 1}),
    ("Eyeglasses=1", {"Eyeglasses": 1}),
    ("Smiling=1", {"Smiling": 1}),
    ("Male=1", {"Male": 1}),
    ("Male=1,No_Beard=0", {"Male": 1, "No_Beard": 0}),
)


def short_labels(attrs: Mapping[str, int]) -> list[str]:
    """Short text lines describing ``attrs``: hair colour, sex, age; then the other attributes that are set,
    wrapped to lines of at most 20 characters."""
    import textwrap

    colour = next(name for name in toyfaces.HAIR_COLOURS if attrs[name]).split("_")[0].lower()
    first = f"{colour} {'M' if attrs['Male'] else 'F'} {'young' if attrs['Young'] else 'old'}"
    rest = [short for name, short in _SHORT.items() if attrs[name]]
    if not attrs["No_Beard"]:
        rest.append("beard")
    return [first, *textwrap.wrap(" ".join(rest), 20)]


def _label_tiles(tiles: Sequence[np.ndarray], labels: Sequence[Sequence[str]], columns: int,
                 zoom: int, line_height: int = 12) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    size = tiles[0].shape[0] * zoom
    lines = max(len(lab) for lab in labels)
    cell_w, cell_h = size + 6, size + 6 + lines * line_height
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * cell_w + 6, rows * cell_h + 6), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        row, col = divmod(i, columns)
        x, y = 6 + col * cell_w, 6 + row * cell_h
        sheet.paste(Image.fromarray(tile).resize((size, size), Image.NEAREST), (x, y))
        for k, text in enumerate(label):
            draw.text((x, y + size + 1 + k * line_height), text, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def _plain_young_woman(attrs: Mapping[str, int]) -> bool:
    # A face on which every counterfactual of the strip is a visible change.
    return bool(attrs["Brown_Hair"] and not attrs["Male"] and attrs["Young"] and not attrs["Eyeglasses"]
                and not attrs["Wearing_Lipstick"] and not attrs["Mouth_Slightly_Open"]
                and not attrs["Smiling"] and not attrs["Wearing_Hat"] and not attrs["Bangs"])


def make_figure(seed: int = toyfaces.TRAIN_SEED, count: int = 16, size: int = 64, zoom: int = 2,
                counterfactual_index: int | None = None) -> np.ndarray:
    """The figure as ``[H, W, 3]`` uint8: ``count`` faces ``seed``/0.. at ``size`` px (upscaled ``zoom``x,
    nearest) with short attribute labels, then a strip of :data:`COUNTERFACTUALS` of one face (by default
    the first young woman with brown hair and no glasses, smile, lipstick, hat or bangs)."""
    tiles = [toyfaces.render_face(seed, i, size) for i in range(count)]
    labels = [short_labels(toyfaces.attributes(toyfaces.sample_params(seed, i))) for i in range(count)]
    samples = _label_tiles(tiles, labels, columns=8, zoom=zoom)
    if counterfactual_index is None:
        counterfactual_index = next(i for i in range(100_000)
                                    if _plain_young_woman(toyfaces.sample_params(seed, i).attributes))
    base = toyfaces.sample_params(seed, counterfactual_index)
    strip_tiles = [toyfaces.render(base.with_attributes(**dict(change)), size) for _, change in COUNTERFACTUALS]
    strip_labels = [[label.split(",")[0], (label.split(",") + [""])[1]] for label, _ in COUNTERFACTUALS]
    strip_labels[0] = ["original", f"index {counterfactual_index}"]
    strip = _label_tiles(strip_tiles, strip_labels, columns=len(COUNTERFACTUALS), zoom=zoom)
    width = max(samples.shape[1], strip.shape[1])
    gap = np.full((10, width, 3), 255, dtype=np.uint8)
    gap[4:6] = 160  # a thin rule between the samples and the counterfactual strip
    padded = [np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=255) for img in (samples, strip)]
    return np.concatenate([padded[0], gap, padded[1]], axis=0)


def save_figure(path: str | os.PathLike, **kwargs) -> None:
    """Write :func:`make_figure` (keyword arguments passed on) to ``path`` as PNG, atomically."""
    save_png(path, make_figure(**kwargs))
