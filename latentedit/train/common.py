"""Pieces every GAN trainer needs: devices and DDP, EMA, checkpoints, RNG state, metrics, signals.

Nothing here knows about a particular network. A trainer composes them:

- :func:`init_distributed` reads the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)
  and starts a process group (gloo on CPU, nccl on CUDA); without it the run is one process.
  Only rank 0 writes files (:attr:`DistributedContext.is_main`).
- :func:`ema_beta` / :func:`update_ema`: the EMA of generator weights, NVIDIA's half-life convention.
- :func:`save_checkpoint` / :func:`load_checkpoint`: atomic ``torch.save`` of plain containers, read
  back with ``torch.load(weights_only=True)`` so a checkpoint can never run code.
- :func:`capture_rng_state` / :func:`restore_rng_state`: every rank's torch RNG state.
- :class:`MetricsLog`: JSON lines (plus TensorBoard when installed).
- :class:`StopRequest`: turns SIGTERM/SIGINT into a flag the training loop polls between steps.
- :class:`InfiniteShardSampler`: a deterministic, resumable, rank-sharded stream of data set indices.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import re
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from latentedit.errors import CheckpointError, InputError
from latentedit.io import atomic_write, write_bytes

#: Upper bound of the barrier that lines ranks up before a gloo process group is torn down.
SHUTDOWN_BARRIER_SECONDS = 60

# --------------------------------------------------------------------------------------------------
# Devices and distributed training

def resolve_device(request: str = "auto", local_rank: int = 0) -> torch.device:
    """:func:`latentedit.device.resolve_device` (``auto`` = CUDA when available), with a bare ``cuda``
    made specific: ``cuda:<local_rank>`` so each process of a multi-GPU run takes its own GPU."""
    from latentedit.device import resolve_device as resolve

    device = resolve(request)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@dataclasses.dataclass
class DistributedContext:
    """Where this process sits in a (possibly single-process) run.

    ``rank`` / ``world_size`` over all processes, ``local_rank`` / ``local_world_size`` on this host,
    ``device`` the torch device of this rank, ``initialized`` whether this context started a process
    group (and so must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (no-op for one process); returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (a collective: all ranks must call it)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def all_gather_tensor(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped CPU tensor, returned on the CPU in rank order."""
        if not self.distributed:
            return [tensor.clone()]
        local = tensor.to(self.device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        return [t.cpu() for t in gathered]

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op for one process)."""
        if self.distributed:
            dist.barrier()

    def shutdown(self) -> None:
        """Destroy the process group if this context created it.

        With gloo the ranks first meet at a barrier bounded by :data:`SHUTDOWN_BARRIER_SECONDS`: a rank
        that tears the group down while its peer still uses it can abort that peer ("terminate called
        without an active exception", seen once in a 2-process CPU test). A peer that never arrives (it
        failed) only delays the teardown."""
        if self.initialized and dist.is_initialized():
            if self.world_size > 1 and dist.get_backend() == "gloo":
                try:
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=SHUTDOWN_BARRIER_SECONDS))
                except RuntimeError as error:
                    warnings.warn(f"rank {self.rank}: peers did not reach the shutdown barrier ({error})")
            dist.destroy_process_group()
            self.initialized = False


def init_distributed(device_request: str = "auto") -> DistributedContext:
    """Build the :class:`DistributedContext` of this process.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this starts a process group with the
    ``env://`` rendezvous: nccl when the device is CUDA, gloo on CPU. Otherwise it is one process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    device = resolve_device(device_request, local_rank)
    context = DistributedContext(rank, world_size, local_rank, local_world_size, device)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            init_kwargs = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                    **init_kwargs)
            context.initialized = True
    return context


def configure_cpu_threads(context: DistributedContext) -> int:
    """Give each local rank an equal share of the CPU cores for intra-op parallelism.

    ``OMP_NUM_THREADS`` wins when set (``torchrun`` sets it to 1 for multi-process runs unless the
    user chose a value). Returns the thread count in use.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // max(1, context.local_world_size)))
    return torch.get_num_threads()


def configure_device(context: DistributedContext) -> None:
    """Per-device settings every trainer applies: CPU threads split among local ranks, or cuDNN autotuning
    (the shapes of a training step never change, so the tuned choice is reused every step)."""
    if context.device.type == "cpu":
        configure_cpu_threads(context)
    else:
        torch.backends.cudnn.benchmark = True


