"""toyfaces: a procedural face data set with CelebA-named binary attributes and exact counterfactuals.

No face data can be downloaded where latentedit is developed, so the embedded default generator is
trained on faces rendered here. Every face is a pure function of ``(seed, index)``:

* :func:`sample_params` draws a :class:`FaceParams` from two independent random streams seeded by
  ``(seed, index)``: one for the binary attributes (with CelebA-like correlations), one for the
  continuous nuisance factors (face shape and size, skin tone, hair length/volume/shade, eyes, nose,
  mouth width, background colour and gradient, lighting, head shift/tilt/scale, colours of hats,
  glasses and clothes). The nuisance stream is drawn in a fixed order and never looks at the
  attributes, so :meth:`FaceParams.with_attributes` gives an exact counterfactual: the same person,
  with only what the changed attributes control redrawn.
* :func:`render` draws the face with Pillow at a supersampled size and box-downscales it (anti-aliased).
  Every attribute is drawn boldly enough to survive 64 px: rims, brows and mouth lines are >= 2 px wide
  at 64 px, hair, hats and beards are large solid regions, and the four hair colours are well separated.

Attribute conventions (see ``ATTRIBUTE_NAMES`` for the fixed order):

* Exactly one of ``Black_Hair``, ``Blond_Hair``, ``Brown_Hair``, ``Gray_Hair`` is 1 for every face,
  bald ones included: a bald head keeps a fringe of hair over the ears and at the back, drawn in the
  labelled colour.
* ``Bald`` implies ``Bangs = 0``. ``No_Beard`` is 1 for faces without a beard (the CelebA polarity).
* Sampling correlations: lipstick only on women; beard and mustache only on men; bald mostly old men;
  gray hair mostly among the old; blond more common among women; bangs, wavy hair and rosy cheeks more
  common among women; glasses more common among the old. Counterfactuals may break these (a woman
  with a beard renders as asked).

Held-out convention: training uses ``TRAIN_SEED`` (0) with indices ``[0, N)``; held-out evaluation uses
``HELDOUT_SEED`` (1), any indices, which are never seen in training because the seed differs.
"""
from __future__ import annotations

import colorsys
import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from latentedit.errors import InputError

TRAIN_SEED = 0
HELDOUT_SEED = 1
# Bumped whenever a change to sampling or drawing changes any pixel; exports record it.
RENDERER_VERSION = 1

# CelebA names, in CelebA's own (alphabetical) column order.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "Bald",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Gray_Hair",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "No_Beard",
    "Pale_Skin",
    "Rosy_Cheeks",
    "Smiling",
    "Wavy_Hair",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Young",
)
HAIR_COLOURS: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")

# Expected sampling frequency of each attribute (fraction of faces with value 1), derived from the
# conditional probabilities in _sample_attributes; tests check measured frequencies against these.
EXPECTED_FREQUENCIES: dict[str, float] = {
    "Bald": 0.10,
    "Bangs": 0.21,
    "Black_Hair": 0.30,
    "Blond_Hair": 0.21,
    "Brown_Hair": 0.30,
    "Eyeglasses": 0.20,
    "Gray_Hair": 0.20,
    "Male": 0.45,
    "Mouth_Slightly_Open": 0.42,
    "Mustache": 0.14,
    "No_Beard": 0.82,
    "Pale_Skin": 0.15,
    "Rosy_Cheeks": 0.16,
    "Smiling": 0.48,
    "Wavy_Hair": 0.26,
    "Wearing_Hat": 0.15,
    "Wearing_Lipstick": 0.33,
    "Young": 0.60,
}

# Random-stream tags mixed into the seed so that attribute and nuisance draws are independent.
_ATTRIBUTE_STREAM = 0x41
_NUISANCE_STREAM = 0x4E


@dataclass(frozen=True)
class Nuisance:
    """Continuous factors not named by any attribute. All are drawn independently of the attributes.

    Unless noted, each value is a plain uniform draw in [0, 1] that the renderer maps to geometry or
    colour (so the same draw can mean e.g. "long hair" for a woman and "short hair" for a man).
    """

    shift_x: float  # head offset, fraction of the image width, in [-0.03, 0.03]
    shift_y: float  # head offset, fraction of the image height, in [-0.03, 0.03]
    tilt_deg: float  # head roll in degrees, in [-7, 7]
    head_scale: float  # overall head size factor, in [0.93, 1.07]
    face_width: float
    face_height: float
    jaw: float
    skin_tone: float  # 0 = lightest, 1 = darkest of the non-pale palette
    hair_length: float
    hair_volume: float
    hair_shade: float  # lightness jitter inside the labelled hair colour
    hair_part: float  # side of the parting / hairline asymmetry
    wave_phase: float
    eye_width: float
    eye_height: float
    eye_spacing: float
    eye_colour: float
    brow_tilt: float
    nose_size: float
    mouth_width: float
    lip_shade: float
    background_hue: float
    background_saturation: float
    background_value: float
    background_gradient: float  # gradient strength
    background_angle: float
    light_strength: float
    light_angle: float
    brightness: float
    hat_colour: float
    hat_style: float
    glasses_colour: float
    glasses_shape: float
    clothes_colour: float


_NUISANCE_FIELDS = tuple(field.name for field in dataclasses.fields(Nuisance))


