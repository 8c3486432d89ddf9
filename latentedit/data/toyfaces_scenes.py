"""toyfaces scenes: a toyfaces face placed into a larger textured canvas, with exact ground truth.

A scene is a pure function of ``(seed, index, canvas, face_size, variant)``:

* the face is ``toyfaces.sample_params(seed, index)`` (or a counterfactual of it, see
  :func:`render_counterfactual_scene`);
* the placement and the background are drawn from two random streams seeded by
  ``(seed, index, variant)`` and a stream tag, independent of the toyfaces attribute and nuisance
  streams, in a fixed order that never looks at the attributes or at ``canvas``. So a counterfactual
  scene has the same placement and background, and the same scene at another canvas size is the same
  layout scaled (only its resolution changes).

Placement: the face render **including its own background** is a square tile. It is rotated by
``angle_deg`` uniform in [-30, 30] (counter-clockwise as seen on screen, i.e. with y pointing down),
its side is ``face_size`` canvas pixels (drawn uniform in [25 %, 60 %] of ``canvas`` unless given),
and its centre is drawn uniformly among the positions where **the whole rotated tile lies inside the
canvas** (always possible: the largest tile at 30 degrees spans 0.6 * (cos 30 + sin 30) = 0.82 of
the canvas). So every landmark is inside the canvas too.

Rendering: the face is rendered at ``render_size``, the placed side rounded up to a power of two
(at least 64, at most 1024), so that it is only ever downscaled. It is first resized with Lanczos
(anti-aliased) to ``ceil(face_size)`` pixels, then rotated, scaled by the remaining factor (in
(0.98, 1]) and shifted onto the canvas with bicubic resampling. The tile is composited with a
feathered alpha: 0 on the tile's outer pixel ring, rising linearly to 1 over ``feather`` tile pixels,
so the square's edge is soft and no pixel outside the tile is touched. ``Scene.alpha`` is that
weight per canvas pixel (exactly 0 outside the tile).

Coordinates are continuous image coordinates: pixel (column c, row r) covers ``[c, c+1) x [r, r+1)``
(Pillow's convention; see :func:`latentedit.data.toyfaces.face_landmarks`). ``Scene.affine`` is the
exact 2x3 map from face-render coordinates to canvas coordinates: ``canvas_xy = A[:, :2] @ xy + A[:, 2]``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from latentedit.data import toyfaces
from latentedit.errors import InputError

# Bumped whenever a change to placement, background or compositing changes any scene pixel.
SCENE_VERSION = 1
MAX_ANGLE_DEG = 30.0
FACE_FRACTION = (0.25, 0.60)  # tile side as a fraction of the canvas, when face_size is not given
CANVAS_RANGE = (64, 1536)  # 0.6 * 1536 < 1024, the largest face render
MIN_FACE_SIZE = 16
MANIFEST_NAME = "scenes.json"
IMAGE_DIR = "scenes"

# Random-stream tags, distinct from toyfaces' attribute (0x41) and nuisance (0x4E) streams.
_PLACEMENT_STREAM = 0x50
_BACKGROUND_STREAM = 0x42
# Rotated by up to 30 degrees, a square of side s spans s * (cos 30 + sin 30) along each axis.
_WORST_SPAN = math.cos(math.radians(MAX_ANGLE_DEG)) + math.sin(math.radians(MAX_ANGLE_DEG))


# eq=False: the fields hold numpy arrays, for which a generated == would be ambiguous; compare to_json().
@dataclass(frozen=True, eq=False)
class Placement:
    """Where the face tile goes. All lengths in canvas pixels, positions in continuous coordinates.

    ``angle_deg``: counter-clockwise rotation on screen, in [-30, 30]. ``face_size``: side of the placed
    tile. ``render_size``: side of the face render (a power of two >= ``face_size``). ``scale``:
    canvas pixels per render pixel (``face_size / render_size``, <= 1). ``centre``: ``(x, y)`` of the
    tile centre. ``offset``: ``centre - canvas / 2``, the shift from the canvas centre. ``affine``:
    float64 ``[2, 3]`` map from render to canvas coordinates.
    """

    canvas: int
    angle_deg: float
    face_size: float
    render_size: int
    scale: float
    centre: tuple[float, float]
    offset: tuple[float, float]
    affine: np.ndarray

    def to_json(self) -> dict:
        """A strict-JSON dict of the placement (the affine as a nested ``[2][3]`` list)."""
        return {"angle_deg": self.angle_deg, "face_size": self.face_size, "render_size": self.render_size,
                "scale": self.scale, "centre": list(self.centre), "offset": list(self.offset),
                "affine": self.affine.tolist()}


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered scene.

    ``image``: uint8 ``[canvas, canvas, 3]``. ``landmarks``: float64 ``[5, 2]`` ``(x, y)`` in canvas
    coordinates, rows in ``toyfaces.LANDMARK_NAMES`` order; ``landmarks_render``: the same points in
    face-render coordinates (``landmarks == affine @ [landmarks_render, 1]`` exactly, up to float
    rounding). ``alpha``: float32 ``[canvas, canvas]`` compositing weight of the face tile in [0, 1],
    exactly 0 outside the tile. ``params``: the face drawn (after ``changes``).
    """

    seed: int
    index: int
    variant: int
    changes: Mapping[str, int]
    params: toyfaces.FaceParams
    placement: Placement
    image: np.ndarray
    alpha: np.ndarray
    landmarks: np.ndarray
    landmarks_render: np.ndarray

    def to_json(self) -> dict:
        """Strict-JSON ground truth: ids, landmarks, placement and attributes (no pixels)."""
        return {
            "dataset": "latentedit.toyfaces_scenes",
            "renderer_version": toyfaces.RENDERER_VERSION,
            "scene_version": SCENE_VERSION,
            "seed": self.seed,
            "index": self.index,
            "variant": self.variant,
            "canvas": self.placement.canvas,
            "coordinates": "continuous (x, y): pixel (column c, row r) covers [c, c+1) x [r, r+1)",
            "landmark_names": list(toyfaces.LANDMARK_NAMES),
            "landmarks": self.landmarks.tolist(),
            "landmarks_render": self.landmarks_render.tolist(),
            "placement": self.placement.to_json(),
            "attributes": toyfaces.attributes(self.params),
            "changes": {name: int(value) for name, value in self.changes.items()},
        }