# --------------------------------------------------------------------------------------------------
# Exponential moving average of weights

def ema_beta(batch: int, ema_kimg: float, nimg: int, rampup: float | None = 0.05) -> float:
    """Per-step EMA decay so that the weights' half-life is ``ema_kimg`` thousand images.

    ``beta = 0.5 ** (batch / ema_nimg)`` with ``ema_nimg = ema_kimg * 1000``, capped to
    ``nimg * rampup`` when ``rampup`` is set (NVIDIA's convention): early in training the average
    then follows the fast-changing weights instead of staying near the initialisation.
    ``ema_kimg <= 0`` disables averaging (beta 0: the EMA copy equals the weights).
    """
    if ema_kimg <= 0:
        return 0.0
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None and rampup > 0:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema_module: nn.Module, module: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * weights`` for every parameter; buffers are copied as they are."""
    for ema_param, param in zip(ema_module.parameters(), module.parameters()):
        ema_param.lerp_(param.detach(), 1.0 - beta)
    for ema_buffer, buffer in zip(ema_module.buffers(), module.buffers()):
        ema_buffer.copy_(buffer)


def state_dict_fingerprint(*state_dicts: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names and float32 bytes of every tensor of ``state_dicts``, in order.

    Independent of device and memory format, so weights in a checkpoint and in a live module compare.
    """
    digest = hashlib.sha256()
    for state in state_dicts:
        for name, tensor in state.items():
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights_fingerprint(*modules: nn.Module) -> str:
    """:func:`state_dict_fingerprint` of the modules' state dicts (parameters and persistent buffers)."""
    return state_dict_fingerprint(*(module.state_dict() for module in modules))


# --------------------------------------------------------------------------------------------------
# Checkpoints

def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically (temp file + ``os.replace``).

    ``payload`` must hold only tensors, numbers, strings, None, lists and dicts, so that
    :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    write_bytes(path, buffer.getvalue())


def find_resume_checkpoint(run_dir: str | os.PathLike, resume: str | os.PathLike | None = None,
                           checkpoint_name: str = "checkpoint.pt", what: str = "training") -> Path | None:
    """The checkpoint a run continues from: ``resume`` (a run folder or a checkpoint file) when given,
    else ``run_dir/<checkpoint_name>`` when it exists, else None. A given ``resume`` that holds no
    checkpoint raises :class:`CheckpointError` (``what`` names the kind of run in the message)."""
    if resume is not None:
        path = Path(resume)
        if path.is_dir():
            path = path / checkpoint_name
        if not path.is_file():
            raise CheckpointError(f"no {what} checkpoint at {path}; --resume takes a run folder or its "
                                  f"{checkpoint_name}")
        return path
    candidate = Path(run_dir) / checkpoint_name
    return candidate if candidate.is_file() else None


class RunClock:
    """Mixin for a training run that may resume: ``step`` (steps done so far), ``resumed_step`` (the step a
    resumed session started from; None for a fresh run) and :meth:`wall_time` (training seconds summed over
    every session, so a killed and resumed run reports what it cost in all)."""

    def start_clock(self) -> None:
        self.step = 0
        self.wall_before = 0.0
        self.resumed_step = None
        self.started = time.perf_counter()

    def resume_clock(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue the count and the wall time of ``checkpoint`` (its ``step`` and ``wall_s``)."""
        self.step = int(checkpoint["step"])
        self.wall_before = float(checkpoint.get("wall_s", 0.0))
        self.resumed_step = self.step

    def wall_time(self) -> float:
        return self.wall_before + (time.perf_counter() - self.started)


@contextlib.contextmanager
def fitting_checkpoint(what: str = "the configured networks") -> Iterator[None]:
    """Around ``load_state_dict`` calls: a training checkpoint whose tensors or keys do not fit (the
    RuntimeError, ValueError or KeyError torch raises, often many lines long) becomes one
    :class:`CheckpointError` line naming ``what`` and the first line of the cause."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"training checkpoint does not fit {what}: {first_line}") from None


def read_run_checkpoint(path: str | os.PathLike, format_tag: str, required: tuple[str, ...], what: str) -> dict:
    """Load a training checkpoint (``weights_only=True``) and check that it is a ``format_tag`` file holding
    every key in ``required``; :class:`CheckpointError` naming ``what`` otherwise."""
    payload = load_checkpoint(path)
    if payload.get("format") != format_tag:
        raise CheckpointError(f"{path} is not a latentedit {what} training checkpoint")
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"training checkpoint {path} lacks {', '.join(missing)}; it is damaged")
    return payload


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``
    onto the CPU. Raises :class:`CheckpointError` naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated files, foreign pickles: all mean "not a usable checkpoint"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read training checkpoint {path}: {message}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a latentedit training checkpoint (top level is "
                              f"{type(payload).__name__})")
    return payload


