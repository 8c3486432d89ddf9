"""Build the RGBA PULSE references in this folder from held-out toyfaces (deterministic).

    python examples/make_hair_references.py             # rewrites examples/*.rgba.png
    python examples/make_hair_references.py --count 300 --out-dir examples

Regions are found with exact toyfaces counterfactuals at 64 px and reduced to 16 x 16 (the default
model's 64 px / 4); colours are PULSE downscales (:func:`latentedit.pulse.pulse_downsample`) of renders:

* hair: the pixels that change between the same face rendered with ``Blond_Hair`` and with ``Black_Hair``;
* skin: the pixels that change when only the skin tone changes (``Pale_Skin`` off, ``skin_tone`` 0 vs 1);
* background: the pixels that change when only the background colour changes.

Written files (alpha 255 on constrained pixels, 0 elsewhere):

* ``blond_hair.rgba.png`` / ``black_hair.rgba.png``: "where hair usually is", the pixels of the upper half
  whose 4 x 4 block is on average at least half hair over ``count`` held-out faces (the lower half would
  pick up beards, which take the hair colour), coloured with the mean blond / black hair colour there.
  Nothing else is constrained.
* ``blond_hair_with_face.rgba.png`` / ``black_hair_with_face.rgba.png``: hair, skin and background of one
  plain frontal held-out face (:func:`template_index`), as in the seed post (fixing skin and background
  keeps the colour change on the hair), in the colours of its blond / black counterfactual. A toyfaces
  image matches each exactly (that counterfactual), so ``eps`` is reachable for a model of the data.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from latentedit.data import toyfaces
from latentedit.io import save_png
from latentedit.pulse.search import pulse_downsample

RENDER_SIZE = 64
REFERENCE_SIZE = 16
#: Mean hair coverage of a pixel's block for the hair-only references to constrain it.
HAIR_COVERAGE = 0.5
#: A block counts as inside a region (for one face) when at least this fraction of it is.
SOLID = 0.75


def _downscale(pixels: np.ndarray) -> np.ndarray:
    """``[64, 64, 3]`` uint8 -> ``[16, 16, 3]`` float64 in [0, 1] with the PULSE downsampler."""
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].double() / 255.0
    return pulse_downsample(tensor, RENDER_SIZE // REFERENCE_SIZE)[0].permute(1, 2, 0).numpy()


def _fraction(mask: np.ndarray) -> np.ndarray:
    """``[64, 64]`` bool -> ``[16, 16]`` float: the fraction of each 4 x 4 block inside the mask."""
    factor = RENDER_SIZE // REFERENCE_SIZE
    return mask.reshape(REFERENCE_SIZE, factor, REFERENCE_SIZE, factor).mean(axis=(1, 3))


def _changed(a: np.ndarray, b: np.ndarray, level: float) -> np.ndarray:
    return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=-1) > level


def _hair_pair(params: toyfaces.FaceParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blond and black counterfactual renders of a face, and its hair mask ``[64, 64]``."""
    blond = toyfaces.render(params.with_attributes(Blond_Hair=1), RENDER_SIZE)
    black = toyfaces.render(params.with_attributes(Black_Hair=1), RENDER_SIZE)
    return blond, black, _changed(blond, black, 40.0)


