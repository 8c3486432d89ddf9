"""Editing directions in W and W+ (SPEC §4.2, §5): how they are made, stored, applied and learned.

A *direction* is a float32 array, either W ``[w_dim]`` or W+ ``[num_ws, w_dim]``, saved as ``NAME.npy``
with a JSON provenance sidecar ``NAME.json``. One module per seam:

- :mod:`~latentedit.directions.arrays`: row sets (``"3-5"``), strengths (``"-1:2:4"``), shape checks.
- :mod:`~latentedit.directions.files`: the file format and sidecars, and the SVM boundary a sidecar records.
- :mod:`~latentedit.directions.arithmetic`: ``A - B`` and means, on arrays and files.
- :mod:`~latentedit.directions.apply`: a strength or a distance to a boundary applied to latents
  (``latentedit apply-direction``).
- :mod:`~latentedit.directions.from_pulse`: the mean difference of same-seed PULSE pairs (the seed post).
- :mod:`~latentedit.directions.svm`: InterFaceGAN (linear SVM on labelled samples, conditioning).
- :mod:`~latentedit.directions.unsupervised`: SeFa and GANSpace.
- :mod:`~latentedit.directions.learn`: a direction learned against a guide classifier (GANalyze-style).
"""
from latentedit.directions.apply import apply_direction, apply_to_distance, apply_to_folder, render_latents, \
    sweep_grid, w_plus_from_seeds
from latentedit.directions.arithmetic import difference, difference_files, direction_magnitude, mean_files, mean_of
from latentedit.directions.arrays import DEFAULT_BATCH, as_direction_array, check_direction_shape, format_layers, \
    format_strength, parse_layers, parse_strengths
from latentedit.directions.files import BOUNDARY_DEFINITION, DIRECTION_FORMAT, DIRECTION_FORMAT_VERSION, Boundary, \
    Direction, boundary_of, describe_direction, direction_problems, latent_record, load_direction, \
    recorded_generator_sha256, save_direction, sidecar_path
from latentedit.directions.from_pulse import PulsePairs, direction_from_pulse, pairs_grid, pulse_pair_direction, \
    run_pulse_pairs
from latentedit.directions.learn import LearnSettings, learn_direction, learn_to_file
from latentedit.directions.svm import LabelledSamples, condition_direction, fit_attribute_normal, \
    interfacegan_direction, sample_and_label, svm_to_file
from latentedit.directions.unsupervised import ganspace_directions, ganspace_to_folder, modulation_weights, \
    sefa_directions, sefa_to_folder, write_direction_set

__all__ = [
    # arrays
    "DEFAULT_BATCH", "parse_layers", "format_layers", "parse_strengths", "format_strength", "as_direction_array",
    "check_direction_shape",
    # files
    "DIRECTION_FORMAT", "DIRECTION_FORMAT_VERSION", "BOUNDARY_DEFINITION", "Boundary", "boundary_of", "Direction",
    "sidecar_path", "save_direction", "load_direction", "recorded_generator_sha256", "latent_record",
    "direction_problems", "describe_direction",
    # arithmetic
    "difference", "mean_of", "direction_magnitude", "difference_files", "mean_files",
    # apply
    "apply_direction", "apply_to_distance", "render_latents", "w_plus_from_seeds", "sweep_grid", "apply_to_folder",
    # PULSE pairs
    "PulsePairs", "run_pulse_pairs", "pulse_pair_direction", "pairs_grid", "direction_from_pulse",
    # InterFaceGAN
    "LabelledSamples", "sample_and_label", "fit_attribute_normal", "condition_direction", "interfacegan_direction",
    "svm_to_file",
    # SeFa, GANSpace
    "modulation_weights", "sefa_directions", "ganspace_directions", "write_direction_set", "sefa_to_folder",
    "ganspace_to_folder",
    # learned
    "LearnSettings", "learn_direction", "learn_to_file",
]
