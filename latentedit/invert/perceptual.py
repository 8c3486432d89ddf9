"""Perceptual distances for inversion (SPEC §3): Image2StyleGAN's VGG16 layer loss and LPIPS-VGG.

Both need torchvision's ImageNet VGG16 weights, which cannot be downloaded on the machines this
project targets. Nothing here ever downloads: the weights are read from a local file only, either
the one a user names (``--vgg-weights PATH``) or torchvision's cache file
``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`` (``$TORCH_HOME/hub/checkpoints/...``).
The network is built without weights and the file is read with ``torch.load(weights_only=True)``.

``random_backbone=True`` builds the same networks with seeded random VGG weights: a stand-in for tests
(the distances then have the right shapes and gradients but no perceptual meaning).

Distances take images ``[N, 3, H, W]`` in [-1, 1] and return one value per image ``[N]``, so a batch
loss ``distance(...).sum()`` gives every image its own gradient. The target side is computed once
with :meth:`PerceptualDistance.target_features` and reused at every optimisation step.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentedit.errors import InputError

#: torchvision's file name for the ImageNet VGG16 weights (``VGG16_Weights.IMAGENET1K_V1``).
VGG16_FILENAME = "vgg16-397923af.pth"

#: Perceptual loss kinds: the Image2StyleGAN VGG16 layer MSE, and LPIPS with the VGG16 backbone.
KINDS = ("vgg", "lpips")

#: Image2StyleGAN's feature layers as ``features`` slice ends: relu1_1, relu1_2, relu3_2, relu4_2
#: (torchvision ``features[0:2]``, ``[2:4]``, ``[4:14]``, ``[14:21]``).
IMAGE2STYLEGAN_SLICE_ENDS = (2, 4, 14, 21)

#: LPIPS-VGG taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (``features`` slice ends).
LPIPS_SLICE_ENDS = (4, 9, 16, 23, 30)

#: The largest side fed to the VGG network; larger images are downscaled to it (Image2StyleGAN resizes
#: to 256 px; the NVIDIA projector area-downsamples images above 256 px).
MAX_RESOLUTION = 256

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def default_vgg16_weights_path() -> Path:
    """Where torchvision caches the VGG16 weights: ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth``.

    ``torch.hub.get_dir()`` honours ``$TORCH_HOME`` (default ``~/.cache/torch/hub``).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME


def find_vgg16_weights(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local VGG16 weights file to use, or None when there is none.

    ``explicit`` (``--vgg-weights``) must exist, else InputError; without it the torchvision cache file
    (:func:`default_vgg16_weights_path`) is used when present. Never downloads.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"VGG16 weights file {path} does not exist; pass torchvision's {VGG16_FILENAME} "
                             f"with --vgg-weights")
        return path
    path = default_vgg16_weights_path()
    return path if path.is_file() else None


def missing_weights_hint() -> str:
    """One sentence telling a user how to make the VGG16 weights available offline."""
    return (f"put torchvision's {VGG16_FILENAME} at {default_vgg16_weights_path()} (set $TORCH_HOME to move it) "
            f"or pass --vgg-weights PATH")


def vgg16_features(num_layers: int) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's VGG16 ``features`` (random init, eval mode).

    Module indices match torchvision's, so ``features.{i}.*`` keys of its state dict load unchanged.
    """
    from torchvision.models import vgg

    layers = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    return nn.Sequential(*list(layers)[:num_layers]).eval()


def load_vgg16_state(path: str | os.PathLike, num_layers: int) -> dict[str, torch.Tensor]:
    """Read the ``features.{i}.weight/bias`` tensors for the first ``num_layers`` modules from ``path``.

    ``path`` is a torchvision VGG16 state dict (``vgg16-397923af.pth``; extra keys such as the classifier
    are ignored). Returns keys without the ``features.`` prefix. Raises InputError when the file cannot
    be read safely or lacks a tensor.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated, pickled-code or foreign files
        raise InputError(f"cannot read VGG16 weights {path}: {type(error).__name__}: {error}".splitlines()[0]
                         ) from error
    if not isinstance(state, dict):
        raise InputError(f"VGG16 weights {path} is not a state dict (got {type(state).__name__})")
    wanted = vgg16_features(num_layers).state_dict()
    features = {}
    for key, reference in wanted.items():
        tensor = state.get(f"features.{key}")
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(reference.shape):
            raise InputError(f"VGG16 weights {path} lack features.{key} of shape {list(reference.shape)}; "
                             f"is it torchvision's {VGG16_FILENAME}?")
        features[key] = tensor.float()
    return features


