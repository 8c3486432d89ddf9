"""How well a direction edits one attribute, and what else it changes (``latentedit evaluate edit``).

For ``N`` source latents that lack ``attribute``, every direction is applied at every strength
(:func:`latentedit.directions.apply_direction`), the edited latents are rendered with the generator's
stored noise and labelled by the attribute classifier. Reported per direction and strength:

* ``success_rate``: the fraction of sources whose edited image the classifier labels as having the
  attribute (probability >= 0.5);
* ``flips``: for every *other* attribute, the fraction of sources whose 0/1 label (probability >= 0.5)
  differs between the unedited and the edited image: the side effects. When the attribute is a hair
  colour, the other hair colours are left out, because in toyfaces exactly one hair colour is present
  and making hair blond *must* clear black, brown or gray (SPEC: toyfaces conventions);
  ``side_effect_mean`` is the mean over the counted attributes and ``side_effect_max`` the largest one;
* ``pixel_change``: the mean absolute pixel difference between the edited and the unedited render, on
  the [0, 1] scale; ``lpips``: their mean LPIPS-VGG distance, only when the VGG16 weights are local
  (None otherwise: nothing is downloaded);
* for ``inverted`` sources (inversions of held-out toyfaces renders, ``HELDOUT_SEED``): ``psnr_to_truth``,
  the mean PSNR (dB, [0, 1] scale) between the edited image and the ground-truth counterfactual, the
  same face re-rendered with the attribute set (:meth:`latentedit.data.toyfaces.FaceParams.with_attributes`).

Sources:

* ``generated``: z drawn in blocks of :data:`DRAW_BLOCK` from ``torch.Generator().manual_seed(seed)``,
  mapped with psi = 1; the first ``N`` whose render the classifier labels as lacking the attribute.
* ``inverted``: held-out faces ``start, start + 1, ...`` whose *true* label is 0 and whose counterfactual
  exists (a bald face cannot get bangs), the first ``N``; each render is inverted into W+ (fixed noise,
  so renders use the stored noise) and the inversions are cached per face (``cache_dir``).
  ``baseline`` reports how many reconstructions the classifier already labels as having the attribute
  (an imperfect inversion can), the inversion PSNR and the reconstruction's PSNR to the counterfactual.

Summary per direction: ``best`` is the strength with the highest success rate (ties: the smallest
``|strength|``); ``first_at_target`` the smallest ``|strength|`` whose success rate reaches
``target_success`` (None if none does), with everything measured there; ``best_psnr`` (inverted
sources) the strength whose edit is closest to the counterfactual.

``strength_unit="spread"`` counts strengths in W spreads as ``apply-direction`` does
(:func:`latentedit.directions.apply.strength_scale`); the default ``"raw"`` multiplies the stored arrays.
``normalize`` rescales each direction to magnitude 1 (:func:`latentedit.directions.direction_magnitude`:
the norm of a W direction, the RMS row norm of a W+ one) so that one strength scale moves every
direction equally far and their side effects compare at equal edit size.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from latentedit import io as lio
from latentedit.data import toyfaces
from latentedit.directions.apply import apply_direction, apply_to_distance, render_latents, strength_scale, \
    w_distribution
from latentedit.directions.arithmetic import direction_magnitude
from latentedit.directions.arrays import as_direction_array, check_direction_shape, format_layers, format_strength, \
    parse_layers
from latentedit.directions.files import Boundary, boundary_of, direction_problems, load_direction
from latentedit.errors import InputError
from latentedit.model.generator import Generator

SOURCES = ("generated", "inverted")
#: z are drawn this many at a time for generated sources (part of what a seed means).
DRAW_BLOCK = 256
#: Attributes whose flip rate gets its own column in the tables unless told otherwise.
DEFAULT_WATCH = ("Male",)
#: Files written by :func:`write_report`.
REPORT_JSON, REPORT_MARKDOWN, REPORT_PLOT = "edit_eval.json", "edit_eval.md", "edit_eval.png"


def side_effect_attributes(attribute: str, names: Sequence[str] = toyfaces.ATTRIBUTE_NAMES) -> list[str]:
    """The attributes whose flips count as side effects of editing ``attribute``: all others, less the other
    hair colours when ``attribute`` is a hair colour (they are mutually exclusive in toyfaces)."""
    if attribute not in names:
        raise InputError(f"unknown attribute {attribute!r}; known: {', '.join(names)}")
    excluded = {attribute}
    if attribute in toyfaces.HAIR_COLOURS:
        excluded.update(toyfaces.HAIR_COLOURS)
    return [name for name in names if name not in excluded]


def flip_rates(before: np.ndarray, after: np.ndarray, names: Sequence[str], counted: Sequence[str]) -> dict[str, float]:
    """Per counted attribute, the fraction of rows whose 0/1 label (probability >= 0.5) differs between
    ``before`` and ``after`` (probabilities ``[N, A]`` in ``names`` order)."""
    flipped = (np.asarray(before) >= 0.5) != (np.asarray(after) >= 0.5)
    return {name: float(flipped[:, list(names).index(name)].mean()) if len(flipped) else 0.0 for name in counted}


def psnr_per_image(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PSNR ``[N]`` (dB) of clamped ``images`` against ``targets``, both ``[N, 3, H, W]`` in [-1, 1], on [0, 1]."""
    mse = ((images.clamp(-1, 1) - targets.clamp(-1, 1)) / 2).square().mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse.clamp_min(1e-10))


#: Source groups reported separately (toyfaces classifiers): bald heads, then the hair colour the classifier
#: finds most likely. An edit that works on average can fail on one of them (gray hair to blond, say).
SOURCE_GROUPS = ("black", "brown", "gray", "blond", "bald")
_GROUP_OF_COLOUR = {"Black_Hair": "black", "Brown_Hair": "brown", "Gray_Hair": "gray", "Blond_Hair": "blond"}


