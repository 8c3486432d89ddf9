"""The training loop shared by the CycleGAN and pix2pix trainers (:mod:`~latentedit.baselines.cyclegan_train`,
:mod:`~latentedit.baselines.pix2pix_train`), built from :mod:`latentedit.train.common`.

A trainer subclass says which networks and optimisers it has, what one iteration does and how its sample grid
looks; this module does the rest, the same way for both:

- Run folder (only rank 0 writes): ``checkpoint.pt`` (every network, optimiser, the step, wall time, every rank's
  RNG state, the image pools, the options; plain containers read back with ``weights_only=True``), written
  atomically every ``snapshot_every`` iterations, at the end, and on SIGTERM/SIGINT after the iteration in
  progress; ``translator.safetensors`` with it (:func:`latentedit.baselines.cyclegan.save_translator`, what
  ``transfer --ckpt RUN`` reads); ``samples/step0000000.png`` for a fixed batch every ``sample_every``
  iterations; ``metrics.jsonl`` (mean losses and learning rate every ``log_every`` iterations, images per second,
  events ``start``, ``resume``, ``snapshot`` with each rank's weight fingerprint, ``stopped``, ``paused``, ``done``)
  and ``tensorboard/`` when TensorBoard is installed.
- Resuming: ``RUN/checkpoint.pt`` is picked up automatically; data streams, RNG states, pools and counters continue
  where they stopped, so a resumed run reproduces an uninterrupted one. Metric lines after the checkpoint are
  dropped. Options in the subclass's ``FROZEN_ON_RESUME`` cannot change on resume.
- Learning rate: ``lr * min(1, (iters - step) / decay_iters)``: constant, then linear to 0 over the last
  ``decay_iters`` (default half the run; the reference decays over its second 100 of 200 epochs).
- Data: an endless stream positioned by ``step * batch`` (resumable without state); each image is randomly
  cropped from the load size to ``image_size`` and mirrored with probability 0.5 (``flip``), drawn from the
  torch RNG on the training process. Paired images get the same crop and mirror.
- Multi-process: under ``torchrun`` each rank trains on ``batch / world_size`` images; before every optimiser
  step the gradients are averaged over the ranks with ``all_reduce`` (what DistributedDataParallel does; done by
  hand because an iteration calls each generator several times and the discriminators from both losses).
  Batch-norm running statistics are broadcast from rank 0 at each snapshot.
- ``amp="bf16"`` runs the forward passes under CPU/CUDA bfloat16 autocast (losses and weights stay float32):
  about 2x faster convolutions on CPUs with bf16 units; ``none`` (default) is plain float32.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist

from latentedit.errors import InputError
from latentedit.train import common

CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "translator.safetensors"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_VERSION = 1
AMP_MODES = ("none", "bf16")


def lr_factor(step: int, iters: int, decay_iters: int | None) -> float:
    """``min(1, (iters - step) / decay_iters)`` clipped to [0, 1]; ``decay_iters`` None = ``iters // 2``, 0 = 1."""
    decay = iters // 2 if decay_iters is None else decay_iters
    if decay <= 0:
        return 1.0
    return min(1.0, max(0.0, (iters - step) / decay))


def resolved_load_size(image_size: int, load_size: int | None) -> int:
    """The load size: as given, or the reference's 286/256 of the training size (72 at 64 px)."""
    return int(round(image_size * 286 / 256)) if load_size is None else int(load_size)


def config_from_dict(cls, data: Mapping[str, Any]):
    """``cls(**data)`` ignoring keys ``cls`` does not know (written by newer versions)."""
    known = {field.name for field in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in data.items() if key in known})


def resume_config(cls, frozen: tuple[str, ...], saved_args: Mapping[str, Any], requested,
                  explicit: set[str] | frozenset[str] = frozenset()):
    """The options of a resumed run: the saved ones, overridden by the ``explicit`` fields of ``requested`` (what
    the user typed). An explicit ``frozen`` field that differs from the saved value is an InputError."""
    saved = config_from_dict(cls, saved_args)
    for name in frozen:
        if name in explicit and getattr(saved, name) != getattr(requested, name):
            raise InputError(f"the run being resumed was trained with {name}={getattr(saved, name)}; drop that option "
                             "or write to a new run folder")
    merged = dataclasses.asdict(saved)
    for name in explicit:
        if name not in frozen and name in merged:
            merged[name] = getattr(requested, name)
    return cls(**merged)