@dataclass(frozen=True)
class FaceParams:
    """Everything that determines one toyfaces image.

    ``attributes`` maps every name of ``ATTRIBUTE_NAMES`` to 0 or 1; ``nuisance`` holds the continuous
    factors. ``seed`` and ``index`` record where the face was sampled (informational: rendering uses only
    ``attributes`` and ``nuisance``).
    """

    seed: int
    index: int
    attributes: Mapping[str, int]
    nuisance: Nuisance

    def with_attributes(self, **changes: int) -> "FaceParams":
        """The same face with the named attributes set (counterfactual); nuisance factors are untouched.

        Values must be 0/1 (bools accepted). Setting a hair colour to 1 clears the other three; setting
        the current hair colour to 0 alone is an error (say which colour to use instead). ``Bald=1``
        clears ``Bangs``; asking for ``Bangs=1`` on a bald face is an error unless ``Bald=0`` is also
        given. Raises :class:`InputError` for unknown names or bad values.
        """
        new = dict(self.attributes)
        for name, value in changes.items():
            if name not in ATTRIBUTE_NAMES:
                raise InputError(f"unknown toyfaces attribute {name!r}; known: {', '.join(ATTRIBUTE_NAMES)}")
            if isinstance(value, (bool, np.bool_)):
                value = int(value)
            if not isinstance(value, (int, np.integer)) or value not in (0, 1):
                raise InputError(f"attribute {name} must be 0 or 1, got {value!r}")
            new[name] = int(value)
        chosen_colours = [name for name in HAIR_COLOURS if changes.get(name) == 1]
        if len(chosen_colours) > 1:
            raise InputError(f"only one hair colour can be set to 1, got {', '.join(chosen_colours)}")
        if chosen_colours:
            for name in HAIR_COLOURS:
                new[name] = int(name == chosen_colours[0])
        elif sum(new[name] for name in HAIR_COLOURS) != 1:
            raise InputError("every face has exactly one hair colour: set one of "
                             f"{', '.join(HAIR_COLOURS)} to 1 instead of clearing the current one")
        if new["Bald"] and new["Bangs"]:
            if changes.get("Bangs") == 1:
                raise InputError("a bald face cannot have bangs: pass Bald=0 together with Bangs=1")
            new["Bangs"] = 0
        return dataclasses.replace(self, attributes=new)


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise InputError(f"toyfaces seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng([int(seed), int(index), stream])


def _sample_attributes(rng: np.random.Generator) -> dict[str, int]:
    # A fixed number of uniforms consumed in a fixed order, whatever the outcomes.
    u = rng.random(17)
    male = u[0] < 0.45
    young = u[1] < 0.60
    bald = male and u[2] < (0.06 if young else 0.45)
    gray = u[3] < (0.03 if young else 0.45)
    if gray:
        colour = "Gray_Hair"
    elif u[4] < (0.12 if male else 0.38):
        colour = "Blond_Hair"
    elif u[5] < 0.5:
        colour = "Black_Hair"
    else:
        colour = "Brown_Hair"
    bangs = (not bald) and u[6] < (0.14 if male else 0.29)
    glasses = u[7] < (0.12 if young else 0.32)
    smiling = u[8] < 0.48
    mouth_open = u[9] < (0.60 if smiling else 0.25)
    beard = male and u[10] < 0.40
    mustache = male and u[11] < (0.60 if beard else 0.12)
    lipstick = (not male) and u[12] < 0.60
    pale = u[13] < 0.15
    wavy = u[14] < (0.16 if male else 0.35)
    hat = u[15] < 0.15
    rosy = u[16] < (0.06 if male else 0.25)
    values = {
        "Bald": bald, "Bangs": bangs, "Eyeglasses": glasses, "Male": male,
        "Mouth_Slightly_Open": mouth_open, "Mustache": mustache, "No_Beard": not beard,
        "Pale_Skin": pale, "Rosy_Cheeks": rosy, "Smiling": smiling, "Wavy_Hair": wavy,
        "Wearing_Hat": hat, "Wearing_Lipstick": lipstick, "Young": young,
    }
    for name in HAIR_COLOURS:
        values[name] = name == colour
    return {name: int(values[name]) for name in ATTRIBUTE_NAMES}


def _sample_nuisance(rng: np.random.Generator) -> Nuisance:
    u = dict(zip(_NUISANCE_FIELDS, rng.random(len(_NUISANCE_FIELDS)).tolist()))
    u["shift_x"] = (u["shift_x"] - 0.5) * 0.06
    u["shift_y"] = (u["shift_y"] - 0.5) * 0.06
    u["tilt_deg"] = (u["tilt_deg"] - 0.5) * 14.0
    u["head_scale"] = 0.93 + 0.14 * u["head_scale"]
    return Nuisance(**u)


def sample_params(seed: int, index: int) -> FaceParams:
    """Sample the attributes and nuisance factors of face ``index`` of data set ``seed`` (deterministic)."""
    attributes = _sample_attributes(_rng(seed, index, _ATTRIBUTE_STREAM))
    nuisance = _sample_nuisance(_rng(seed, index, _NUISANCE_STREAM))
    return FaceParams(seed=int(seed), index=int(index), attributes=attributes, nuisance=nuisance)


def attributes(params: FaceParams) -> dict[str, int]:
    """The binary attributes of ``params`` as ``{name: 0|1}`` in ``ATTRIBUTE_NAMES`` order."""
    return {name: int(params.attributes[name]) for name in ATTRIBUTE_NAMES}


def attribute_vector(params: FaceParams) -> np.ndarray:
    """The attributes of ``params`` as a float32 vector ``[A]`` of 0/1 in ``ATTRIBUTE_NAMES`` order."""
    return np.array([params.attributes[name] for name in ATTRIBUTE_NAMES], dtype=np.float32)


def parse_overrides(assignments) -> dict[str, int]:
    """Parse ``["Blond_Hair=1", "Eyeglasses=0"]`` into ``{"Blond_Hair": 1, "Eyeglasses": 0}``.

    Raises :class:`InputError` naming the bad item for a missing ``=``, an unknown name or a value that
    is not 0/1 (``true``/``false``/``yes``/``no`` are accepted too).
    """
    truthy = {"1": 1, "true": 1, "yes": 1, "on": 1, "0": 0, "false": 0, "no": 0, "off": 0, "-1": 0}
    parsed: dict[str, int] = {}
    for item in assignments:
        name, sep, raw = str(item).partition("=")
        name, raw = name.strip(), raw.strip().lower()
        if not sep:
            raise InputError(f"expected NAME=0|1, got {item!r}")
        if name not in ATTRIBUTE_NAMES:
            raise InputError(f"unknown toyfaces attribute {name!r}; known: {', '.join(ATTRIBUTE_NAMES)}")
        if raw not in truthy:
            raise InputError(f"attribute {name} must be 0 or 1, got {raw!r}")
        parsed[name] = truthy[raw]
    return parsed


# ----------------------------------------------------------------------------------------------------
# Rendering

_SKIN_PALETTE = np.array([(238, 198, 170), (212, 160, 120), (172, 116, 80), (116, 76, 52)], dtype=np.float64)
_PALE_SKIN = np.array((252, 234, 226), dtype=np.float64)
_HAIR_BASE = {
    "Black_Hair": np.array((28, 24, 26), dtype=np.float64),
    "Brown_Hair": np.array((118, 70, 36), dtype=np.float64),
    "Blond_Hair": np.array((240, 200, 96), dtype=np.float64),
    "Gray_Hair": np.array((184, 186, 192), dtype=np.float64),
}
_EYE_COLOURS = np.array([(92, 56, 30), (60, 36, 20), (60, 110, 170), (70, 120, 70), (110, 120, 130)], float)
_LIPSTICK = np.array([(200, 24, 48), (222, 40, 90), (160, 16, 40)], dtype=np.float64)
_GLASSES_COLOURS = np.array([(20, 20, 24), (70, 36, 20), (24, 36, 96), (110, 20, 30)], dtype=np.float64)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64) * 255.0