def source_groups(probs: np.ndarray, names: Sequence[str]) -> list[str] | None:
    """The group of every source ``[N]`` from its classifier probabilities ``[N, A]``: ``bald`` when Bald >= 0.5,
    else the most likely hair colour; None when the classifier lacks these attributes (no groups)."""
    names = list(names)
    if "Bald" not in names or not all(colour in names for colour in _GROUP_OF_COLOUR):
        return None
    colours = list(_GROUP_OF_COLOUR)
    colour_probs = np.asarray(probs)[:, [names.index(c) for c in colours]]
    bald = np.asarray(probs)[:, names.index("Bald")] >= 0.5
    return ["bald" if is_bald else _GROUP_OF_COLOUR[colours[int(k)]]
            for is_bald, k in zip(bald, colour_probs.argmax(axis=1))]


def group_records(edited_probs: np.ndarray, original_probs: np.ndarray, names: Sequence[str], attribute: str,
                  groups: Sequence[str], watch: Sequence[str]) -> dict[str, dict]:
    """Per source group: ``n``, ``success_rate``, ``side_effect_mean`` and the watched attributes' flip rates."""
    column = list(names).index(attribute)
    counted = side_effect_attributes(attribute, names)
    out = {}
    for group in SOURCE_GROUPS:
        index = np.array([i for i, g in enumerate(groups) if g == group], dtype=int)
        if not len(index):
            continue
        flips = flip_rates(original_probs[index], edited_probs[index], names, counted)
        out[group] = {"n": int(len(index)), "success_rate": float((edited_probs[index, column] >= 0.5).mean()),
                      "side_effect_mean": float(np.mean(list(flips.values()))) if flips else 0.0,
                      "watched": {name: flips.get(name) for name in watch}}
    return out