def read_training_checkpoint(path: str | os.PathLike, format_tag: str, what: str) -> dict:
    """Load a trainer checkpoint (``weights_only=True``) and check its format."""
    return common.read_run_checkpoint(path, format_tag, ("nets", "optims", "step", "args"), what)


@dataclasses.dataclass
class TrainResult:
    """Outcome of a training call: ``finished`` when ``iters`` was reached, ``stop_signal`` the signal that stopped
    it early (a checkpoint was written), ``img_per_sec`` over the last logging window, ``resumed_step``."""

    run_dir: Path
    step: int
    finished: bool
    stop_signal: int | None
    img_per_sec: float | None
    resumed_step: int | None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @property
    def translator_path(self) -> Path:
        return self.run_dir / EXPORT_NAME


def to_float(outputs):
    """Discriminator outputs (a tensor or a list of them) as float32, e.g. after bf16 autocast."""
    if isinstance(outputs, (list, tuple)):
        return [output.float() for output in outputs]
    return outputs.float()


def random_crop_flip(images: list[torch.Tensor], size: int, flip: bool) -> list[torch.Tensor]:
    """Crop every ``[N, 3, L, L]`` tensor of ``images`` to ``[N, 3, size, size]`` at one random offset per sample
    (shared by the tensors, which must have the same shape), and mirror each sample with probability 0.5 when
    ``flip``. Uses the torch RNG."""
    count, load = images[0].shape[0], images[0].shape[-1]
    if load < size:
        raise InputError(f"--load-size {load} is smaller than --image-size {size}")
    top = torch.randint(load - size + 1, (count,)).tolist()
    left = torch.randint(load - size + 1, (count,)).tolist()
    mirror = (torch.rand(count) < 0.5).tolist() if flip else [False] * count
    outputs = []
    for batch in images:
        rows = []
        for k in range(count):
            crop = batch[k, :, top[k]:top[k] + size, left[k]:left[k] + size]
            rows.append(crop.flip(-1) if mirror[k] else crop)
        outputs.append(torch.stack(rows))
    return outputs