# --------------------------------------------------------------------------------------------------
# RNG state

def capture_rng_state(context: DistributedContext) -> dict:
    """Every rank's torch RNG state, gathered (a collective: all ranks must call it).

    Returns ``{"world_size": W, "cpu": [uint8 tensor per rank], "cuda": [uint8 tensor per rank] or None}``.
    """
    cpu_states = context.all_gather_tensor(torch.get_rng_state())
    cuda_states = None
    if context.device.type == "cuda":
        cuda_states = context.all_gather_tensor(torch.cuda.get_rng_state(context.device))
    return {"world_size": context.world_size, "cpu": cpu_states, "cuda": cuda_states}


def restore_rng_state(context: DistributedContext, state: Mapping[str, Any] | None, fallback_seed: int) -> bool:
    """Restore this rank's RNG state from :func:`capture_rng_state` output.

    When the state is missing or was saved with another world size or device type, each rank is
    seeded with ``fallback_seed + rank`` instead and False is returned (the run continues, but its
    random stream differs from an uninterrupted run).
    """
    usable = (state is not None and state.get("world_size") == context.world_size
              and (context.device.type != "cuda" or state.get("cuda") is not None))
    if not usable:
        torch.manual_seed(fallback_seed + context.rank)
        return False
    torch.set_rng_state(state["cpu"][context.rank])
    if context.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][context.rank], context.device)
    return True


# --------------------------------------------------------------------------------------------------
# Metrics

class MetricsLog:
    """Appends one JSON object per line to ``path`` (and scalars to TensorBoard when it is installed).

    Disabled (every call a no-op) when ``enabled`` is False, as on ranks other than 0. Records are
    flushed at once so a killed run keeps every line it wrote.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True, tensorboard_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.enabled = enabled
        self._handle = None
        self._tensorboard = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tensorboard = SummaryWriter(str(tensorboard_dir))

    def write(self, record: Mapping[str, Any], step: int | None = None) -> None:
        """Append ``record``; numeric fields also go to TensorBoard at global step ``step``."""
        if not self.enabled:
            return
        self._handle.write(json.dumps(dict(record), allow_nan=True) + "\n")
        self._handle.flush()
        if self._tensorboard is not None and step is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()

    def close(self) -> None:
        """Close the file (and TensorBoard writer); later writes are errors."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def truncate_metrics(path: str | os.PathLike, max_step: int) -> None:
    """Drop metric lines with ``"step" > max_step`` (written after the checkpoint a run resumes from),
    rewriting ``path`` atomically. Lines that are not JSON (a line cut by a kill) are dropped too."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= max_step:
            kept.append(line)
    with atomic_write(path, "w") as handle:
        handle.write("".join(line + "\n" for line in kept))


# --------------------------------------------------------------------------------------------------
# Signals

class StopRequest:
    """While active, SIGTERM and SIGINT set :attr:`signal_number` instead of killing the process.

    The training loop checks :attr:`requested` between steps, writes a checkpoint and returns. A second
    signal of the same kind restores the default behaviour, so a stuck run can still be interrupted.
    Signals can only be caught in the main thread; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """True once SIGTERM or SIGINT has arrived."""
        return self.signal_number is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_number is not None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        self.signal_number = signum

    def __enter__(self) -> "StopRequest":
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


# --------------------------------------------------------------------------------------------------
# Data

