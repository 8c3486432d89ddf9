"""Per-visitor working folders: created on first use, removed when the visitor leaves or goes idle.

Each browser session (Gradio's session hash) gets its own folder under one server-wide temporary root, so
one visitor's uploads and results are never another's. Folders are removed when the page is closed
(:meth:`VisitorFolders.remove`), when they have been idle longer than ``max_idle_s``
(:meth:`VisitorFolders.sweep`, run on every new request) and, with the root, when the server stops
(:meth:`VisitorFolders.close`).
"""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

#: A visitor folder idle this long is removed.
DEFAULT_MAX_IDLE_S = 2 * 3600.0
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class VisitorFolders:
    """Folders ``ROOT/<visitor>/`` for visitor ids (any string; reduced to a safe name)."""

    def __init__(self, root: str | Path | None = None, max_idle_s: float = DEFAULT_MAX_IDLE_S) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="latentedit-serve-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_idle_s = float(max_idle_s)
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def safe_name(visitor: str) -> str:
        name = _SAFE.sub("_", str(visitor or "anonymous"))[:64]
        return name or "anonymous"

    def folder(self, visitor: str, *parts: str) -> Path:
        """``ROOT/<visitor>/<parts...>``, created; marks the visitor as active."""
        name = self.safe_name(visitor)
        with self._lock:
            self._last_used[name] = time.monotonic()
        path = self.root / name
        for part in parts:
            path = path / self.safe_name(part)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fresh(self, visitor: str, kind: str) -> Path:
        """A new, empty folder ``ROOT/<visitor>/<kind>-<n>`` for one job's outputs."""
        base = self.folder(visitor)
        for number in range(1, 1_000_000):
            path = base / f"{self.safe_name(kind)}-{number}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise RuntimeError(f"no free folder name under {base}")

    def visitors(self) -> list[str]:
        with self._lock:
            return sorted(self._last_used)

    def remove(self, visitor: str) -> bool:
        """Delete a visitor's folder; True when there was one."""
        name = self.safe_name(visitor)
        with self._lock:
            self._last_used.pop(name, None)
        path = self.root / name
        existed = path.exists()
        shutil.rmtree(path, ignore_errors=True)
        return existed

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove the folders of visitors idle longer than ``max_idle_s``; their names."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [name for name, used in self._last_used.items() if now - used > self.max_idle_s]
        for name in idle:
            self.remove(name)
        return idle

    def close(self) -> None:
        """Remove every visitor folder (and the root, when this object made it)."""
        with self._lock:
            self._last_used.clear()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            for child in list(self.root.iterdir()) if self.root.is_dir() else []:
                shutil.rmtree(child, ignore_errors=True)