class TranslationTrainer(common.RunClock):
    """State and loop of one run; subclasses define the networks and the iteration.

    Subclass hooks: ``CHECKPOINT_FORMAT``, ``WHAT`` (``CycleGAN``), ``STAT_NAMES`` (losses averaged into the
    metrics), :meth:`build` (set ``self.nets`` / ``self.optims``: name -> module / optimiser, and
    ``self.optim_params``: optimiser name -> the modules it updates), :meth:`train_step`, :meth:`sample_grid`,
    :meth:`export`, and optionally :meth:`extra_state` / :meth:`load_extra_state`.
    """

    CHECKPOINT_FORMAT = ""
    WHAT = ""
    STAT_NAMES: tuple[str, ...] = ()

    def __init__(self, config, run_dir: Path, context: common.DistributedContext, checkpoint: dict | None,
                 progress: bool, session_iters: int | None, data):
        self.config = config
        self.run_dir = run_dir
        self.context = context
        self.device = context.device
        self.progress = progress
        self.session_iters = session_iters
        self.data = data
        self.per_rank_batch = config.batch // context.world_size
        self.load_size = resolved_load_size(config.image_size, config.load_size)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.nets: dict[str, torch.nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.optim_params: dict[str, list[torch.nn.Module]] = {}
        self.build()
        self.start_clock()
        if checkpoint is not None:
            self._load(checkpoint)
        restored = common.restore_rng_state(context, checkpoint.get("rng") if checkpoint else None,
                                            fallback_seed=config.seed + 7919 * (self.step + 1))
        if checkpoint is not None and not restored and context.is_main:
            warnings.warn("the checkpoint's RNG state does not fit this run (another process count or device); "
                          "continuing with a fresh seed")

    # -- hooks ---------------------------------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, batch, stats: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def sample_grid(self, fixed) -> tuple[torch.Tensor, int] | None:
        """``(images [R * C, 3, S, S], C)`` for the fixed batch, or None."""
        raise NotImplementedError

    def export(self) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, checkpoint: dict) -> None:
        pass

    def dataset(self):
        """The training data set whose items the loader yields and the sampler that indexes it."""
        raise NotImplementedError

    def fixed_batch(self):
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------------------
    def autocast(self):
        if self.config.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimiser_step(self, name: str, loss: torch.Tensor) -> None:
        """``zero_grad``, ``loss.backward()``, gradients averaged over ranks, ``step`` of optimiser ``name``."""
        optim = self.optims[name]
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if self.context.distributed:
            grads = [p.grad for module in self.optim_params[name] for p in module.parameters() if p.grad is not None]
            if grads:
                flat = torch.cat([g.flatten() for g in grads])
                dist.all_reduce(flat)
                flat /= self.context.world_size
                offset = 0
                for g in grads:
                    g.copy_(flat[offset:offset + g.numel()].view_as(g))
                    offset += g.numel()
        optim.step()

    def set_requires_grad(self, names, flag: bool) -> None:
        for name in names:
            self.nets[name].requires_grad_(flag)

    # -- state -------------------------------------------------------------------------------------------
    def _load(self, checkpoint: dict) -> None:
        with common.fitting_checkpoint():
            for name, net in self.nets.items():
                net.load_state_dict(checkpoint["nets"][name], strict=True)
            for name, optim in self.optims.items():
                optim.load_state_dict(checkpoint["optims"][name])
            self.load_extra_state(checkpoint)
        self.resume_clock(checkpoint)

    def set_learning_rates(self) -> float:
        factor = lr_factor(self.step, self.config.iters, self.config.decay_iters)
        for optim in self.optims.values():
            for group in optim.param_groups:
                group["lr"] = self.config.lr * factor
                group["betas"] = (self.config.beta1, self.config.beta2)
        return factor

    def checkpoint_payload(self, rng_state: dict) -> dict:
        payload = {"format": self.CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                   "nets": {name: net.state_dict() for name, net in self.nets.items()},
                   "optims": {name: optim.state_dict() for name, optim in self.optims.items()},
                   "step": self.step, "nimg": self.step * self.config.batch, "wall_s": self.wall_time(),
                   "rng": rng_state, "args": self.config.to_dict()}
        return payload

    def fingerprints(self) -> list[str]:
        digest = common.weights_fingerprint(*self.nets.values())
        as_tensor = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8)
        return [bytes(t.tolist()).hex() for t in self.context.all_gather_tensor(as_tensor)]

    def snapshot(self, log: common.MetricsLog, event: str = "snapshot") -> None:
        """Write checkpoint.pt and translator.safetensors (rank 0); a collective over all ranks."""
        if self.context.distributed:
            for net in self.nets.values():
                for buffer in net.buffers():
                    dist.broadcast(buffer, src=0)
        rng_state = common.capture_rng_state(self.context)
        payload_extra = self.extra_state()  # may gather (a collective)
        fingerprints = self.fingerprints()
        if self.context.is_main:
            payload = self.checkpoint_payload(rng_state)
            payload.update(payload_extra)
            common.save_checkpoint(self.run_dir / CHECKPOINT_NAME, payload)
            self.export()
            if len(set(fingerprints)) > 1:
                warnings.warn(f"ranks hold different weights at step {self.step}: {fingerprints}")
            log.write({"event": event, "step": self.step, "wall_s": self.wall_time(), "fingerprints": fingerprints})

    @torch.no_grad()
    def save_samples(self, fixed) -> None:
        if fixed is None:
            return
        for net in self.nets.values():
            net.eval()
        try:
            grid = self.sample_grid(fixed)
        finally:
            for net in self.nets.values():
                net.train()
        if grid is not None:
            images, columns = grid
            common.save_image_grid(images.float().cpu(), self.run_dir / "samples" / f"step{self.step:07d}.png",
                                   columns=columns)

    def make_loader(self):
        dataset, sampler = self.dataset()
        workers = self.config.workers
        loader_generator = torch.Generator().manual_seed(self.config.seed * 1009 + self.context.rank + self.step)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.per_rank_batch, sampler=sampler, num_workers=workers, drop_last=True,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            worker_init_fn=common.ignore_stop_signals_in_worker if workers > 0 else None, generator=loader_generator)

    def _tick_record(self, stats: dict[str, torch.Tensor], img_per_sec: float, factor: float) -> dict:
        names = list(self.STAT_NAMES) + ["steps"]
        packed = self.context.all_reduce_sum(torch.stack([stats[name].float() for name in names]))
        totals = dict(zip(names, packed.tolist()))
        record = {"step": self.step, "nimg": self.step * self.config.batch, "wall_s": round(self.wall_time(), 3),
                  "img_per_s": round(img_per_sec, 3), "lr": self.config.lr * factor}
        if totals["steps"]:
            for name in self.STAT_NAMES:
                record[name] = totals[name] / totals["steps"]
        for name in ("loss_d", "loss_g"):
            if name in record:
                common.check_finite(name, record[name])
        return record

    def run(self, log_lines: Callable[[str], None] | None = None) -> TrainResult:
        """Train until ``iters`` or a stop signal; log, sample and snapshot on schedule."""
        config, context = self.config, self.context
        self.started = time.perf_counter()
        is_main = context.is_main
        log = common.MetricsLog(self.run_dir / METRICS_NAME, enabled=is_main,
                                tensorboard_dir=self.run_dir / "tensorboard")
        fixed = self.fixed_batch() if is_main else None
        if is_main:
            log.write({"event": "resume" if self.resumed_step is not None else "start", "step": self.step,
                       "world_size": context.world_size, "device": str(self.device),
                       "threads": torch.get_num_threads(), "data": self.data.description,
                       "notes": self.data.notes, "fingerprint": common.weights_fingerprint(*self.nets.values()),
                       "args": config.to_dict()})
        stats = {name: torch.zeros((), device=self.device) for name in list(self.STAT_NAMES) + ["steps"]}
        bar = None
        if is_main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.iters, initial=self.step, unit="it", dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0)
        img_per_sec = None
        tick_time, tick_step, maintenance = time.perf_counter(), self.step, 0.0
        stop_signal, paused = None, False
        session_end = config.iters if self.session_iters is None else min(config.iters, self.step + self.session_iters)
        loader = batches = None
        try:
            with common.StopRequest() as stop:
                if self.step < config.iters:
                    loader = self.make_loader()
                    batches = iter(loader)
                    if is_main and self.resumed_step is None:
                        self.save_samples(fixed)
                while self.step < config.iters:
                    if self.step >= session_end:
                        paused = True
                        break
                    if context.any(stop.requested):
                        stop_signal = stop.signal_number or int(signal.SIGTERM)
                        break
                    batch = common.next_unless_stopped(batches, stop)
                    if batch is None:
                        stop_signal = stop.signal_number
                        break
                    batch = [part.to(self.device, non_blocking=True) for part in batch]
                    factor = self.set_learning_rates()
                    self.train_step(batch, stats)
                    stats["steps"] += 1
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    done = self.step >= config.iters
                    if self.step % config.log_every == 0 or done:
                        if self.device.type == "cuda":
                            torch.cuda.synchronize(self.device)
                        elapsed = time.perf_counter() - tick_time - maintenance
                        img_per_sec = (self.step - tick_step) * config.batch / max(elapsed, 1e-9)
                        record = self._tick_record(stats, img_per_sec, factor)
                        if bar is not None and "loss_g" in record:
                            bar.set_postfix(d=f"{record['loss_d']:.3f}", g=f"{record['loss_g']:.3f}",
                                            img_s=f"{img_per_sec:.2f}", refresh=False)
                        log.write(record, step=self.step)
                        for value in stats.values():
                            value.zero_()
                        tick_time, tick_step, maintenance = time.perf_counter(), self.step, 0.0
                    maintenance_start = time.perf_counter()
                    if is_main and (self.step % config.sample_every == 0 or done):
                        self.save_samples(fixed)
                    if self.step % config.snapshot_every == 0 or done:
                        self.snapshot(log)
                    maintenance += time.perf_counter() - maintenance_start
                if stop_signal is not None or paused:
                    self.snapshot(log, event="stopped" if stop_signal is not None else "paused")
                elif is_main and self.step >= config.iters:
                    log.write({"event": "done", "step": self.step, "wall_s": self.wall_time()})
        finally:
            if bar is not None:
                bar.close()
            log.close()
            del batches, loader
        return TrainResult(self.run_dir, self.step, self.step >= config.iters, stop_signal, img_per_sec,
                           self.resumed_step)