def _lerp(a, b, t):
    return a + (b - a) * t


def _rgb(colour) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, int(round(float(value))))) for value in colour)
    return r, g, b


def _luma(colour) -> float:
    return float(0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])


# All head geometry below is designed at scale 1; this enlarges the head to fill the frame like an
# aligned CelebA crop.
_HEAD_SCALE = 1.1


def _supersample(size: int) -> int:
    # Enough subpixels per pixel for smooth edges, but a bounded canvas so big sizes stay fast.
    return 4 if size <= 96 else (3 if size <= 160 else 2)


class _Painter:
    """Draws shapes given in unit image coordinates ([0, 1] x [0, 1], y down) onto a supersampled canvas.

    Head-attached shapes go through the head transform (scale and tilt about the head centre, then
    shift); ``fixed=True`` shapes (background, clothes) are only scaled to the canvas.
    """

    def __init__(self, image: Image.Image, centre: np.ndarray, scale: float, tilt_deg: float):
        self.draw = ImageDraw.Draw(image)
        self.canvas = float(image.size[0])
        self.centre = centre
        self.scale = scale
        angle = math.radians(tilt_deg)
        self.rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def _map(self, points: np.ndarray, fixed: bool) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]`` canvas coordinates of ``points [N, 2]``."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not fixed:
            points = self.centre + (points - self.centre) @ self.rotation.T * self.scale
        return (points * self.canvas).ravel().tolist()

    def polygon(self, points, colour, fixed: bool = False) -> None:
        self.draw.polygon(self._map(points, fixed), fill=_rgb(colour))

    def line(self, points, colour, width: float, fixed: bool = False, closed: bool = False) -> None:
        mapped = self._map(points, fixed)
        if closed:
            mapped = mapped + mapped[:4]
        pixels = max(1, int(round(width * self.canvas * (1.0 if fixed else self.scale))))
        self.draw.line(mapped, fill=_rgb(colour), width=pixels, joint="curve")
        # Round caps: a line's ends are otherwise square and look chopped at 2 px.
        if not closed:
            radius = pixels / 2.0
            for x, y in ((mapped[0], mapped[1]), (mapped[-2], mapped[-1])):
                self.draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=_rgb(colour))


def _ellipse(cx, cy, rx, ry, start=0.0, stop=2 * math.pi, count=48) -> np.ndarray:
    t = np.linspace(start, stop, count)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rounded_rect(cx, cy, rx, ry, power=4.0, count=48) -> np.ndarray:
    # Superellipse |x/rx|^p + |y/ry|^p = 1: a rectangle with rounded corners.
    t = np.linspace(0, 2 * math.pi, count, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = cx + rx * np.sign(c) * np.abs(c) ** (2.0 / power)
    y = cy + ry * np.sign(s) * np.abs(s) ** (2.0 / power)
    return np.stack([x, y], axis=1)


def _background(size: int, nuisance: Nuisance) -> np.ndarray:
    """Background ``[size, size, 3]`` float: a muted colour (no yellows/oranges, which hide blond hair)
    with a linear gradient."""
    hue = 0.40 + 0.48 * nuisance.background_hue  # green .. cyan .. blue .. purple .. magenta
    base = _hsv(hue, 0.10 + 0.35 * nuisance.background_saturation, 0.42 + 0.48 * nuisance.background_value)
    angle = 2 * math.pi * nuisance.background_angle
    axis = (np.arange(size) + 0.5) / size - 0.5
    ramp = math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]
    gain = 1.0 + (0.1 + 0.4 * nuisance.background_gradient) * ramp
    return base[None, None, :] * gain[:, :, None]