def _check_ids(seed: int, index: int, variant: int) -> None:
    for name, value in (("seed", seed), ("index", index), ("variant", variant)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise InputError(f"toyfaces scene {name} must be an integer >= 0, got {value!r}")


def _check_canvas(canvas: int) -> None:
    low, high = CANVAS_RANGE
    if not isinstance(canvas, (int, np.integer)) or isinstance(canvas, bool) or not low <= canvas <= high:
        raise InputError(f"scene canvas must be an integer in [{low}, {high}], got {canvas!r}")


def max_face_size(canvas: int) -> int:
    """Largest ``face_size`` for ``canvas``: a tile rotated by 30 degrees must still fit inside."""
    return int(math.floor(canvas / _WORST_SPAN))


def scene_placement(seed: int, index: int, canvas: int = 256, face_size: float | None = None,
                    variant: int = 0) -> Placement:
    """The placement of scene ``(seed, index, variant)`` on a ``canvas``-px canvas (no rendering; cheap).

    ``face_size`` (canvas pixels, in ``[16, max_face_size(canvas)]``) fixes the tile side instead of the
    drawn one; the angle and position draws are the same either way. Raises :class:`InputError` for
    bad arguments.
    """
    _check_ids(seed, index, variant)
    _check_canvas(canvas)
    # Four uniforms in a fixed order, used whatever face_size is, so giving it changes nothing else.
    u_angle, u_size, u_x, u_y = np.random.default_rng([int(seed), int(index), int(variant),
                                                       _PLACEMENT_STREAM]).random(4).tolist()
    if face_size is None:
        low, high = FACE_FRACTION
        side = canvas * (low + (high - low) * u_size)
    else:
        if isinstance(face_size, bool) or not isinstance(face_size, (int, float, np.integer, np.floating)) or \
                not MIN_FACE_SIZE <= face_size <= max_face_size(canvas):
            raise InputError(f"scene face_size must be in [{MIN_FACE_SIZE}, {max_face_size(canvas)}] for a "
                             f"{canvas} px canvas, got {face_size!r}")
        side = float(face_size)
    angle_deg = (2.0 * u_angle - 1.0) * MAX_ANGLE_DEG
    angle = math.radians(angle_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    # Half the axis-aligned span of the rotated tile: its centre must stay that far from every edge.
    half_span = 0.5 * side * (abs(cos) + abs(sin))
    centre_x = half_span + (canvas - 2.0 * half_span) * u_x
    centre_y = half_span + (canvas - 2.0 * half_span) * u_y
    render_size = int(min(1024, max(64, 2 ** math.ceil(math.log2(side)))))
    scale = side / render_size
    # Counter-clockwise on screen with y down: (1, 0) goes to (cos, -sin).
    linear = scale * np.array([[cos, sin], [-sin, cos]])
    translation = np.array([centre_x, centre_y]) - linear @ np.array([render_size / 2.0, render_size / 2.0])
    affine = np.concatenate([linear, translation[:, None]], axis=1)
    return Placement(canvas=int(canvas), angle_deg=float(angle_deg), face_size=float(side),
                     render_size=render_size, scale=float(scale), centre=(float(centre_x), float(centre_y)),
                     offset=(float(centre_x - canvas / 2.0), float(centre_y - canvas / 2.0)), affine=affine)


def scene_background(seed: int, index: int, canvas: int = 256, variant: int = 0) -> np.ndarray:
    """The textured background of scene ``(seed, index, variant)``: float32 ``[canvas, canvas, 3]`` in [0, 255].

    Value noise (random grids of 3, 6, 12 and 24 cells, bicubic-upsampled, weights halving per octave)
    blends two random colours, overlaid with faint stripes of random direction and frequency; every
    draw is made at a fixed grid size, so the texture is the same picture at every canvas size.
    """
    _check_ids(seed, index, variant)
    _check_canvas(canvas)
    rng = np.random.default_rng([int(seed), int(index), int(variant), _BACKGROUND_STREAM])
    colours = rng.random((2, 3))
    stripe_angle, stripe_frequency, stripe_phase, stripe_strength = rng.random(4).tolist()
    grids = [rng.random((cells + 1, cells + 1)).astype(np.float32) for cells in (3, 6, 12, 24)]
    field = np.zeros((canvas, canvas), dtype=np.float32)
    for octave, grid in enumerate(grids):
        upsampled = Image.fromarray(grid, mode="F").resize((canvas, canvas), Image.BICUBIC)
        field += np.asarray(upsampled, dtype=np.float32) * (0.5 ** octave)
    field = np.clip(field / sum(0.5 ** k for k in range(len(grids))), 0.0, 1.0)
    # Muted colours (value 0.3..0.8) so that the face tile stays the most salient thing in the scene.
    low = 255.0 * (0.3 + 0.5 * colours[0])
    high = 255.0 * (0.3 + 0.5 * colours[1])
    image = low[None, None, :] + (high - low)[None, None, :] * field[:, :, None]
    axis = (np.arange(canvas, dtype=np.float32) + 0.5) / canvas
    direction = math.pi * stripe_angle
    ramp = math.cos(direction) * axis[None, :] + math.sin(direction) * axis[:, None]
    stripes = np.sin(2 * math.pi * (4.0 + 12.0 * stripe_frequency) * ramp + 2 * math.pi * stripe_phase)
    image = image + (6.0 + 18.0 * stripe_strength) * stripes[:, :, None]
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def _tile_alpha(side: int, feather: float) -> np.ndarray:
    """Feathered square mask ``[side, side]`` float32: 0 on the outer pixel ring, 1 deeper than ``feather``."""
    centres = np.arange(side, dtype=np.float32) + 0.5
    distance = np.minimum(centres, side - centres)  # pixel centre to the nearer edge, per axis
    edge = np.minimum(distance[None, :], distance[:, None])
    # Zero on the outermost ring so that interpolation never spreads the tile beyond its square.
    return np.clip((edge - 0.5) / feather, 0.0, 1.0).astype(np.float32)


def _warp(image: Image.Image, tile_affine: np.ndarray, canvas: int, resample) -> Image.Image:
    # Pillow's transform wants the inverse map, canvas -> tile, as (a, b, c, d, e, f).
    full = np.vstack([tile_affine, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2].ravel().tolist()
    return image.transform((canvas, canvas), Image.AFFINE, inverse, resample=resample)


def _render(seed: int, index: int, params: toyfaces.FaceParams, changes: Mapping[str, int], canvas: int,
            face_size: float | None, variant: int) -> Scene:
    placement = scene_placement(seed, index, canvas, face_size, variant)
    background = scene_background(seed, index, canvas, variant)
    face = Image.fromarray(toyfaces.render(params, placement.render_size))
    tile_side = int(math.ceil(placement.face_size - 1e-9))
    tile = face.resize((tile_side, tile_side), Image.LANCZOS)
    # Render -> tile is a pure scale, so the tile -> canvas map is the placement with that scale undone.
    to_tile = tile_side / placement.render_size
    tile_affine = placement.affine.copy()
    tile_affine[:, :2] /= to_tile
    warped = np.asarray(_warp(tile, tile_affine, canvas, Image.BICUBIC), dtype=np.float32)
    feather = max(1.5, 0.03 * tile_side)
    alpha_tile = Image.fromarray(_tile_alpha(tile_side, feather), mode="F")
    alpha = np.clip(np.asarray(_warp(alpha_tile, tile_affine, canvas, Image.BILINEAR), dtype=np.float32), 0, 1)
    # background + alpha * (face - background): exactly the background wherever alpha is 0.
    composite = background + alpha[:, :, None] * (warped - background)
    image = np.clip(composite + 0.5, 0, 255).astype(np.uint8)
    landmarks_render = toyfaces.face_landmarks(params, placement.render_size)
    landmarks = landmarks_render @ placement.affine[:, :2].T + placement.affine[:, 2]
    return Scene(seed=int(seed), index=int(index), variant=int(variant), changes=dict(changes), params=params,
                 placement=placement, image=image, alpha=alpha, landmarks=landmarks,
                 landmarks_render=landmarks_render)


def render_scene(seed: int, index: int, canvas: int = 256, face_size: float | None = None,
                 variant: int = 0) -> Scene:
    """Render scene ``(seed, index, variant)``: face ``index`` of toyfaces data set ``seed`` placed on a
    ``canvas``-px textured background (see the module docstring for the placement rule).

    ``variant`` (>= 0) selects another placement and background for the same face. ``face_size`` fixes
    the tile side in canvas pixels. Deterministic: the same arguments give identical pixels.
    """
    return _render(seed, index, toyfaces.sample_params(seed, index), {}, canvas, face_size, variant)


def render_counterfactual_scene(seed: int, index: int, changes: Mapping[str, int], canvas: int = 256,
                                face_size: float | None = None, variant: int = 0) -> Scene:
    """Scene ``(seed, index, variant)`` with the face's attributes changed (``FaceParams.with_attributes``).

    Placement and background are those of :func:`render_scene` with the same arguments, so every pixel
    where ``alpha == 0`` (outside the tile) is identical to it; the landmarks are the counterfactual
    face's (mouth corners move with ``Smiling`` / ``Mouth_Slightly_Open``).
    """
    changes = dict(changes)
    params = toyfaces.sample_params(seed, index).with_attributes(**changes)
    return _render(seed, index, params, changes, canvas, face_size, variant)


def scene_record(seed: int, index: int, canvas: int = 256, variant: int = 0) -> dict:
    """``render_scene(...).to_json()`` without rendering any pixel (placement and landmarks are cheap)."""
    params = toyfaces.sample_params(seed, index)
    placement = scene_placement(seed, index, canvas, None, variant)
    landmarks_render = toyfaces.face_landmarks(params, placement.render_size)
    landmarks = landmarks_render @ placement.affine[:, :2].T + placement.affine[:, 2]
    empty = np.zeros((0, 0), dtype=np.float32)
    return Scene(seed=int(seed), index=int(index), variant=int(variant), changes={}, params=params,
                 placement=placement, image=empty, alpha=empty, landmarks=landmarks,
                 landmarks_render=landmarks_render).to_json()


def _render_chunk(job: tuple[int, int, str, list[tuple[int, str]]]) -> int:
    from latentedit.data.toyfaces_export import _write_png_quick

    seed, canvas, image_dir, items = job
    for index, name in items:
        _write_png_quick(Path(image_dir) / name, render_scene(seed, index, canvas).image)
    return len(items)


def export_scenes(out_dir: str | os.PathLike, count: int, canvas: int = 256, seed: int = toyfaces.TRAIN_SEED,
                  start: int = 0, workers: int = 1, progress: bool = True) -> dict:
    """Render scenes ``start .. start + count - 1`` of data set ``seed`` into ``out_dir`` (resumable).

    Layout: ``DIR/scenes/{k:06d}.png`` (``k`` from 1; image ``k`` is scene ``start + k - 1``, variant 0)
    and ``DIR/scenes.json``: the manifest (dataset, versions, seed, start, count, canvas, landmark and
    attribute names) plus ``"scenes"``, one :meth:`Scene.to_json` record per image with ``"file"``
    added. Images already present are skipped; ``scenes.json`` is written last, atomically, recomputed
    from the parameters. Returns the manifest (without the records) with ``rendered``, ``skipped`` and
    ``out_dir`` added.
    """
    import json

    from latentedit.data.toyfaces_export import image_name, render_missing
    from latentedit.io import write_json

    if count < 1:
        raise InputError(f"--n must be at least 1, got {count}")
    if seed < 0 or start < 0:
        raise InputError(f"--seed and --start must be >= 0, got seed={seed}, start={start}")
    _check_canvas(canvas)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder")
    manifest = {"dataset": "latentedit.toyfaces_scenes", "renderer_version": toyfaces.RENDERER_VERSION,
                "scene_version": SCENE_VERSION, "seed": int(seed), "start": int(start), "count": int(count),
                "canvas": int(canvas), "landmark_names": list(toyfaces.LANDMARK_NAMES),
                "attribute_names": list(toyfaces.ATTRIBUTE_NAMES)}
    path = out_dir / MANIFEST_NAME
    if path.exists():
        # Resuming into a folder of other scenes would mix two data sets under one scenes.json.
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{path} is unreadable ({error}); delete it or choose another output folder") from error
        keys = ("seed", "start", "canvas", "renderer_version", "scene_version")
        different = [key for key in keys if previous.get(key) != manifest[key]]
        if different:
            details = ", ".join(f"{key}={previous.get(key)!r} (now {manifest[key]!r})" for key in different)
            raise InputError(f"{out_dir} already holds different toyfaces scenes ({details}); "
                             "use another output folder or delete it")
    image_dir = out_dir / IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [image_name(k, count) for k in range(1, count + 1)]
    rendered = render_missing(image_dir, names, start, (seed, canvas), _render_chunk, chunk=16, workers=workers,
                              progress=progress, desc=f"toyfaces scenes {canvas}px")
    records = [{"file": f"{IMAGE_DIR}/{name}", **scene_record(seed, start + k, canvas)}
               for k, name in enumerate(names)]
    write_json(path, {**manifest, "scenes": records})
    return {**manifest, "rendered": rendered, "skipped": count - rendered, "out_dir": str(out_dir)}