class InfiniteShardSampler(Sampler):
    """Endless stream of data set indices, identical on every rank and resumable from any image count.

    Global position ``p`` (0, 1, 2, ...) maps to ``perm_e[p % n]`` where ``perm_e`` is a permutation of
    the ``n`` items seeded by ``(seed, epoch e = p // n)``. Positions are consumed in global batches of
    ``world_size * per_rank_batch``; rank ``r`` takes positions ``[r * b, (r + 1) * b)`` of each global
    batch. Starting at ``start_position`` (the number of images already used) resumes the stream
    exactly, with no state to save.
    """

    def __init__(self, length: int, per_rank_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_position: int = 0, shuffle: bool = True):
        if length < 1:
            raise InputError("the data set is empty")
        self.length = length
        self.per_rank_batch = per_rank_batch
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_position = start_position
        self.shuffle = shuffle

    def _permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=generator)

    def __iter__(self) -> Iterator[int]:
        global_batch = self.per_rank_batch * self.world_size
        # Start at the beginning of the global batch holding start_position.
        position = (self.start_position // global_batch) * global_batch
        epoch, permutation = -1, None
        while True:
            begin = position + self.rank * self.per_rank_batch
            for offset in range(begin, begin + self.per_rank_batch):
                if offset // self.length != epoch:
                    epoch = offset // self.length
                    permutation = self._permutation(epoch)
                yield int(permutation[offset % self.length])
            position += global_batch

    def __len__(self) -> int:  # DataLoader asks; the stream itself never ends
        return 2 ** 62


_WORKER_ERROR = re.compile(r"^latentedit\.errors\.(\w+): (.*)$", re.MULTILINE)


def next_unless_stopped(batches, stop: "StopRequest"):
    """``next(batches)``, or None when that fails because a stop was requested meanwhile.

    The signal reaches the DataLoader workers too, and they exit (:func:`ignore_stop_signals_in_worker`); if
    it arrives between the loop's stop check and this fetch, the batch can never come, and the training
    loop should stop as asked rather than fail. Other failures are raised (LatentEditErrors from a worker
    as their one-line message)."""
    try:
        return next(batches)
    except Exception as error:
        if stop.requested:
            return None
        reraise_worker_error(error)
        raise


def reraise_worker_error(error: Exception) -> None:
    """A LatentEditError raised inside a DataLoader worker arrives with the worker's traceback in its
    message; raise it again with only its own one-line message. Other errors are left alone."""
    from latentedit import errors as error_module

    if not isinstance(error, error_module.LatentEditError):
        return
    matches = _WORKER_ERROR.findall(str(error))
    if matches:
        cls_name, message = matches[-1]
        cls = getattr(error_module, cls_name, type(error))
        raise cls(message) from None


# --------------------------------------------------------------------------------------------------
# Run directory helpers

def parse_channels(text: str) -> dict[int, int]:
    """``"4:128,8:128,16:64"`` -> ``{4: 128, 8: 128, 16: 64}``; raises :class:`InputError` on bad syntax."""
    channels = {}
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        try:
            res, count = item.split(":")
            res, count = int(res), int(count)
        except ValueError:
            raise InputError(f"channels must be written RES:COUNT,RES:COUNT,... (e.g. 4:128,8:128), "
                             f"got {text!r}") from None
        if res < 1 or count < 1:
            raise InputError(f"channels entries must be positive, got {item!r}")
        channels[res] = count
    if not channels:
        raise InputError("channels must not be empty")
    return channels


def check_finite(name: str, value: float) -> None:
    """Warn once per call site when a logged loss is NaN or infinite (training has diverged)."""
    if not math.isfinite(value):
        warnings.warn(f"{name} is {value}: training has diverged; resume from an earlier checkpoint with a "
                      "lower learning rate or a larger R1 gamma", stacklevel=2)


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C is ignored and SIGTERM ends the worker with exit status 0.

    Ctrl-C reaches the whole process group, and ``torchrun`` sends SIGTERM to each rank's group. The
    training process turns either into a clean stop with a checkpoint, for which it needs no more
    data; but a worker killed *by a signal* makes PyTorch raise an error in the training process at
    once. Exiting with status 0 instead lets the stop finish (and PyTorch's own shutdown, which also
    uses SIGTERM, still works).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, columns: int | None = None) -> None:
    """Tile images ``[N, 3, H, W]`` (nominally [-1, 1]) into one PNG at ``path``, written atomically."""
    from latentedit.io import make_grid, save_png, to_uint8

    save_png(path, make_grid(to_uint8(images), columns=columns))