def _skin_colour(attrs: Mapping[str, int], nuisance: Nuisance) -> np.ndarray:
    position = nuisance.skin_tone * (len(_SKIN_PALETTE) - 1)
    low = int(min(position, len(_SKIN_PALETTE) - 2))
    normal = _lerp(_SKIN_PALETTE[low], _SKIN_PALETTE[low + 1], position - low)
    if attrs["Pale_Skin"]:
        # Pale keeps a trace of the underlying tone so that pale faces are not all identical.
        return _lerp(_PALE_SKIN, _SKIN_PALETTE[0], 0.25 * nuisance.skin_tone)
    return normal


def _hair_colour(attrs: Mapping[str, int], nuisance: Nuisance) -> np.ndarray:
    name = next(name for name in HAIR_COLOURS if attrs[name])
    gain = 1.0 + 0.16 * (nuisance.hair_shade - 0.5)
    if name == "Black_Hair":
        return _HAIR_BASE[name] + 14.0 * nuisance.hair_shade
    return np.clip(_HAIR_BASE[name] * gain, 0, 255)


def _contrasting(colour: np.ndarray, against: np.ndarray, min_difference: float) -> np.ndarray:
    """``colour`` darkened (or lightened) until its luma differs from ``against`` by ``min_difference``."""
    difference = _luma(colour) - _luma(against)
    if abs(difference) >= min_difference:
        return colour
    if _luma(against) > 110:
        return colour * max(0.0, (_luma(against) - min_difference)) / max(_luma(colour), 1.0)
    return np.clip(colour + (min_difference - difference), 0, 255)