def _build_features(num_layers: int, weights: Path | None, seed: int) -> nn.Sequential:
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features = vgg16_features(num_layers)
    else:
        features = vgg16_features(num_layers)
        features.load_state_dict(load_vgg16_state(weights, num_layers), strict=True)
    return features.requires_grad_(False)


def _resize(images: torch.Tensor, resolution: int, mode: str) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    if mode == "area" and images.shape[-1] > resolution:
        return F.interpolate(images, size=(resolution, resolution), mode="area")
    downscale = images.shape[-1] > resolution
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=downscale)


class PerceptualDistance(nn.Module):
    """Base class: a per-image distance between images and a fixed target batch.

    Attributes: ``kind`` (``vgg`` or ``lpips``), ``source`` (where the VGG weights came from, or
    ``random backbone (seed S)``), ``resolution`` (side length fed to VGG). Subclasses implement
    :meth:`features` (images -> list of feature maps) and :meth:`compare`.
    """

    kind = ""

    def __init__(self, resolution: int, source: str):
        super().__init__()
        self.resolution = int(resolution)
        self.source = source

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def compare(self, features: list[torch.Tensor], target_features: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def target_features(self, targets: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``targets [N, 3, H, W]`` (in [-1, 1]); computed once, without gradients."""
        return [f.detach() for f in self.features(targets)]

    def forward(self, images: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        """Distance of each image ``[N, 3, H, W]`` to its target (features from :meth:`target_features`): ``[N]``."""
        return self.compare(self.features(images), target_features)


class VGGLayerDistance(PerceptualDistance):
    """Image2StyleGAN's perceptual loss: ``Σ_j mean((F_j(x) − F_j(y))²)`` over VGG16 relu1_1, relu1_2,
    relu3_2 and relu4_2 (SPEC §3).

    Images go from [-1, 1] to [0, 1], are normalised with the ImageNet mean and std, and resized
    (bilinear; antialiased when shrinking) to ``resolution`` before VGG.
    """

    kind = "vgg"

    def __init__(self, features: nn.Sequential, resolution: int, source: str):
        super().__init__(resolution, source)
        self.slices = nn.ModuleList()
        start = 0
        for end in IMAGE2STYLEGAN_SLICE_ENDS:
            self.slices.append(nn.Sequential(*list(features)[start:end]))
            start = end
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = _resize(images, self.resolution, "bilinear")
        x = ((x + 1) / 2 - self.mean) / self.std
        outputs = []
        for block in self.slices:
            x = block(x)
            outputs.append(x)
        return outputs

    def compare(self, features, target_features):
        total = 0
        for mine, theirs in zip(features, target_features):
            total = total + (mine - theirs).square().mean(dim=(1, 2, 3))
        return total


class LPIPSDistance(PerceptualDistance):
    """LPIPS v0.1 with the VGG16 backbone (Zhang et al. 2018), as in the NVIDIA / rosinality projectors.

    Uses the ``lpips`` package's network and its calibrated linear heads (shipped inside the package);
    only the VGG16 backbone comes from the local weights file. Images larger than ``resolution`` are
    area-downsampled to it first (as the NVIDIA projector does); smaller ones are used as they are.
    """

    kind = "lpips"

    def __init__(self, model: nn.Module, resolution: int, source: str):
        super().__init__(resolution, source)
        self.model = model

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        import lpips

        if images.shape[-1] > self.resolution:
            images = _resize(images, self.resolution, "area")
        outputs = self.model.net(self.model.scaling_layer(images))
        return [lpips.normalize_tensor(out) for out in outputs]

    def compare(self, features, target_features):
        total = 0
        for head, mine, theirs in zip(self.model.lins, features, target_features):
            total = total + head((mine - theirs).square()).mean(dim=(1, 2, 3))
        return total


def _lpips_model(weights: Path | None, seed: int) -> nn.Module:
    import lpips

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # lpips asks torchvision for vgg16(pretrained=False) when pnet_rand is set: no download, only
        # deprecation warnings about the argument name.
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(seed)
        model = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if weights is not None:
        features = load_vgg16_state(weights, LPIPS_SLICE_ENDS[-1])
        # lpips keeps torchvision's module indices inside its slices: features.{i} -> slice{k}.{i}.
        renamed = {}
        start = 0
        for number, end in enumerate(LPIPS_SLICE_ENDS, start=1):
            for key, tensor in features.items():
                index = int(key.split(".")[0])
                if start <= index < end:
                    renamed[f"slice{number}.{key}"] = tensor
            start = end
        model.net.load_state_dict(renamed, strict=True)
    return model.eval().requires_grad_(False)


@dataclasses.dataclass
class PerceptualChoice:
    """Outcome of :func:`choose_perceptual`: ``kind`` (``vgg``, ``lpips`` or None for MSE only),
    ``weights`` (the VGG16 file, or None), ``notice`` (one line for the user, or None)."""

    kind: str | None
    weights: Path | None
    notice: str | None


def choose_perceptual(requested: str, preferred: str, vgg_weights: str | os.PathLike | None = None
                      ) -> PerceptualChoice:
    """Decide the perceptual term from ``--perceptual`` without loading anything.

    ``requested``: ``auto``, ``vgg``, ``lpips`` or ``none``; ``preferred``: the kind ``auto`` means
    when weights exist (the preset's). ``auto`` without local VGG16 weights gives kind None (MSE only)
    and a one-line notice saying how to enable it; ``vgg``/``lpips`` without weights raise InputError.
    """
    if requested not in ("auto", "none") + KINDS:
        raise InputError(f"--perceptual must be auto, lpips, vgg or none, got {requested!r}")
    if requested == "none":
        return PerceptualChoice(None, None, None)
    weights = find_vgg16_weights(vgg_weights)
    kind = preferred if requested == "auto" else requested
    if weights is None:
        if requested == "auto":
            return PerceptualChoice(None, None, f"note: VGG16 weights not found, so the loss is MSE only; for the "
                                                f"perceptual loss {missing_weights_hint()}")
        raise InputError(f"--perceptual {requested} needs the VGG16 ImageNet weights, which cannot be downloaded "
                         f"here: {missing_weights_hint()}")
    return PerceptualChoice(kind, weights, None)


def build_perceptual(kind: str, weights: str | os.PathLike | None = None, *, image_size: int,
                     random_backbone: bool = False, seed: int = 0,
                     device: str | torch.device = "cpu") -> PerceptualDistance:
    """Build a :class:`VGGLayerDistance` (``kind='vgg'``) or :class:`LPIPSDistance` (``kind='lpips'``).

    ``weights``: a local torchvision VGG16 state dict; required unless ``random_backbone`` (then the
    backbone is randomly initialised from ``seed``: for tests only). ``image_size`` is the generator's
    output size; VGG sees ``min(image_size, 256)`` px. Never downloads anything.
    """
    if kind not in KINDS:
        raise InputError(f"perceptual kind must be one of {KINDS}, got {kind!r}")
    if weights is None and not random_backbone:
        raise InputError(f"the {kind} perceptual loss needs VGG16 weights: {missing_weights_hint()}")
    path = None if random_backbone else Path(weights)
    source = f"random backbone (seed {seed})" if path is None else str(path)
    resolution = min(int(image_size), MAX_RESOLUTION)
    if kind == "vgg":
        distance = VGGLayerDistance(_build_features(IMAGE2STYLEGAN_SLICE_ENDS[-1], path, seed), resolution, source)
    else:
        distance = LPIPSDistance(_lpips_model(path, seed), resolution, source)
    return distance.to(device).eval().requires_grad_(False)