def validate_common(config, world_size: int) -> None:
    """Checks every translation config shares (one-line InputErrors naming the option)."""
    positive = ("image_size", "ngf", "ndf", "n_layers_d", "batch", "iters", "log_every", "sample_every",
                "snapshot_every", "sample_count")
    for name in positive:
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.workers < 0:
        raise InputError(f"--workers must be >= 0, got {config.workers}")
    if config.load_size is not None and config.load_size < config.image_size:
        raise InputError(f"--load-size {config.load_size} must be >= --image-size {config.image_size}")
    if config.decay_iters is not None and not 0 <= config.decay_iters <= config.iters:
        raise InputError(f"--decay-iters must be in [0, --iters={config.iters}], got {config.decay_iters}")
    if not config.lr > 0:
        raise InputError(f"--lr must be > 0, got {config.lr}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(config, name) < 1:
            raise InputError(f"--{name} must be in [0, 1), got {getattr(config, name)}")
    if config.amp not in AMP_MODES:
        raise InputError(f"--amp must be one of {', '.join(AMP_MODES)}, got {config.amp!r}")
    if config.batch % world_size:
        raise InputError(f"--batch-size {config.batch} must be divisible by the number of processes ({world_size})")


def run_training(trainer_class, config, run_dir: str | os.PathLike, open_data: Callable, frozen: tuple[str, ...],
                 resume_from=None, progress: bool = True, session_iters: int | None = None,
                 report: Callable[[str], None] | None = None) -> TrainResult:
    """Everything around a trainer's loop: process group, checks, checkpoint, data, run folder.

    Order matters for "nothing half-written": options, the checkpoint and the data are all checked, and the run
    folder proven writable, before any file is written. ``open_data(config)`` returns the
    :class:`~latentedit.baselines.two_domain_data.TwoDomainData`.
    """
    from latentedit.io import prepare_output_dir

    run_dir = Path(run_dir)
    context = common.init_distributed(config.device)
    try:
        config.validate(context.world_size)
        common.configure_device(context)
        if session_iters is not None and session_iters < 1:
            raise InputError(f"--session-iters must be >= 1, got {session_iters}")
        checkpoint_path = common.find_resume_checkpoint(run_dir, resume_from, CHECKPOINT_NAME,
                                                        what=f"{trainer_class.WHAT} training")
        checkpoint = None
        if checkpoint_path is not None:
            checkpoint = read_training_checkpoint(checkpoint_path, trainer_class.CHECKPOINT_FORMAT, trainer_class.WHAT)
            saved = config_from_dict(type(config), checkpoint["args"])
            changed = [name for name in frozen if getattr(saved, name) != getattr(config, name)]
            if changed:
                raise InputError(f"{checkpoint_path} was trained with different {', '.join(changed)}; resume with the "
                                 "same options or write to a new run folder")
        data = open_data(config)
        if context.is_main:
            for note in data.notes:
                if report is not None:
                    report(note)
            prepare_output_dir(run_dir, "run folder")
            if checkpoint is not None:
                common.truncate_metrics(run_dir / METRICS_NAME, int(checkpoint["step"]))
            elif (run_dir / METRICS_NAME).exists():
                common.truncate_metrics(run_dir / METRICS_NAME, -1)
        context.barrier()
        trainer = trainer_class(config, run_dir, context, checkpoint, progress, session_iters, data)
        del checkpoint
        return trainer.run()
    finally:
        context.shutdown()