def render(params: FaceParams, size: int = 64) -> np.ndarray:
    """Render ``params`` as an RGB image ``[size, size, 3]`` uint8 (anti-aliased by supersampling).

    Deterministic: the same params and size give identical pixels. ``size`` must be in [16, 1024].
    """
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 1024:
        raise InputError(f"toyfaces size must be an integer in [16, 1024], got {size!r}")
    size = int(size)
    factor = _supersample(size)
    canvas_size = size * factor
    a, n = params.attributes, params.nuisance

    # The background is a linear ramp, so computing it at the output size and upsampling is exact enough.
    background = np.clip(_background(size, n) + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(background).resize((canvas_size, canvas_size), Image.BILINEAR)

    centre = np.array([0.5 + n.shift_x, 0.5 + n.shift_y])
    paint = _Painter(image, centre, _HEAD_SCALE * n.head_scale, n.tilt_deg)
    cx, cy = float(centre[0]), float(centre[1])
    male = bool(a["Male"])

    # Head geometry (unit coordinates, before the head transform).
    half_w = 0.185 * (0.94 + 0.12 * n.face_width) * (1.04 if male else 1.0)
    half_h = 0.245 * (0.95 + 0.10 * n.face_height)
    jaw_taper = (0.10 if male else 0.22) + 0.10 * n.jaw
    eye_y = cy + 0.02 * half_h
    brow_y = eye_y - 0.27 * half_h
    nose_y = cy + 0.33 * half_h
    mouth_y = cy + 0.60 * half_h
    chin_y = cy + half_h

    skin = _skin_colour(a, n)
    skin_shadow = skin * 0.80
    hair = _hair_colour(a, n)
    hair_edge = hair * 0.62 if _luma(hair) > 60 else hair + 22
    facial_hair = _contrasting(hair * 0.85, skin, 60.0)
    brow_colour = _contrasting(hair * (0.55 if _luma(hair) > 120 else 0.8), skin, 70.0)

    theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    lower = np.clip(np.sin(theta), 0, None)
    head = np.stack([cx + half_w * np.cos(theta) * (1 - jaw_taper * lower ** 2),
                     cy + half_h * np.sin(theta)], axis=1)

    # Clothes and shoulders (not tilted with the head).
    # One uniform gives hue, saturation and value through its fractional multiples (cheap and decorrelated).
    clothes = _hsv(n.clothes_colour, 0.25 + 0.35 * ((n.clothes_colour * 7.0) % 1.0),
                   0.25 + 0.5 * ((n.clothes_colour * 13.0) % 1.0))
    shoulders = _ellipse(cx, 1.08 + 0.5 * n.shift_y, 0.40, 0.22)
    paint.polygon(shoulders, clothes, fixed=True)

    # Hair behind the head: length and volume come from nuisance draws, mapped by sex.
    bald = bool(a["Bald"])
    wavy = bool(a["Wavy_Hair"])
    volume = 0.022 + 0.03 * n.hair_volume + (0.01 if wavy else 0.0)
    if male:
        length = -0.06 + 0.16 * n.hair_length
    else:
        length = 0.20 + 0.22 * n.hair_length
    if bald:
        length = min(length, 0.03)
    hair_half_w = half_w + volume
    hair_top = cy - half_h - volume * 1.2
    wave_amp = 0.016 if wavy else 0.0
    phase = 2 * math.pi * n.wave_phase

    def crown(extra: float, count: int = 40) -> np.ndarray:
        # Upper half-ellipse from the left ear level over the top to the right ear level.
        t = np.linspace(math.pi, 2 * math.pi, count)
        r_wave = wave_amp * np.sin(9 * t + phase) if wave_amp else 0.0
        return np.stack([cx + (hair_half_w + extra + r_wave) * np.cos(t),
                         cy + ((cy - hair_top) + extra + r_wave) * np.sin(t)], axis=1)

    if length > 0.0:
        side = np.linspace(cy, cy + length, 14)
        swing = 0.03 * (side - cy) / max(length, 1e-6)
        waves = wave_amp * 1.4 * np.sin((side - cy) * 70 + phase)
        right = np.stack([cx + hair_half_w + swing + waves, side], axis=1)
        left = np.stack([cx - hair_half_w - swing - waves, side], axis=1)[::-1]
        bottom_y = cy + length
        back = np.concatenate([crown(0.0), right, [[cx + hair_half_w * 0.5, bottom_y + 0.01],
                                                   [cx - hair_half_w * 0.5, bottom_y + 0.01]], left])
        if bald:
            back = np.concatenate([_ellipse(cx, cy - 0.1 * half_h, hair_half_w, half_h * 0.55, math.pi * 0.9,
                                            math.pi * 2.1, 30), right, left])
        paint.polygon(back, hair_edge)
        inset = back.copy()
        inset[:, 0] = cx + (inset[:, 0] - cx) * 0.93
        inset[:, 1] = np.minimum(inset[:, 1], cy + length - 0.012)
        inset[:, 1] = hair_top + 0.012 + (inset[:, 1] - hair_top) * 0.97
        paint.polygon(inset, hair)
        if wavy and not bald:
            for sign in (-1.0, 1.0):
                ys = np.linspace(cy - 0.02, cy + length - 0.03, 12)
                xs = cx + sign * (hair_half_w - 0.018) + wave_amp * np.sin((ys - cy) * 70 + phase + 1.5)
                paint.line(np.stack([xs, ys], axis=1), hair_edge, 0.02)

    # Neck.
    neck = np.array([[cx - 0.42 * half_w, cy + 0.5 * half_h], [cx + 0.42 * half_w, cy + 0.5 * half_h],
                     [cx + 0.46 * half_w, 0.97], [cx - 0.46 * half_w, 0.97]])
    paint.polygon(neck, skin * 0.84)

    # Ears.
    for sign in (-1.0, 1.0):
        ear = _ellipse(cx + sign * half_w * 0.98, eye_y + 0.03, 0.028, 0.05, count=24)
        paint.polygon(ear, skin * 0.9)

    # Face outline then face.
    outline = head.copy()
    outline[:, 0] = cx + (outline[:, 0] - cx) * (1 + 0.022 / half_w)
    outline[:, 1] = cy + (outline[:, 1] - cy) * (1 + 0.018 / half_h)
    paint.polygon(outline, skin * 0.68)
    paint.polygon(head, skin)

    # Age: nasolabial folds, under-eye bags and forehead lines, all >= 2 px at 64 px.
    if not a["Young"]:
        for sign in (-1.0, 1.0):
            fold = np.array([[cx + sign * 0.055, nose_y - 0.005], [cx + sign * 0.085, mouth_y - 0.02],
                             [cx + sign * 0.09, mouth_y + 0.035]])
            paint.line(fold, skin * 0.64, 0.026)
            ex = cx + sign * half_w * 0.44
            bag = _ellipse(ex, eye_y + 0.018, 0.04, 0.022, 0.15 * math.pi, 0.85 * math.pi, 10)
            paint.line(bag, skin * 0.7, 0.02)
        for k in range(2):
            y = cy - half_h * (0.43 + 0.14 * k)
            line = np.array([[cx - 0.45 * half_w, y + 0.006], [cx, y], [cx + 0.45 * half_w, y + 0.006]])
            paint.line(line, skin * 0.7, 0.022)

    if a["Rosy_Cheeks"]:
        rosy = _lerp(skin, np.array((235.0, 80.0, 95.0)), 0.5)
        for sign in (-1.0, 1.0):
            paint.polygon(_ellipse(cx + sign * half_w * 0.58, nose_y + 0.01, 0.045, 0.032, count=24), rosy)

    # Beard: a solid region over the lower face; the mouth is drawn on top of it.
    mouth_half = 0.068 * (0.9 + 0.2 * n.mouth_width) * (1.12 if a["Smiling"] else 1.0)
    if not a["No_Beard"]:
        jaw_points = head[(np.sin(theta) > 0.15)]
        jaw_points = jaw_points[np.argsort(-np.arctan2(jaw_points[:, 1] - cy, jaw_points[:, 0] - cx))]
        jaw_out = jaw_points.copy()
        jaw_out[:, 1] = jaw_out[:, 1] + 0.016 * np.clip((jaw_out[:, 1] - cy) / half_h, 0, 1)
        inner = np.array([[cx - 0.62 * half_w, nose_y + 0.005], [cx - mouth_half * 1.3, mouth_y - 0.035],
                          [cx + mouth_half * 1.3, mouth_y - 0.035], [cx + 0.62 * half_w, nose_y + 0.005]])
        paint.polygon(np.concatenate([jaw_out[::-1], inner]), facial_hair)

    # Nose: base arc plus a bridge shadow on one side.
    nose_w = 0.028 * (0.85 + 0.3 * n.nose_size)
    paint.line(_ellipse(cx, nose_y - 0.012, nose_w, 0.016, 0.15 * math.pi, 0.85 * math.pi, 10), skin * 0.66, 0.02)
    paint.line(np.array([[cx + 0.012, eye_y + 0.02], [cx + 0.016, nose_y - 0.01]]), skin * 0.86, 0.014)

    # Mouth.
    lip = (_LIPSTICK[int(n.lip_shade * len(_LIPSTICK)) % len(_LIPSTICK)] if a["Wearing_Lipstick"]
           else _lerp(skin, np.array((110.0, 30.0, 40.0)), 0.62 + 0.15 * n.lip_shade))
    lip_width = 0.038 if a["Wearing_Lipstick"] else 0.032
    xs = np.linspace(-1.0, 1.0, 15)
    if a["Smiling"]:
        curve = 0.036
        top = np.stack([cx + mouth_half * xs, mouth_y + curve * (1 - xs ** 2)], axis=1)
        top[:, 1] -= 0.012
        if a["Mouth_Slightly_Open"]:
            bottom = np.stack([cx + mouth_half * xs[::-1], mouth_y + 0.095 * (1 - xs[::-1] ** 2) - 0.012], axis=1)
            paint.polygon(np.concatenate([top, bottom]), lip)
            inner_top = top.copy()
            inner_top[:, 0] = cx + (inner_top[:, 0] - cx) * 0.82
            inner_top[:, 1] += 0.008
            inner_bottom = bottom.copy()
            inner_bottom[:, 0] = cx + (inner_bottom[:, 0] - cx) * 0.82
            inner_bottom[:, 1] -= 0.014
            paint.polygon(np.concatenate([inner_top, inner_bottom]), (50, 18, 22))
            teeth_bottom = inner_top[::-1].copy()
            teeth_bottom[:, 1] += 0.018
            paint.polygon(np.concatenate([inner_top, teeth_bottom]), (246, 244, 236))
        else:
            paint.line(top, lip, lip_width)
    else:
        if a["Mouth_Slightly_Open"]:
            paint.polygon(_ellipse(cx, mouth_y, mouth_half * 0.78, 0.032, count=28), lip)
            paint.polygon(_ellipse(cx, mouth_y + 0.002, mouth_half * 0.56, 0.016, count=24), (50, 18, 22))
        else:
            flat = np.stack([cx + mouth_half * 0.85 * xs, mouth_y - 0.004 * (1 - xs ** 2)], axis=1)
            paint.line(flat, lip, lip_width)

    if a["Mustache"]:
        top_y = mouth_y - 0.052
        band = np.array([[cx - mouth_half * 1.15, mouth_y - 0.005], [cx - mouth_half * 0.7, top_y + 0.002],
                         [cx, top_y - 0.004], [cx + mouth_half * 0.7, top_y + 0.002],
                         [cx + mouth_half * 1.15, mouth_y - 0.005], [cx + mouth_half * 0.6, top_y + 0.032],
                         [cx, top_y + 0.028], [cx - mouth_half * 0.6, top_y + 0.032]])
        paint.polygon(band, facial_hair)

    # Eyes.
    eye_half_w = 0.042 * (0.9 + 0.2 * n.eye_width)
    eye_half_h = 0.024 * (0.85 + 0.3 * n.eye_height)
    spacing = half_w * (0.40 + 0.08 * n.eye_spacing)
    iris = _EYE_COLOURS[int(n.eye_colour * len(_EYE_COLOURS)) % len(_EYE_COLOURS)]
    for sign in (-1.0, 1.0):
        ex = cx + sign * spacing
        paint.polygon(_ellipse(ex, eye_y, eye_half_w, eye_half_h, count=28), (244, 244, 240))
        paint.polygon(_ellipse(ex, eye_y, eye_half_h * 1.0, eye_half_h * 1.0, count=20), iris)
        paint.polygon(_ellipse(ex, eye_y, eye_half_h * 0.5, eye_half_h * 0.5, count=16), (14, 10, 10))
        lid = _ellipse(ex, eye_y + 0.004, eye_half_w * 1.05, eye_half_h * 1.15, 1.05 * math.pi, 1.95 * math.pi, 12)
        paint.line(lid, (30, 20, 20), 0.016 if male else 0.02)
        # Eyebrows.
        tilt = (n.brow_tilt - 0.5) * 0.02
        brow = np.array([[ex - sign * eye_half_w * 1.1, brow_y + 0.008],
                         [ex + sign * 0.0, brow_y - 0.006],
                         [ex + sign * eye_half_w * 1.15, brow_y + 0.006 + sign * tilt]])
        paint.line(brow, brow_colour, 0.036 if male else 0.028)

    # Hair in front: the cap over the top of the head, with the hairline or bangs edge.
    if not bald:
        temple_y = eye_y - 0.30 * half_h
        part = (n.hair_part - 0.5) * 2.0
        if a["Bangs"]:
            edge_y = brow_y - 0.016
            xs_edge = np.linspace(1.0, -1.0, 17)
            teeth = 0.012 * (np.arange(17) % 2) if not wavy else 0.014 * np.sin(np.arange(17) * 1.6 + phase)
            hairline = np.stack([cx + half_w * 0.95 * xs_edge,
                                 edge_y + 0.012 * xs_edge ** 2 + teeth + 0.008 * part * xs_edge], axis=1)
        else:
            xs_edge = np.linspace(1.0, -1.0, 17)
            dip = np.exp(-((xs_edge - 0.45 * part) ** 2) / 0.04) * 0.03
            hairline = np.stack([cx + half_w * 0.97 * xs_edge,
                                 cy - half_h * 0.70 + 0.06 * xs_edge ** 2 - dip], axis=1)
        sides_right = np.array([[cx + hair_half_w, cy + 0.02], [cx + half_w * 0.97, cy + 0.02],
                                [cx + half_w * 0.97, temple_y]])
        sides_left = np.array([[cx - half_w * 0.97, temple_y], [cx - half_w * 0.97, cy + 0.02],
                               [cx - hair_half_w, cy + 0.02]])
        cap = np.concatenate([crown(0.0), sides_right, hairline, sides_left])
        strands = []
        if a["Bangs"]:
            # Short darker strands combed down over the forehead make the fringe read as bangs.
            for x in np.linspace(-0.6, 0.6, 5):
                bottom = edge_y + 0.012 * x ** 2 - 0.012
                strands.append(np.array([[cx + half_w * x - 0.006, bottom - 0.05], [cx + half_w * x, bottom]]))
        paint.line(np.concatenate([crown(0.0), sides_right, hairline, sides_left]), hair_edge, 0.014, closed=True)
        paint.polygon(cap, hair)
        for strand in strands:
            paint.line(strand, hair_edge, 0.018)
        if wavy:
            for k in range(3):
                t = np.linspace(1.15 * math.pi, 1.85 * math.pi, 14)
                rr = 0.55 + 0.15 * k
                arc = np.stack([cx + hair_half_w * rr * np.cos(t) + 0.008 * np.sin(t * 9 + phase),
                                cy + (cy - hair_top) * rr * np.sin(t) + 0.01 * np.sin(12 * t + phase)], axis=1)
                paint.line(arc, hair_edge, 0.016)
    else:
        # Bald: a shine on the scalp and a fringe over the ears.
        shine = _ellipse(cx - 0.3 * half_w, cy - 0.72 * half_h, 0.05, 0.025, count=20)
        paint.polygon(shine, np.clip(skin * 1.12 + 12, 0, 255))
        for sign in (-1.0, 1.0):
            fringe = np.array([[cx + sign * (half_w + 0.02), cy - 0.42 * half_h],
                               [cx + sign * (half_w * 0.86), cy - 0.38 * half_h],
                               [cx + sign * (half_w * 0.86), cy + 0.03],
                               [cx + sign * (half_w + 0.025), cy + 0.06]])
            paint.polygon(fringe, hair)

    # Glasses: bold rims (2.3 px at 64 px), a bridge and arms to the ears.
    if a["Eyeglasses"]:
        frame = _GLASSES_COLOURS[int(n.glasses_colour * len(_GLASSES_COLOURS)) % len(_GLASSES_COLOURS)]
        if abs(_luma(frame) - _luma(skin)) < 55.0:  # coloured frames on dark skin: black rims instead
            frame = _GLASSES_COLOURS[0]
        rim_w, rim_h = max(eye_half_w * 1.55, 0.062), 0.05
        rim_width = 0.036
        for sign in (-1.0, 1.0):
            ex = cx + sign * spacing
            if n.glasses_shape < 0.5:
                rim = _ellipse(ex, eye_y + 0.004, rim_w, rim_h, count=40)
            else:
                rim = _rounded_rect(ex, eye_y + 0.004, rim_w, rim_h, power=4.0, count=40)
            paint.line(rim, frame, rim_width, closed=True)
            arm = np.array([[ex + sign * rim_w, eye_y - 0.01], [cx + sign * half_w * 1.0, eye_y - 0.005]])
            paint.line(arm, frame, 0.028)
        bridge = np.array([[cx - spacing + rim_w, eye_y - 0.005], [cx, eye_y - 0.012],
                           [cx + spacing - rim_w, eye_y - 0.005]])
        paint.line(bridge, frame, 0.03)

    # Hat: a solid crown and band (beanie) or crown and wide brim, in a saturated colour.
    if a["Wearing_Hat"]:
        hat = _hsv(n.hat_colour, 0.55 + 0.3 * ((n.hat_colour * 5.0) % 1.0), 0.35 + 0.45 * ((n.hat_colour * 11.0) % 1.0))
        hat_dark = hat * 0.7
        brim_y = cy - 0.52 * half_h
        top_y = hair_top - 0.03
        if n.hat_style < 0.5:
            t = np.linspace(math.pi, 2 * math.pi, 30)
            dome = np.stack([cx + (hair_half_w + 0.012) * np.cos(t), brim_y + (brim_y - top_y) * np.sin(t)], axis=1)
            paint.polygon(dome, hat)
            band = np.array([[cx - hair_half_w - 0.02, brim_y - 0.045], [cx + hair_half_w + 0.02, brim_y - 0.045],
                             [cx + hair_half_w + 0.02, brim_y + 0.012], [cx - hair_half_w - 0.02, brim_y + 0.012]])
            paint.polygon(band, hat_dark)
        else:
            crown_shape = _rounded_rect(cx, (brim_y + top_y) / 2, hair_half_w * 0.92, (brim_y - top_y) / 2 + 0.01,
                                        power=5.0, count=40)
            paint.polygon(crown_shape, hat)
            band_x = hair_half_w * 0.92
            paint.polygon(np.array([[cx - band_x, brim_y - 0.045], [cx + band_x, brim_y - 0.045],
                                    [cx + band_x, brim_y - 0.015], [cx - band_x, brim_y - 0.015]]), hat_dark)
            paint.polygon(_ellipse(cx, brim_y - 0.005, hair_half_w * 1.55, 0.026, count=40), hat)

    # Anti-alias: box-average the supersampled canvas, then apply the lighting at the final size.
    small = np.asarray(image.reduce(factor), dtype=np.float32)
    angle = 2 * math.pi * n.light_angle
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    ramp = math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]
    light = (0.96 + 0.08 * n.brightness) * (1.0 + 0.24 * n.light_strength * ramp)
    return np.clip(small * light[:, :, None] + 0.5, 0, 255).astype(np.uint8)


LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")


def face_landmarks(params: FaceParams, size: int = 64) -> np.ndarray:
    """Exact landmark positions of ``render(params, size)``: float64 ``[5, 2]`` of ``(x, y)`` pixels.

    Rows follow ``LANDMARK_NAMES``: left eye centre, right eye centre, nose tip, left mouth corner, right
    mouth corner; "left" is the smaller x in the image (the viewer's left). Coordinates are continuous
    image coordinates: pixel (column c, row r) covers ``[c, c+1) x [r, r+1)``, so its centre is
    ``(c + 0.5, r + 0.5)`` (subtract 0.5 for the pixel-index convention). This is Pillow's drawing and
    transform convention, so a point at unit position ``u`` of the renderer lands at ``u * size``.

    * eye centre: centre of the iris and pupil discs;
    * nose tip: midpoint (lowest point) of the arc drawn as the base of the nose;
    * mouth corners: ends of the lip line or lip shape actually drawn, which depend on ``Smiling`` and
      ``Mouth_Slightly_Open`` (so a counterfactual can move them).

    Computed from the same parameters and formulas as :func:`render` (not detected), after the head
    shift, scale and tilt. ``size`` must be in [16, 1024] like :func:`render`.
    """
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 1024:
        raise InputError(f"toyfaces size must be an integer in [16, 1024], got {size!r}")
    # These expressions mirror render(); tests/test_toyfaces_scenes.py checks them against rendered pixels.
    a, n = params.attributes, params.nuisance
    cx, cy = 0.5 + n.shift_x, 0.5 + n.shift_y
    half_w = 0.185 * (0.94 + 0.12 * n.face_width) * (1.04 if a["Male"] else 1.0)
    half_h = 0.245 * (0.95 + 0.10 * n.face_height)
    eye_y = cy + 0.02 * half_h
    nose_y = cy + 0.33 * half_h
    mouth_y = cy + 0.60 * half_h
    spacing = half_w * (0.40 + 0.08 * n.eye_spacing)
    mouth_half = 0.068 * (0.9 + 0.2 * n.mouth_width) * (1.12 if a["Smiling"] else 1.0)
    if a["Smiling"]:
        corner_dx, corner_y = mouth_half, mouth_y - 0.012  # ends of the upper smile curve (xs = +-1)
    elif a["Mouth_Slightly_Open"]:
        corner_dx, corner_y = mouth_half * 0.78, mouth_y  # ends of the horizontal axis of the open ellipse
    else:
        corner_dx, corner_y = mouth_half * 0.85, mouth_y  # ends of the flat lip line
    unit = np.array([[cx - spacing, eye_y], [cx + spacing, eye_y], [cx, nose_y - 0.012 + 0.016],
                     [cx - corner_dx, corner_y], [cx + corner_dx, corner_y]], dtype=np.float64)
    centre = np.array([cx, cy])
    angle = math.radians(n.tilt_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    # The head transform of _Painter._map (rotate and scale about the head centre), then unit -> pixels.
    placed = centre + (unit - centre) @ rotation.T * (_HEAD_SCALE * n.head_scale)
    return placed * float(size)


def render_face(seed: int, index: int, size: int = 64, overrides: Mapping[str, int] | None = None) -> np.ndarray:
    """Render face ``index`` of data set ``seed`` as ``[size, size, 3]`` uint8, with optional attribute
    overrides (a counterfactual; see :meth:`FaceParams.with_attributes`)."""
    params = sample_params(seed, index)
    if overrides:
        params = params.with_attributes(**dict(overrides))
    return render(params, size)


class ToyFacesDataset:
    """A torch ``Dataset`` of faces ``seed``/``start + i`` for ``i`` in ``[0, count)``, rendered on the fly.

    ``dataset[i]`` is ``(image, attributes)``: ``image`` a float32 tensor ``[3, size, size]`` in [-1, 1]
    (``transform``, if given, is applied to that tensor), ``attributes`` a float32 tensor ``[A]`` of 0/1
    in ``ATTRIBUTE_NAMES`` order. Safe for ``DataLoader`` workers (it holds no open resources).
    """

    def __init__(self, seed: int = TRAIN_SEED, start: int = 0, count: int = 30000, size: int = 64,
                 transform=None):
        if count < 0 or start < 0:
            raise InputError(f"ToyFacesDataset needs start >= 0 and count >= 0, got start={start}, count={count}")
        self.seed, self.start, self.count, self.size = int(seed), int(start), int(count), int(size)
        self.transform = transform
        self.attribute_names = ATTRIBUTE_NAMES

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        import torch

        if not -self.count <= i < self.count:
            raise IndexError(f"index {i} out of range for {self.count} faces")
        i = i % self.count if self.count else i
        params = sample_params(self.seed, self.start + i)
        pixels = render(params, self.size)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.from_numpy(attribute_vector(params))