def hair_statistics(count: int = 300, seed: int = toyfaces.HELDOUT_SEED) -> dict[str, np.ndarray]:
    """Over faces ``0..count-1`` of ``seed``: ``coverage [16, 16]`` (mean hair fraction of each block, upper
    half only) and ``colour_blond`` / ``colour_black`` ``[16, 16, 3]`` in [0, 1] (mean downscaled colour over
    the faces whose block is at least :data:`SOLID` hair). Left-right mirrored averages (faces are symmetric
    in distribution)."""
    shape = (REFERENCE_SIZE, REFERENCE_SIZE)
    coverage, solid = np.zeros(shape), np.zeros(shape)
    sums = {"blond": np.zeros(shape + (3,)), "black": np.zeros(shape + (3,))}
    for index in range(count):
        blond, black, hair = _hair_pair(toyfaces.sample_params(seed, index))
        fraction = _fraction(hair)
        fraction[REFERENCE_SIZE // 2:] = 0.0
        inside = fraction >= SOLID
        coverage += fraction
        solid += inside
        sums["blond"][inside] += _downscale(blond)[inside]
        sums["black"][inside] += _downscale(black)[inside]

    def mirrored(array: np.ndarray) -> np.ndarray:
        return (array + array[:, ::-1]) / 2.0

    weight = np.maximum(mirrored(solid), 1e-9)[..., None]
    return {"coverage": mirrored(coverage) / count, "colour_blond": mirrored(sums["blond"]) / weight,
            "colour_black": mirrored(sums["black"]) / weight}


def template_index(seed: int = toyfaces.HELDOUT_SEED, limit: int = 10_000) -> int:
    """The first plain, frontal face of data set ``seed``: young, no beard, mustache, baldness, hat, glasses
    or bangs, tilt under 2 degrees and shift under 1 % of the image."""
    for index in range(limit):
        params = toyfaces.sample_params(seed, index)
        a, n = params.attributes, params.nuisance
        plain = a["No_Beard"] and a["Young"] and not any(a[k] for k in ("Mustache", "Bald", "Wearing_Hat",
                                                                           "Eyeglasses", "Bangs"))
        if plain and abs(n.tilt_deg) < 2.0 and abs(n.shift_x) < 0.01 and abs(n.shift_y) < 0.01:
            return index
    raise RuntimeError(f"no plain frontal face among the first {limit} of data set {seed}")


def template_regions(index: int, seed: int = toyfaces.HELDOUT_SEED) -> dict[str, np.ndarray]:
    """One face at 16 x 16: ``mask`` (bool: blocks at least :data:`SOLID` hair or skin, or at least 0.9
    background) and ``rgb_blond`` / ``rgb_black`` (``[16, 16, 3]``: downscales of its two counterfactuals)."""
    params = toyfaces.sample_params(seed, index)
    blond, black, hair = _hair_pair(params)
    unpale = dataclasses.replace(params, attributes={**params.attributes, "Pale_Skin": 0})
    light = dataclasses.replace(unpale, nuisance=dataclasses.replace(params.nuisance, skin_tone=0.0))
    dark = dataclasses.replace(unpale, nuisance=dataclasses.replace(params.nuisance, skin_tone=1.0))
    nuisance = params.nuisance
    recoloured = dataclasses.replace(params.with_attributes(Blond_Hair=1), nuisance=dataclasses.replace(
        nuisance, background_hue=(nuisance.background_hue + 0.5) % 1.0,
        background_value=1.0 - nuisance.background_value))
    skin = _changed(toyfaces.render(light, RENDER_SIZE), toyfaces.render(dark, RENDER_SIZE), 20.0)
    background = _changed(toyfaces.render(recoloured, RENDER_SIZE), blond, 8.0)
    mask = (_fraction(hair) >= SOLID) | (_fraction(skin) >= SOLID) | (_fraction(background) >= 0.9)
    return {"mask": mask, "rgb_blond": _downscale(blond), "rgb_black": _downscale(black)}


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    rgb = np.where(alpha[..., None], rgb, 0.0)
    return np.dstack([np.clip(np.round(rgb * 255.0), 0, 255), alpha * 255.0]).astype(np.uint8)


def build_references(stats: dict[str, np.ndarray], template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """File name -> ``[16, 16, 4]`` uint8 RGBA reference."""
    hair = stats["coverage"] >= HAIR_COVERAGE
    references = {}
    for colour in ("blond", "black"):
        references[f"{colour}_hair.rgba.png"] = _rgba(stats[f"colour_{colour}"], hair)
        references[f"{colour}_hair_with_face.rgba.png"] = _rgba(template[f"rgb_{colour}"], template["mask"])
    return references


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="Held-out faces averaged for the hair region.")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    index = template_index()
    print(f"template of the _with_face references: held-out face {index}")
    for name, pixels in build_references(hair_statistics(args.count), template_regions(index)).items():
        save_png(args.out_dir / name, pixels)
        print(f"wrote {args.out_dir / name}: {int((pixels[..., 3] > 0).sum())} constrained pixels")


if __name__ == "__main__":
    main()
