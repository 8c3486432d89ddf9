"""Safe checkpoint loading (SPEC §1.1): rosinality ``.pt``, NVIDIA stylegan2-ada ``.pkl``, native ``.safetensors``.

No code from a checkpoint ever runs: torch files are read with ``torch.load(weights_only=True)``
(plus ``argparse.Namespace``), NVIDIA pickles with an allow-list unpickler that never reads the embedded
source code, native files with safetensors. Architectures are inferred from tensor shapes.

Public API::

    load_generator(path_or_name="toyfaces64", device="cpu", compute_w_avg=True, trainable=False)
        -> LoadedGenerator(generator, info)
    load_discriminator(path_or_name, device="cpu", trainable=False) -> LoadedDiscriminator(discriminator, info)
    save_native(network, path, extra_metadata=None, w_avg_source=None) -> Path
    convert_checkpoint(source, destination) -> CheckpointInfo
    inspect_checkpoint(path_or_name) -> dict
    resolve_checkpoint(name_or_path) -> Path
"""
from latentedit.checkpoints.api import (CheckpointInfo, LoadedDiscriminator, LoadedGenerator, convert_checkpoint,
                                        inspect_checkpoint, load_discriminator, load_generator)
from latentedit.checkpoints.native import save_native
from latentedit.pretrained import DEFAULT_CHECKPOINT, SHIPPED_MODELS, resolve_checkpoint

__all__ = ["load_generator", "load_discriminator", "save_native", "convert_checkpoint", "inspect_checkpoint",
           "resolve_checkpoint", "CheckpointInfo", "LoadedGenerator", "LoadedDiscriminator", "DEFAULT_CHECKPOINT",
           "SHIPPED_MODELS"]