@dataclasses.dataclass
class EditSources:
    """The latents an evaluation edits.

    ``kind``: ``generated`` or ``inverted``; ``ids``: sample numbers (generated) or held-out face indices;
    ``w_plus [N, num_ws, w_dim]``; ``originals [N, 3, S, S]``: their unedited renders in [-1, 1];
    ``probs [N, A]``: classifier probabilities of ``originals``; ``targets`` / ``truths`` ``[N, 3, S, S]``:
    the held-out renders and their counterfactuals (inverted only); ``details``: how they were chosen.
    """

    kind: str
    ids: list[int]
    w_plus: torch.Tensor
    originals: torch.Tensor
    probs: np.ndarray
    targets: torch.Tensor | None = None
    truths: torch.Tensor | None = None
    details: dict = dataclasses.field(default_factory=dict)
    #: One generator per source (PTI inversions: each face has its own tuned generator), else None.
    generators: list | None = None

    def render(self, generator: Generator, w_plus: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``w_plus [N, num_ws, w_dim]`` (row i edits source i) -> images ``[N, 3, S, S]``, each source with its
        own generator when it has one."""
        return render_sources(generator, w_plus, self.generators, batch_size)


def render_sources(generator: Generator, w_plus: torch.Tensor, generators: Sequence | None = None,
                   batch_size: int = 64) -> torch.Tensor:
    """Render ``w_plus [N, num_ws, w_dim]`` with ``generator``, or row i with ``generators[i]`` when given."""
    if generators is None:
        return render_latents(generator, w_plus, batch_size)
    return torch.cat([render_latents(own, w_plus[i:i + 1], 1) for i, own in enumerate(generators)])


def _column(classifier, attribute: str) -> int:
    names = list(classifier.attribute_names)
    if attribute not in names:
        raise InputError(f"unknown attribute {attribute!r}; the classifier knows {', '.join(names)}")
    return names.index(attribute)


@torch.no_grad()
def generated_sources(generator: Generator, classifier, attribute: str, n: int, seed: int = 0, *,
                      batch_size: int = 64, max_draws: int | None = None, progress: bool = False,
                      present: bool = False) -> EditSources:
    """The first ``n`` generated samples (psi 1, stored noise) that the classifier labels as lacking ``attribute``
    (with ``present``: as having it already, to measure what an edit does to them).

    z come from ``torch.Generator().manual_seed(seed)``, :data:`DRAW_BLOCK` at a time; at most
    ``max_draws`` (default ``max(50 n, 5000)``) are drawn, then InputError.
    """
    from tqdm.auto import tqdm

    from latentedit.evaluate.classifier import predict_attributes

    column = _column(classifier, attribute)
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the number of sources must be an integer >= 1, got {n!r}")
    max_draws = max_draws or max(50 * n, 5000)
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(int(seed))
    kept_w, ids = [], []
    drawn = 0
    wording = "having" if present else "lacking"
    with tqdm(total=n, desc=f"sources {wording} {attribute}", unit="latent", disable=not progress, leave=False) as bar:
        while len(ids) < n and drawn < max_draws:
            z = torch.randn(DRAW_BLOCK, generator.z_dim, generator=rng)
            for start in range(0, DRAW_BLOCK, batch_size):
                if len(ids) >= n:
                    break
                w = generator.mapping(z[start:start + batch_size].to(device))
                images = generator.synthesis(w, "const").float().cpu()
                probs = predict_attributes(classifier, images, batch_size=batch_size).numpy()
                chosen = probs[:, column] >= 0.5 if present else probs[:, column] < 0.5
                for i in np.flatnonzero(chosen)[:n - len(ids)]:
                    kept_w.append(w[i].cpu())
                    ids.append(drawn + start + int(i))
                    bar.update(1)
            drawn += DRAW_BLOCK
    if len(ids) < n:
        raise InputError(f"only {len(ids)} of {drawn} generated samples {'have' if present else 'lack'} {attribute} "
                         f"(need {n}); lower --n{' / --n-present' if present else ''} or use another attribute")
    w_plus = generator.broadcast_w(torch.stack(kept_w)).contiguous()
    # Rendered again exactly as the edits will be (same batching), so that strength 0 reproduces them bit for bit.
    originals = render_latents(generator, w_plus, batch_size)
    return EditSources(kind="generated", ids=ids, w_plus=w_plus, originals=originals,
                       probs=predict_attributes(classifier, originals, batch_size=batch_size).numpy(),
                       details={"seed": int(seed), "drawn": drawn, "truncation_psi": 1.0, "noise": "const",
                                "selection": f"classifier probability of {attribute} {'>=' if present else '<'} 0.5"})


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``[S, S, 3]`` uint8 -> ``[3, S, S]`` float32 in [-1, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0


def iter_heldout_faces(attribute: str, start: int = 0, seed: int = toyfaces.HELDOUT_SEED, max_scan: int = 100000
                       ) -> Iterator[tuple[int, toyfaces.FaceParams, toyfaces.FaceParams]]:
    """Faces ``(index, params, counterfactual params)`` of toyfaces ``seed``, from ``start`` on (at most ``max_scan``
    indices), whose true ``attribute`` is 0 and whose counterfactual (``attribute`` set to 1) exists."""
    if attribute not in toyfaces.ATTRIBUTE_NAMES:
        raise InputError(f"{attribute!r} is not a toyfaces attribute; inverted sources need one of "
                         f"{', '.join(toyfaces.ATTRIBUTE_NAMES)}")
    for index in range(start, start + max_scan):
        params = toyfaces.sample_params(seed, index)
        if params.attributes[attribute] == 0:
            try:
                counterfactual = params.with_attributes(**{attribute: 1})
            except InputError:
                continue  # e.g. bangs on a bald face: no counterfactual to compare with
            yield index, params, counterfactual


@torch.no_grad()
def render_faces(faces: Sequence, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders ``[N, 3, size, size]`` in [-1, 1] of :func:`iter_heldout_faces` entries and of their
    counterfactuals."""
    targets = torch.stack([_to_tensor(toyfaces.render(params, size)) for _, params, _ in faces])
    truths = torch.stack([_to_tensor(toyfaces.render(cf, size)) for _, _, cf in faces])
    return targets, truths


def inverted_sources(generator: Generator, classifier, attribute: str, n: int, *, settings=None, start: int = 0,
                     seed: int = toyfaces.HELDOUT_SEED, batch_size: int = 8,
                     cache_dir: str | os.PathLike | None = None, cache_key: Mapping | None = None,
                     perceptual=None, require_absent: bool = True, max_candidates: int | None = None,
                     encoder=None, progress: bool = False) -> EditSources:
    """Inversions of held-out renders lacking ``attribute`` (:func:`iter_heldout_faces`), with their counterfactuals.

    Candidates are inverted ``batch_size`` at a time, in index order. With ``require_absent`` (default) a
    candidate is kept only when the classifier also labels its *reconstruction* as lacking the attribute
    (an edit cannot add what the unedited image already shows); the dropped indices are reported. At
    most ``max_candidates`` (default ``4 n + 16``) are inverted, then InputError (the inversions are too
    poor: raise the steps). ``settings``: :class:`latentedit.invert.InversionSettings` (fixed noise);
    ``perceptual``: the loss network (None: MSE only). With ``cache_dir`` each face's W+ is stored as
    ``<digest>_<index>.npy`` (``digest`` hashes ``cache_key``, which should identify the generator, the
    settings, the size and the seed) and reused when present.

    ``settings.method`` picks the inversion method (:func:`latentedit.invert.pti.invert_with_method`;
    ``encoder``: the loaded encoder the encoder methods need). With ``pti`` every source keeps its own tuned
    generator (``EditSources.generators``), cached beside its latent as ``<digest>_<index>_G.safetensors``
    (its synthesis and mapping weights; reloaded into a copy of ``generator``), and every render of that
    source, edited or not, uses it.
    """
    from tqdm.auto import tqdm

    from latentedit.evaluate.classifier import predict_attributes
    from latentedit.invert.optimize import InversionSettings, PerceptualSetup
    from latentedit.invert.pti import invert_with_method

    settings = (settings or InversionSettings()).validated()  # a W inversion is edited as W+ with equal rows
    tuned = settings.method == "pti"
    if settings.uses_encoder() and encoder is None:
        raise InputError(f"inversion method {settings.method} needs an encoder")
    setup = PerceptualSetup(loss=perceptual, lpips_metric=None, kind=getattr(perceptual, "kind", None) or "none",
                            source=getattr(perceptual, "source", None), notice=None)
    if settings.noise != "fixed":
        raise InputError("edit evaluation renders with the generator's stored noise; invert with fixed noise")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the number of sources must be an integer >= 1, got {n!r}")
    column = _column(classifier, attribute)
    max_candidates = max_candidates or 4 * n + 16
    digest = hashlib.sha256(json.dumps({"key": dict(cache_key or {}), "settings": settings.to_dict(),
                                        "size": generator.size, "seed": seed,
                                        "perceptual": getattr(perceptual, "source", None)},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else None

    def cached(index: int) -> tuple[np.ndarray | None, object | None]:
        """The cached latent of a face and (PTI) its tuned generator; (None, None) when either is missing or
        damaged, so the face is inverted again."""
        path = cache / f"{digest}_{index}.npy" if cache is not None else None
        if path is None or not path.is_file():
            return None, None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None, None
        if array.shape != (generator.num_ws, generator.w_dim):
            return None, None
        own = None
        if tuned:
            own = _load_tuned_copy(generator, cache / f"{digest}_{index}_G.safetensors")
            if own is None:
                return None, None
        return array.astype(np.float32), own

    candidates = iter_heldout_faces(attribute, start, seed)
    kept: list[tuple] = []
    dropped: list[int] = []
    counts = {"cached": 0, "inverted": 0}
    examined = 0
    with tqdm(total=n, desc=f"inverted sources lacking {attribute}", unit="face", disable=not progress,
              leave=False) as bar:
        while len(kept) < n:
            wanted = min(batch_size, n - len(kept), max_candidates - examined)
            faces = [face for _, face in zip(range(wanted), candidates)]
            if not faces:
                raise InputError(f"only {len(kept)} of {examined} inverted held-out faces lacking {attribute} are "
                                 f"labelled as lacking it after inversion (need {n}); raise --invert-steps or lower "
                                 f"--n")
            examined += len(faces)
            targets, truths = render_faces(faces, generator.size)
            found = [cached(index) for index, _, _ in faces]
            latents = [latent for latent, _ in found]
            owns = [own for _, own in found]
            todo = [k for k, latent in enumerate(latents) if latent is None]
            counts["cached"] += len(faces) - len(todo)
            if todo:
                results = invert_with_method(generator, targets[todo], settings,
                                             names=[f"heldout{faces[k][0]}" for k in todo], encoder=encoder,
                                             perceptual=setup)
                for k, result in zip(todo, results):
                    if result.error is not None:
                        raise InputError(f"inverting held-out face {faces[k][0]} failed: {result.error}")
                    latent = result.latent
                    if latent.ndim == 1:  # --space w: the one w on every row
                        latent = np.repeat(latent[None], generator.num_ws, axis=0)
                    latents[k], owns[k] = latent, result.tuned_generator
                    if cache is not None:
                        if tuned:  # the generator first: a latent without its generator is not a cache hit
                            lio.write_bytes(cache / f"{digest}_{faces[k][0]}_G.safetensors",
                                            lio.safetensors_bytes(_contiguous_state(result.tuned_generator)))
                        lio.save_npy(cache / f"{digest}_{faces[k][0]}.npy", latent)
                counts["inverted"] += len(todo)
            w_plus = torch.from_numpy(np.stack(latents))
            originals = render_sources(generator, w_plus, owns if tuned else None)
            probs = predict_attributes(classifier, originals).numpy()
            for k, face in enumerate(faces):
                if require_absent and probs[k, column] >= 0.5:
                    dropped.append(face[0])
                    continue
                kept.append((face[0], w_plus[k], originals[k], probs[k], targets[k], truths[k], owns[k]))
                bar.update(1)
    ids = [entry[0] for entry in kept]
    w_plus, originals, probs, targets, truths = (torch.stack([e[1] for e in kept]), torch.stack([e[2] for e in kept]),
                                                 np.stack([e[3] for e in kept]), torch.stack([e[4] for e in kept]),
                                                 torch.stack([e[5] for e in kept]))
    generators = [e[6] for e in kept] if tuned else None
    details = {"seed": seed, "start": start, "indices": ids,
               "selection": (f"true {attribute} = 0, a counterfactual exists"
                             + (f", and the classifier labels the reconstruction as lacking {attribute}"
                                if require_absent else "")),
               "dropped_reconstructions_labelled_present": dropped,
               "inversion": {"settings": settings.to_dict(),
                             "perceptual": getattr(perceptual, "kind", None) or "none (MSE only)", **counts},
               "baseline": {"reconstruction_labelled_present": float((probs[:, column] >= 0.5).mean()),
                            "inversion_psnr_db": round(float(psnr_per_image(originals, targets).mean()), 4),
                            "reconstruction_psnr_to_truth_db": round(float(psnr_per_image(originals, truths).mean()),
                                                                     4),
                            "target_psnr_to_truth_db": round(float(psnr_per_image(targets, truths).mean()), 4)}}
    return EditSources(kind="inverted", ids=ids, w_plus=w_plus, originals=originals, probs=probs, targets=targets,
                       truths=truths, details=details, generators=generators)


def _contiguous_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def _load_tuned_copy(generator: Generator, path: Path):
    """A copy of ``generator`` with the weights cached at ``path`` (a PTI-tuned generator), or None when the
    file is missing or does not fit (it is then tuned again)."""
    import copy

    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    if not path.is_file():
        return None
    try:
        tensors = load_safetensors(path.read_bytes())
        own = copy.deepcopy(generator)
        own.load_state_dict(tensors, strict=True)
    except (SafetensorError, OSError, RuntimeError, ValueError):
        return None
    return own.eval().requires_grad_(False)


@torch.no_grad()
def evaluate_direction(generator: Generator, classifier, sources: EditSources, direction, attribute: str,
                       strengths: Sequence[float], *, layers: Sequence[int] | None = None, lpips_metric=None,
                       batch_size: int = 64, keep: int = 8, boundary: Boundary | None = None,
                       watch: Sequence[str] = DEFAULT_WATCH) -> tuple[list[dict], torch.Tensor]:
    """Measure one direction at every strength (see the module docstring for each metric).

    With a ``boundary``, each "strength" is a target signed distance to that SVM boundary instead
    (:func:`latentedit.directions.apply_to_distance`: every source gets its own step); the records then
    also hold ``median_step``, the median absolute step along the direction.

    Each record also holds ``by_group`` (:func:`group_records`: the same measures per source group, when the
    classifier knows the groups' attributes).

    Returns the per-strength records and the renders of the first ``keep`` sources ``[keep, S, 3, size, size]``.
    """
    from latentedit.evaluate.classifier import predict_attributes

    names = list(classifier.attribute_names)
    _column(classifier, attribute)
    vector = as_direction_array(direction)
    check_direction_shape(vector, generator.num_ws, generator.w_dim)
    lpips_targets = None
    if lpips_metric is not None:
        metric_device = next(lpips_metric.parameters()).device
        lpips_targets = [lpips_metric.target_features(sources.originals[i:i + batch_size].to(metric_device))
                         for i in range(0, len(sources.ids), batch_size)]
    groups = source_groups(sources.probs, names)
    watch = [name for name in watch if name in names]
    records, kept = [], []
    for strength in strengths:
        steps = None
        if boundary is None:
            edited = apply_direction(sources.w_plus, vector, float(strength), layers)
        else:
            edited, steps = apply_to_distance(sources.w_plus, vector, boundary, float(strength), layers)
        images = sources.render(generator, edited, batch_size)
        probs = predict_attributes(classifier, images, batch_size=batch_size).numpy()
        lpips_value = None
        if lpips_metric is not None:
            distances = [lpips_metric(images[i:i + batch_size].to(metric_device), features).cpu()
                         for i, features in zip(range(0, len(images), batch_size), lpips_targets)]
            lpips_value = float(torch.cat(distances).mean())
        records.append({"strength": float(strength),
                        **({} if steps is None else {"median_step": float(steps.abs().median())}),
                        **edit_record(images, probs, sources.originals, sources.probs, names, attribute,
                                      truths=sources.truths, lpips=lpips_value),
                        **({} if groups is None else
                           {"by_group": group_records(probs, sources.probs, names, attribute, groups, watch)})})
        kept.append(images[:keep])
    return records, torch.stack(kept, dim=1)


def edit_record(edited: torch.Tensor, edited_probs: np.ndarray, originals: torch.Tensor, original_probs: np.ndarray,
                names: Sequence[str], attribute: str, *, truths: torch.Tensor | None = None,
                lpips: float | None = None) -> dict:
    """The measurements of one edit of ``N`` images, whatever made it (a latent direction or StarGAN).

    ``edited`` / ``originals`` ``[N, 3, S, S]`` in [-1, 1]; ``edited_probs`` / ``original_probs`` ``[N, A]``:
    classifier probabilities in ``names`` order; ``truths``: the counterfactual renders (or None);
    ``lpips``: the mean LPIPS distance edited-to-original when measured. Returns ``success_rate``,
    ``mean_probability``, ``flips`` (per side-effect attribute), ``side_effect_mean``, ``side_effect_max``,
    ``pixel_change``, ``lpips`` and ``psnr_to_truth_db`` (None without truths).
    """
    column = list(names).index(attribute)
    flips = flip_rates(original_probs, edited_probs, names, side_effect_attributes(attribute, names))
    worst = max(flips, key=flips.get) if flips else None
    return {
        "success_rate": float((edited_probs[:, column] >= 0.5).mean()),
        "mean_probability": float(edited_probs[:, column].mean()),
        "flips": {name: round(rate, 6) for name, rate in flips.items()},
        "side_effect_mean": float(np.mean(list(flips.values()))) if flips else 0.0,
        "side_effect_max": {"attribute": worst, "rate": flips[worst] if worst else 0.0},
        "pixel_change": float(((edited.clamp(-1, 1) - originals.clamp(-1, 1)).abs() / 2).mean()),
        "lpips": lpips,
        "psnr_to_truth_db": float(psnr_per_image(edited, truths).mean()) if truths is not None else None,
    }


def _at(records: list[dict], index: int | None, watch: Sequence[str]) -> dict | None:
    if index is None:
        return None
    record = records[index]
    return {"strength": record["strength"], "success_rate": record["success_rate"],
            "side_effect_mean": record["side_effect_mean"], "side_effect_max": record["side_effect_max"],
            "watched": {name: record["flips"].get(name) for name in watch},
            "pixel_change": record["pixel_change"], "lpips": record["lpips"],
            "psnr_to_truth_db": record["psnr_to_truth_db"]}


def summarise(records: list[dict], target_success: float = 0.8, watch: Sequence[str] = DEFAULT_WATCH) -> dict:
    """``{best, first_at_target, best_psnr}`` of one direction's per-strength records (module docstring)."""
    by_size = sorted(range(len(records)), key=lambda i: (abs(records[i]["strength"]), records[i]["strength"] < 0))
    best = max(by_size, key=lambda i: records[i]["success_rate"]) if records else None
    reaching = [i for i in by_size if records[i]["success_rate"] >= target_success]
    summary = {"best": _at(records, best, watch), "target_success": target_success,
               "first_at_target": _at(records, reaching[0] if reaching else None, watch), "best_psnr": None}
    if records and records[0]["psnr_to_truth_db"] is not None:
        top = max(by_size, key=lambda i: records[i]["psnr_to_truth_db"])
        summary["best_psnr"] = {"strength": records[top]["strength"],
                                "psnr_to_truth_db": records[top]["psnr_to_truth_db"],
                                "success_rate": records[top]["success_rate"]}
    return summary


def evaluate_directions(generator: Generator, classifier, sources: EditSources, directions: Mapping[str, np.ndarray],
                        attribute: str, strengths: Sequence[float], *, layers: Sequence[int] | None = None,
                        normalize: bool = False, strength_unit: str = "raw", lpips_metric=None,
                        watch: Sequence[str] = DEFAULT_WATCH,
                        target_success: float = 0.8, batch_size: int = 64, keep: int = 8,
                        boundaries: Mapping[str, Boundary] | None = None,
                        progress: bool = False) -> tuple[dict, dict[str, torch.Tensor]]:
    """Evaluate several named directions on the same sources.

    ``boundaries``: when given (one per direction name), strengths are target distances to each direction's
    SVM boundary (see :func:`evaluate_direction`); the result's ``mode`` says which.

    Returns the JSON-ready result (``attribute``, ``strengths``, ``side_effect_attributes``, ``directions``:
    per name ``{magnitude, scale, per_strength, summary}``) and per name the kept renders
    ``[keep, S, 3, size, size]``.
    """
    from tqdm.auto import tqdm

    if not directions:
        raise InputError("no direction to evaluate")
    unknown = [name for name in watch if name not in classifier.attribute_names]
    if unknown:
        raise InputError(f"unknown attribute(s) to watch: {', '.join(unknown)}")
    rows = parse_layers(layers, generator.num_ws) if layers is not None else None
    # The target (and, for a hair colour, the other colours) must change, so watching them says nothing:
    # e.g. the default watch of Male is dropped when Male is the attribute being added.
    side_effects = side_effect_attributes(attribute, classifier.attribute_names)
    watch = [name for name in watch if name in side_effects]
    if boundaries is not None and set(boundaries) != set(directions):
        raise InputError("target distances need an SVM boundary for every direction")
    if normalize and strength_unit != "raw":
        raise InputError("--normalize and --strength-unit spread both rescale the directions; choose one")
    spread = None
    if strength_unit != "raw" and boundaries is None:
        spread = w_distribution(generator)[1]
    result = {"attribute": attribute, "strengths": [float(s) for s in strengths], "normalize": normalize,
              "strength_unit": strength_unit if boundaries is None else "distance",
              **({} if spread is None else {"w_spread": spread}),
              "mode": "strength" if boundaries is None else "distance",
              "layers": format_layers(rows) if rows is not None else "all",
              "side_effect_attributes": side_effects,
              "watch": list(watch), "directions": {}}
    kept = {}
    for name, vector in tqdm(list(directions.items()), desc="directions", unit="direction",
                             disable=not progress or len(directions) < 2):
        vector = as_direction_array(vector, name=f"direction {name}")
        check_direction_shape(vector, generator.num_ws, generator.w_dim, name=f"direction {name}")
        magnitude = direction_magnitude(vector, rows if rows is not None and vector.ndim == 2 else None)
        scale = 1.0
        if spread is not None:
            scale = strength_scale(vector, rows if rows is not None else range(generator.num_ws), spread,
                                   strength_unit)
        if normalize:
            if magnitude == 0:
                raise InputError(f"direction {name} is zero on the edited rows; it cannot be normalised")
            scale = 1.0 / magnitude
        records, images = evaluate_direction(generator, classifier, sources, vector * scale, attribute, strengths,
                                             layers=rows, lpips_metric=lpips_metric, batch_size=batch_size, keep=keep,
                                             boundary=None if boundaries is None else boundaries[name], watch=watch)
        result["directions"][name] = {"magnitude": magnitude, "scale": scale, "per_strength": records,
                                      "summary": summarise(records, target_success, watch)}
        kept[name] = images
    return result, kept


# --------------------------------------------------------------------------------------------------
# Reports


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _worst(worst: dict) -> str:
    return f"{worst['attribute']} {_pct(worst['rate'])}" if worst["attribute"] and worst["rate"] > 0 else "none"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_markdown(result: dict) -> str:
    """The report as markdown: a summary table, one table per direction by strength, and the side effects
    of every attribute at each direction's best strength."""
    attribute, watch = result["attribute"], result["watch"]
    sources = result.get("sources", {})
    inverted = sources.get("kind") == "inverted"
    lines = [f"# Edit evaluation: {attribute}", ""]
    if sources:
        lines.append(f"Sources: {sources.get('count')} {sources.get('kind')} latents lacking {attribute}"
                     + (f" (held-out toyfaces, seed {sources['details'].get('seed')})" if inverted else "")
                     + f"; strengths {', '.join(format_strength(s) for s in result['strengths'])}"
                     + (" (directions normalised to magnitude 1)" if result.get("normalize") else "")
                     + (f" (in W spreads of {result['w_spread']:.4g}: strength 1 moves the most-moved row that far)"
                        if result.get("w_spread") else "")
                     + f"; layers {result.get('layers', 'all')}.")
    if result.get("mode") == "distance":
        lines.append("Each strength is a target signed distance to the direction's SVM boundary: every source is "
                     "moved along the direction until the mean of its edited rows is that far on the attribute's "
                     "side (InterFaceGAN's editing), so sources far from the boundary move further.")
    if inverted and "baseline" in sources.get("details", {}):
        base = sources["details"]["baseline"]
        dropped = sources["details"].get("dropped_reconstructions_labelled_present", [])
        method = sources["details"].get("inversion", {}).get("settings", {}).get("method", "optimize")
        lines.append(f"Inversion (--invert-method {method}) PSNR {base['inversion_psnr_db']:.2f} dB; unedited reconstruction to counterfactual "
                     f"{base['reconstruction_psnr_to_truth_db']:.2f} dB; {len(dropped)} candidate(s) dropped because "
                     f"the classifier already labelled their reconstruction {attribute}.")
    hair_note = " (other hair colours excluded: they must change)" if attribute in toyfaces.HAIR_COLOURS else ""
    lines += ["", f"Side effects = flip rate of the other attributes{hair_note}. Best = strength with the highest "
              f"success rate.", ""]
    header = ["direction", "best strength", "success", "mean side effect", "worst side effect"] + \
        [f"{name} flips" for name in watch] + ["pixel change", "LPIPS"] + \
        (["best PSNR to truth (strength)"] if inverted else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in result["directions"].items():
        best = entry["summary"]["best"]
        worst = best["side_effect_max"]
        row = [name, format_strength(best["strength"]), _pct(best["success_rate"]), _pct(best["side_effect_mean"]),
               _worst(worst)]
        row += [_pct(best["watched"].get(w)) for w in watch]
        row += [_num(best["pixel_change"]), _num(best["lpips"])]
        if inverted:
            top = entry["summary"]["best_psnr"]
            row.append(f"{top['psnr_to_truth_db']:.2f} dB ({format_strength(top['strength'])})")
        lines.append("| " + " | ".join(row) + " |")
    for name, entry in result["directions"].items():
        target = entry["summary"]["first_at_target"]
        lines += ["", f"## {name}", "",
                  f"Magnitude {entry['magnitude']:.4g}"
                  + (f", scaled by {entry['scale']:.4g}" if result.get("normalize") or result.get("w_spread")
                     else "") + ". "
                  + (f"First strength reaching {_pct(entry['summary']['target_success'])} success: "
                     f"{format_strength(target['strength'])}." if target else
                     f"No strength reaches {_pct(entry['summary']['target_success'])} success."), ""]
        header = ["strength", "success", "mean side effect", "worst side effect"] + [f"{w} flips" for w in watch] + \
            ["pixel change", "LPIPS"] + (["PSNR to truth"] if inverted else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for record in entry["per_strength"]:
            worst = record["side_effect_max"]
            row = [format_strength(record["strength"]), _pct(record["success_rate"]), _pct(record["side_effect_mean"]),
                   _worst(worst)]
            row += [_pct(record["flips"].get(w)) for w in watch]
            row += [_num(record["pixel_change"]), _num(record["lpips"])]
            if inverted:
                row.append(f"{record['psnr_to_truth_db']:.2f} dB")
            lines.append("| " + " | ".join(row) + " |")
        lines += _group_table(entry["per_strength"], watch)
    present = result.get("present")
    if present:
        lines += ["", f"## Sources that already have {attribute}", "",
                  f"{present['count']} generated sources the classifier already labels {attribute} (seed "
                  f"{present['details'].get('seed')}), edited the same way. Kept = still labelled {attribute}; an edit "
                  f"should keep it and change little else.", ""]
        header = ["direction", "strength", "kept", "mean side effect"] + [f"{w} flips" for w in watch] + \
            ["pixel change"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, records in present["directions"].items():
            for record in records:
                row = [name, format_strength(record["strength"]), _pct(record["success_rate"]),
                       _pct(record["side_effect_mean"])] + [_pct(record["flips"].get(w)) for w in watch] + \
                    [_num(record["pixel_change"])]
                lines.append("| " + " | ".join(row) + " |")
    counted = result["side_effect_attributes"]
    lines += ["", "## Flip rate of every other attribute at the best strength", "",
              "| direction (strength) | " + " | ".join(counted) + " |", "|" + "---|" * (len(counted) + 1)]
    for name, entry in result["directions"].items():
        strength = entry["summary"]["best"]["strength"]
        record = next(r for r in entry["per_strength"] if r["strength"] == strength)
        lines.append(f"| {name} ({format_strength(strength)}) | "
                     + " | ".join(f"{100 * record['flips'][a]:.0f}" for a in counted) + " |")
    return "\n".join(lines) + "\n"


def _group_table(records: list[dict], watch: Sequence[str]) -> list[str]:
    """Success and watched flips per source group and strength (empty when there are no groups)."""
    if not records or "by_group" not in records[0]:
        return []
    groups = list(records[0]["by_group"])
    counts = {group: records[0]["by_group"][group]["n"] for group in groups}
    watched = f" / {', '.join(watch)} flips" if watch else ""
    lines = ["", f"By source group (success / mean side effect{watched}):", "",
             "| strength | " + " | ".join(f"{group} (n={counts[group]})" for group in groups) + " |",
             "|" + "---|" * (len(groups) + 1)]
    for record in records:
        cells = []
        for group in groups:
            entry = record["by_group"][group]
            cells.append(_pct(entry["success_rate"]) + f" / {_pct(entry['side_effect_mean'])}"
                         + "".join(f" / {_pct(entry['watched'].get(w))}" for w in watch))
        lines.append(f"| {format_strength(record['strength'])} | " + " | ".join(cells) + " |")
    return lines


def plot_result(result: dict, path: str | os.PathLike) -> None:
    """Curves by strength, one line per direction: success rate, mean side effect, the watched attributes'
    flips, and pixel change (or PSNR to the counterfactual for inverted sources); written as PNG."""
    # A bare Figure renders with Agg and never touches pyplot's global backend or a display.
    from matplotlib.figure import Figure

    inverted = result.get("sources", {}).get("kind") == "inverted"
    figure = Figure(figsize=(11, 8), dpi=100)
    axes = figure.subplots(2, 2)
    panels = [("success_rate", f"success: {result['attribute']} present", True),
              ("side_effect_mean", "mean side-effect flip rate", True),
              ("watched", "flip rate of " + (", ".join(result["watch"]) or "(nothing watched)"), True),
              ("psnr_to_truth_db" if inverted else "pixel_change",
               "PSNR to the counterfactual (dB)" if inverted else "mean |pixel change| ([0, 1])", False)]
    for axis, (key, title, is_rate) in zip(axes.flat, panels):
        for name, entry in result["directions"].items():
            xs = [r["strength"] for r in entry["per_strength"]]
            if key == "watched":
                for watched in result["watch"]:
                    axis.plot(xs, [100 * r["flips"][watched] for r in entry["per_strength"]], marker="o",
                              label=f"{name}: {watched}" if len(result["watch"]) > 1 else name)
                continue
            ys = [r[key] for r in entry["per_strength"]]
            axis.plot(xs, [100 * y for y in ys] if is_rate else ys, marker="o", label=name)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("strength")
        if is_rate:
            axis.set_ylabel("%")
            axis.set_ylim(-3, 103)
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    if len(result["watch"]) > 1:
        axes.flat[2].legend(fontsize=7)
    figure.suptitle(f"Editing {result['attribute']} ({result.get('sources', {}).get('kind', '?')} sources)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    lio.write_bytes(path, buffer.getvalue())


def _sample_grid(images: torch.Tensor, sources: EditSources, keep: int) -> np.ndarray:
    """Rows = the first sources; columns = strengths (inverted: the held-out render first, the counterfactual last)."""
    rows = images.shape[0]
    columns = [images[:, j] for j in range(images.shape[1])]
    if sources.targets is not None:
        columns = [sources.targets[:rows]] + columns + [sources.truths[:rows]]
    tiles = torch.stack(columns, dim=1).reshape(-1, *images.shape[2:])
    return lio.make_grid(lio.to_uint8(tiles), columns=len(columns))


def write_report(result: dict, kept: Mapping[str, torch.Tensor], sources: EditSources, out_dir: str | os.PathLike
                 ) -> list[str]:
    """Write ``edit_eval.json``, ``edit_eval.md``, ``edit_eval.png`` and ``<direction>_samples.png``; return the
    file names."""
    out_dir = Path(out_dir)
    files = []
    for name, images in kept.items():
        file_name = f"{_safe(name)}_samples.png"
        lio.save_png(out_dir / file_name, _sample_grid(images, sources, images.shape[0]))
        files.append(file_name)
    plot_result(result, out_dir / REPORT_PLOT)
    markdown = format_markdown(result)
    with lio.atomic_write(out_dir / REPORT_MARKDOWN, "w") as handle:
        handle.write(markdown)
    files = [REPORT_JSON, REPORT_MARKDOWN, REPORT_PLOT] + files
    result["files"] = files
    lio.write_json(out_dir / REPORT_JSON, result)
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "direction"


def direction_names(paths: Sequence[str]) -> list[tuple[str, str]]:
    """``[(name, path)]`` for ``--vec`` values ``PATH`` or ``NAME=PATH``; names default to file stems and are
    made unique (``_2``, ``_3``...)."""
    named = []
    for item in paths:
        name, sep, rest = str(item).partition("=")
        if sep and name and "/" not in name and not Path(item).exists():
            named.append((name, rest))
        else:
            named.append((Path(item).stem, str(item)))
    seen: dict[str, int] = {}
    unique = []
    for name, path in named:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}_{seen[name]}", path))
    return unique


def evaluate_edit_to_folder(generator: Generator, classifier, vec_paths: Sequence[str], attribute: str,
                            strengths: Sequence[float], out_dir: str | os.PathLike, *, source: str = "generated",
                            n: int = 100, seed: int = 0, start: int = 0, layers: str | Sequence[int] | None = None,
                            normalize: bool = False, strength_unit: str = "raw", invert_settings=None,
                            invert_batch: int = 8,
                            checkpoint_info: Mapping | None = None, classifier_info: Mapping | None = None,
                            watch: Sequence[str] = DEFAULT_WATCH, target_success: float = 0.8, batch_size: int = 64,
                            keep: int = 8, cache_dir: str | os.PathLike | None = None, to_distance: bool = False,
                            n_present: int = 0, log: Callable[[str], None] | None = None,
                            progress: bool = True) -> dict:
    """What ``latentedit evaluate edit`` runs: load the directions, build the sources, evaluate, write the report.

    ``to_distance``: the strengths are target distances to each direction's SVM boundary (from its sidecar).

    ``n_present``: also edit this many generated sources that already have the attribute (same ``seed``),
    reported under ``present`` (``success_rate`` there is the rate that keep it).

    ``cache_dir`` (inverted sources): where inversions are kept between runs (default ``out_dir/inversions``).
    Returns the result (also written as ``edit_eval.json``).
    """
    from latentedit.invert.perceptual import build_perceptual, find_vgg16_weights

    log = log or (lambda message: None)
    if source not in SOURCES:
        raise InputError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if attribute not in classifier.attribute_names:
        raise InputError(f"unknown attribute {attribute!r}; the classifier knows "
                         f"{', '.join(classifier.attribute_names)}")
    if not 0 < target_success <= 1:
        raise InputError(f"target success must be in (0, 1], got {target_success}")
    checkpoint_info = dict(checkpoint_info or {})
    out_dir = Path(out_dir)
    directions, direction_info, boundaries = {}, {}, {}
    for name, path in direction_names(vec_paths):
        direction = load_direction(path)
        if to_distance:
            boundaries[name] = boundary_of(direction)
        for problem in direction_problems(direction, generator.num_ws, generator.w_dim, checkpoint_info.get("sha256")):
            log(problem)
        directions[name] = direction.vector
        direction_info[name] = {"path": path, "sha256": lio.sha256_file(path), "shape": list(direction.vector.shape),
                                "method": direction.meta.get("method"), "params": direction.meta.get("params"),
                                "seeds": direction.meta.get("seeds")}
    device = next(generator.parameters()).device
    weights = find_vgg16_weights()
    lpips_metric = build_perceptual("lpips", weights, image_size=generator.size, device=device) if weights else None
    if lpips_metric is None:
        log("note: LPIPS not measured: the VGG16 weights are not available locally (reported as null)")
    if source == "generated":
        sources = generated_sources(generator, classifier, attribute, n, seed, batch_size=batch_size,
                                    progress=progress)
    else:
        from latentedit.invert.optimize import InversionSettings, prepare_perceptual

        settings = (invert_settings or InversionSettings()).validated()
        encoder, encoder_sha256 = None, None
        if settings.uses_encoder():  # before the perceptual notice: a wrong encoder is the line that matters
            from latentedit.invert.encoder import DEFAULT_ENCODER, load_encoder

            encoder, encoder_info = load_encoder(settings.encoder or DEFAULT_ENCODER,
                                                 generator_sha256=checkpoint_info.get("sha256"),
                                                 generator_provenance=checkpoint_info.get("provenance"),
                                                 force=settings.force, generator=generator, device=device)
            encoder_sha256 = encoder_info["sha256"]
            for note in encoder_info["notes"]:
                log(f"note: {note}")
        setup = prepare_perceptual(settings, generator.size, device)
        if setup.notice:
            log(setup.notice)
        sources = inverted_sources(generator, classifier, attribute, n, settings=settings, start=start,
                                   batch_size=invert_batch,
                                   cache_dir=cache_dir if cache_dir is not None else out_dir / "inversions",
                                   cache_key={"generator_sha256": checkpoint_info.get("sha256"),
                                              **({"encoder_sha256": encoder_sha256} if encoder_sha256 else {})},
                                   perceptual=setup.loss, encoder=encoder, progress=progress)
        if encoder_sha256:
            sources.details["inversion"]["encoder_sha256"] = encoder_sha256
    result, kept = evaluate_directions(generator, classifier, sources, directions, attribute, strengths,
                                       layers=layers, normalize=normalize, strength_unit=strength_unit,
                                       lpips_metric=lpips_metric, watch=watch,
                                       target_success=target_success, batch_size=batch_size, keep=keep,
                                       boundaries=boundaries if to_distance else None, progress=progress)
    for name, info in direction_info.items():
        result["directions"][name]["file"] = info
    if n_present:
        with_attribute = generated_sources(generator, classifier, attribute, n_present, seed, batch_size=batch_size,
                                           progress=progress, present=True)
        present, _ = evaluate_directions(generator, classifier, with_attribute, directions, attribute, strengths,
                                         layers=layers, normalize=normalize, strength_unit=strength_unit,
                                         watch=watch,
                                         target_success=target_success, batch_size=batch_size, keep=1,
                                         boundaries=boundaries if to_distance else None)
        result["present"] = {"count": len(with_attribute.ids), "ids": with_attribute.ids,
                             "details": with_attribute.details,
                             "directions": {name: entry["per_strength"]
                                            for name, entry in present["directions"].items()}}
    result = {"command": "evaluate edit", **result,
              "sources": {"kind": sources.kind, "count": len(sources.ids), "ids": sources.ids,
                          "details": sources.details},
              "checkpoint": checkpoint_info, "classifier": dict(classifier_info or {}),
              "lpips": "LPIPS-VGG v0.1" if lpips_metric is not None else None,
              "definitions": {
                  "success_rate": f"fraction of sources the classifier labels {attribute} (p >= 0.5) after the edit",
                  "flips": "fraction of sources whose 0/1 label of an attribute differs from the unedited render",
                  "pixel_change": "mean |edited - unedited| over pixels, [0, 1] scale",
                  "psnr_to_truth_db": "mean PSNR of the edited image to the counterfactual render (inverted sources)"},
              "versions": lio.versions()}
    write_report(result, kept, sources, out_dir)
    return result
