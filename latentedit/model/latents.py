"""The latent-space methods every generator shares: z -> w, truncation, W -> W+.

A generator using :class:`LatentSpaceMixin` provides ``z_dim``, ``w_dim``, ``num_ws``, a mapping network
``style`` (z ``[N, z_dim]`` -> w ``[N, w_dim]``), a ``w_avg`` buffer ``[w_dim]`` and a ``has_w_avg`` flag.
"""
from __future__ import annotations

import torch


class LatentSpaceMixin:
    """``mapping``, ``truncate`` and ``broadcast_w`` for StyleGAN2 and StyleGAN3 generators alike."""

    def set_w_avg(self, w_avg: torch.Tensor) -> None:
        if tuple(w_avg.shape) != (self.w_dim,):
            raise ValueError(f"w_avg must have shape [{self.w_dim}], got {tuple(w_avg.shape)}")
        self.w_avg.copy_(w_avg.to(self.w_avg))
        self.has_w_avg = True

    @torch.no_grad()
    def compute_w_avg(self, num_samples: int = 10000, seed: int = 0, chunk: int = 4096) -> torch.Tensor:
        """Mean of ``mapping(z)`` over seeded N(0, 1) samples; used when a checkpoint stores none."""
        generator = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        done = 0
        while done < num_samples:
            n = min(chunk, num_samples - done)
            z = torch.randn(n, self.z_dim, generator=generator).to(self.w_avg.device)
            total += self.mapping(z).double().sum(0).cpu()
            done += n
        return (total / num_samples).float()

    def mean_w(self) -> torch.Tensor:
        """The mean w ``[w_dim]`` (stored in the checkpoint, else computed once from 10,000 samples)."""
        if not self.has_w_avg:
            self.set_w_avg(self.compute_w_avg())
        return self.w_avg

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[N, z_dim]`` -> w ``[N, w_dim]``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {tuple(z.shape)}")
        return self.style(z)

    def truncate(self, w: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """``w_avg + psi * (w - w_avg)`` on every row of W ``[N, D]`` or W+ ``[N, num_ws, D]``
        (with ``cutoff``, only on W+ rows ``< cutoff``; W is broadcast to W+ first)."""
        if psi == 1.0:
            return w
        w_avg = self.mean_w()
        if cutoff is None:
            return torch.lerp(w_avg.to(w.dtype), w, psi)
        w_plus = self.broadcast_w(w)
        rows = torch.arange(self.num_ws, device=w.device)[None, :, None] < cutoff
        return torch.where(rows, torch.lerp(w_avg.to(w.dtype), w_plus, psi), w_plus)

    def broadcast_w(self, w: torch.Tensor) -> torch.Tensor:
        """W ``[N, D]`` or W+ ``[N, num_ws, D]`` -> W+ ``[N, num_ws, D]``; raises ValueError on other shapes."""
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w[:, None, :].expand(-1, self.num_ws, -1)
        if w.ndim == 3 and w.shape[1:] == (self.num_ws, self.w_dim):
            return w
        raise ValueError(f"latent must be W [N, {self.w_dim}] or W+ [N, {self.num_ws}, {self.w_dim}] for this "
                         f"generator, got {list(w.shape)}")
