"""Measure the peak memory of a call: the process's resident memory on CPU, the caching
allocator's on CUDA.

On CPU there are two methods (``method=`` of [`track_peak`][sparselinear.memory.track_peak] and
``PeakTracker``):

* ``"reset"`` (Linux; the default where it works): writing ``5`` to ``/proc/self/clear_refs``
  resets the kernel's high-water mark (``VmHWM``) to the current resident size, and ``VmHWM`` is
  read back afterwards. Exact and per call, but it has a **side effect on the whole process**:
  the kernel keeps one high-water mark, and it is also what ``getrusage()`` (``ru_maxrss``) and
  ``/usr/bin/time`` (the "Maximum resident set size" it reports at exit) read. After a reset they
  report the peak since the last reset (or, if higher, the mark at the exit of one of the
  process's threads), not the lifetime peak of the process: a program that peaks while it builds
  its model and then measures its training steps is reported by ``/usr/bin/time`` at the
  training steps' peak.
* ``"sample"``: a background thread reads the resident size (``/proc/self/statm``) every
  millisecond and keeps the largest. It leaves the process's counters alone, so ``/usr/bin/time``
  and ``getrusage`` still see the lifetime peak; a spike shorter than the interval between two
  samples can be missed. The fallback where ``clear_refs`` cannot be written (not Linux, a
  restricted container).

On CUDA the method is ``"cuda"``: ``torch.cuda.reset_peak_memory_stats`` and
``max_memory_allocated``, which reset only the caching allocator's statistics.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import DataError, InsufficientMemoryError, check_choice
from .units import format_bytes

__all__ = [
    "METHODS",
    "InsufficientMemoryError",
    "Measurement",
    "PeakTracker",
    "available_memory",
    "check_fits",
    "current_memory",
    "default_device",
    "follow_live_memory",
    "measure",
    "release_free_memory",
    "total_memory",
    "track_peak",
    "warm_up",
]

_STATUS = "/proc/self/status"
_STATM = "/proc/self/statm"
_CLEAR_REFS = "/proc/self/clear_refs"
#: The ways [`track_peak`][sparselinear.memory.track_peak] and the other measurements take a CPU
#: peak: ``"reset"`` the kernel's high-water mark (exact; also resets what ``getrusage`` and
#: ``/usr/bin/time`` report), ``"sample"`` the resident size from a thread (leaves them alone),
#: or ``"auto"`` (``"reset"`` where possible).
METHODS = ("auto", "reset", "sample")


# ---------------------------------------------------------------------------- reading memory
def _status_bytes(key: str) -> int | None:
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096


_PAGE = _page_size()


def _rss() -> int:
    try:  # the second field of statm: resident pages (the same count as VmRSS), cheap to read
        with open(_STATM) as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        pass
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    try:  # psutil where installed (macOS, Windows)
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def current_memory(device: torch.device | str | None = None) -> int:
    """Bytes in use now: the process's resident size on CPU, ``memory_allocated`` on CUDA."""
    device = torch.device(device or "cpu")
    return torch.cuda.memory_allocated(device) if _is_cuda(device) else _rss()


def total_memory(device: torch.device | str | None = None) -> int:
    """Physical memory of the machine (CPU) or of the GPU."""
    device = torch.device(device or "cpu")
    if _is_cuda(device):
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def available_memory(device: torch.device | str | None = None) -> int:
    """Bytes a new allocation can still get: ``MemAvailable`` (CPU) or free GPU memory."""
    device = torch.device(device or "cpu")
    if _is_cuda(device):
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            match = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    return total_memory(device)


def check_fits(needed: int, device: torch.device | str | None = None, what: str = "This") -> None:
    """Raise [`InsufficientMemoryError`][sparselinear.errors.InsufficientMemoryError] when
    ``needed`` bytes exceed what is available."""
    have = available_memory(device)
    if have and needed > have:
        where = "GPU" if _is_cuda(torch.device(device or "cpu")) else "this machine"
        raise InsufficientMemoryError(
            f"{what} needs about {format_bytes(needed)} but {where} has {format_bytes(have)} "
            f"available (of {format_bytes(total_memory(device))}). Reduce the batch size or nnz, "
            "use an optimizer with less state (e.g. --optimizer sgd), or use a bigger machine."
        )


def release_free_memory() -> None:
    """Hand memory the C allocator holds but no longer uses back to the OS (glibc's
    ``malloc_trim``), so that the resident size reflects memory in use. A no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_LIBC: list = []
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _libc():
    if not _LIBC:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc only
            _LIBC.append(libc)
        except (OSError, AttributeError):
            _LIBC.append(None)
    return _LIBC[0]


def _malloc_trim():
    libc = _libc()
    return libc.malloc_trim if libc is not None else None


def follow_live_memory(threshold: int = 1 << 16) -> bool:
    """Make the process's resident size follow the memory actually in use (glibc only).

    By default glibc keeps freed blocks of up to 32 MB for reuse, so the resident size, and with
    it a measured CPU peak, also counts memory that is free but not returned. This serves every
    allocation of ``threshold`` bytes or more with its own mapping, returned to the OS when freed
    (``mallopt(M_MMAP_THRESHOLD)``), and hands back what is free now (``malloc_trim``). The
    price is a page fault per fresh allocation; the CLI's ``--measure``, the demo and the
    benchmark use it so that measured peaks can be compared with
    [`estimate`][sparselinear.memory.estimate]'s.

    Returns:
        whether it applied (``False`` where the C library is not glibc).
    """
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))
    libc.malloc_trim(0)
    return True


# ---------------------------------------------------------------------------- peak trackers
class PeakTracker:
    """Peak bytes in use between ``reset`` and ``peak``, on one device.

    Used by [`track_peak`][sparselinear.memory.track_peak],
    [`measure_training`][sparselinear.memory.measure_training] and the per-module breakdown.

    Args:
        device: ``"cpu"`` (the process's resident memory) or a CUDA device.
        method: on CPU, ``"reset"`` (exact; resets the process's high-water mark, which
            ``getrusage`` and ``/usr/bin/time`` also report: see the module's notes),
            ``"sample"`` (a thread polls the resident size every millisecond; leaves the process's
            counters alone) or ``"auto"`` (``"reset"`` where ``/proc/self/clear_refs`` can be
            written, else ``"sample"``; finding out writes it once). Ignored on CUDA.

    The attribute ``method`` says how it measures: ``"reset"``, ``"sample"`` or ``"cuda"``.
    """

    def __init__(self, device: torch.device | str | None = None, method: str = "auto") -> None:
        check_choice(method, METHODS, "method",
                     "'sample' leaves the process's high-water mark (getrusage, /usr/bin/time) "
                     "alone; 'reset' is exact but resets it.")
        self.device = torch.device(device or "cpu")
        self._max = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        if _is_cuda(self.device):
            self.method = "cuda"
        elif method == "sample":
            self.method = "sample"
        elif _can_clear_refs():
            self.method = "reset"
        elif method == "reset":
            raise DataError(
                f"method='reset' needs a writable {_CLEAR_REFS} (Linux) and VmHWM in "
                f"{_STATUS}, which this system does not offer; use method='sample'."
            )
        else:
            self.method = "sample"

    def start(self, trim: bool = False) -> PeakTracker:
        if self.method == "sample" and self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self.reset(trim)
        return self

    def stop(self) -> None:
        if self._thread is not None and self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _sample(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.001):
            self._max = max(self._max, _rss())

    def current(self) -> int:
        return current_memory(self.device)

    def reset(self, trim: bool = False) -> None:
        """Start a new interval: the peak becomes the memory in use now. With ``trim``, on CPU,
        first hand freed memory back to the OS
        ([`release_free_memory`][sparselinear.memory.release_free_memory])."""
        if trim and self.method != "cuda":
            release_free_memory()
        if self.method == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method == "reset":
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
        self._max = self.current()

    def peak(self) -> int:
        """The peak since the last ``reset`` (or ``start``)."""
        if self.method == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.method == "reset":
            return max(_status_bytes("VmHWM") or 0, self.current())
        return max(self._max, self.current())


_CLEAR_REFS_OK: bool | None = None


def _can_clear_refs() -> bool:
    """Whether the high-water mark can be reset here; the first call finds out by resetting it."""
    global _CLEAR_REFS_OK
    if _CLEAR_REFS_OK is None:
        try:
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
            _CLEAR_REFS_OK = _status_bytes("VmHWM") is not None
        except OSError:
            _CLEAR_REFS_OK = False
    return _CLEAR_REFS_OK


# ---------------------------------------------------------------------------- the public API
@dataclass
class Measurement:
    """Memory of one call.

    Attributes:
        device: where it was measured (``"cpu"``: the whole process).
        baseline: bytes in use when the call started.
        peak: the highest bytes in use during the call.
        increase: ``peak - baseline``.
        seconds: wall time of the call.
        method: how it was measured: ``"reset"``, ``"sample"`` or ``"cuda"`` (see
            [`track_peak`][sparselinear.memory.track_peak]).
        result: what the call returned ([`measure`][sparselinear.memory.measure] only).
    """

    device: str
    baseline: int = 0
    peak: int = 0
    seconds: float = 0.0
    method: str = ""
    result: Any = field(default=None, repr=False)

    @property
    def increase(self) -> int:
        return max(0, self.peak - self.baseline)

    def __str__(self) -> str:
        return (
            f"peak {format_bytes(self.peak)} ({format_bytes(self.increase)} above the "
            f"{format_bytes(self.baseline)} in use before) on {self.device}, "
            f"{self.seconds:.2f} s"
        )


def default_device() -> torch.device:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def track_peak(device: torch.device | str | None = None,
               method: str = "auto") -> Iterator[Measurement]:
    """Context manager measuring the peak memory of its body.

    Args:
        device: ``"cpu"`` (the process's resident memory) or a CUDA device. Default: the current
            CUDA device if CUDA is in use, else CPU.
        method: on CPU, ``"auto"`` (default: ``"reset"`` on Linux, else ``"sample"``),
            ``"reset"`` (exact, per call; **resets the process's high-water mark**, so that
            ``getrusage().ru_maxrss`` and ``/usr/bin/time`` afterwards report the peak since the
            reset, not the lifetime peak) or ``"sample"`` (a thread polls the resident size every
            millisecond and leaves those counters alone; a shorter spike can be missed).

    Examples:
        >>> import torch
        >>> from sparselinear.memory import track_peak
        >>> with track_peak("cpu") as m:
        ...     x = torch.ones(25_000_000)  # 100 MB
        ...     del x
        >>> m.increase > 90e6
        True
    """
    tracker = PeakTracker(device if device is not None else default_device(), method)
    m = Measurement(device=str(tracker.device), method=tracker.method)
    m.baseline = tracker.current()
    tracker.start()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        m.peak = tracker.peak()
        tracker.stop()


def measure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Measurement:
    """Call ``fn(*args, **kwargs)`` and return a [`Measurement`][sparselinear.memory.Measurement] of
    its peak memory.

    The peak is per call (not the process's lifetime high-water mark). CPU when CUDA is not in
    use, else the current CUDA device, with the default method (on Linux: ``"reset"``, which
    resets the high-water mark that ``getrusage`` and ``/usr/bin/time`` report); use
    [`track_peak`][sparselinear.memory.track_peak] to choose the device or the method.


    Examples:
        >>> import torch
        >>> from sparselinear.memory import measure
        >>> m = measure(torch.ones, 25_000_000)
        >>> m.result.shape, m.increase > 90e6
        (torch.Size([25000000]), True)
    """
    with track_peak() as m:
        m.result = fn(*args, **kwargs)
    return m


def warm_up(device: torch.device | str | None = None) -> None:
    """Run tiny training steps so that the libraries and code loaded on first use are already
    resident before a baseline is taken: MKL, the sparse kernels, the optimizers and, on CPU,
    the parametrizations, gathers and checkpointing of [`ConnectomeRNN`][sparselinear.ConnectomeRNN]
    (the pages of code a first step touches count in the resident size: a few MB)."""
    from ..nn.connectome import ConnectomeRNN
    from ..nn.linear import SparseLinear
    from ..pattern.connectivity import Connectivity

    layer = SparseLinear(64, 64, Connectivity.random(64, 64, nnz=512, seed=0), device=device)
    for opt in (torch.optim.Adam(layer.parameters()), torch.optim.SGD(layer.parameters(), 0.1)):
        x = torch.randn(8, 64, device=device, requires_grad=True)
        torch.nn.functional.mse_loss(layer(x), torch.zeros(8, 64, device=device)).backward()
        opt.step()
        opt.zero_grad()
    if torch.device(device or "cpu").type != "cpu":
        return  # a device's peak counts its allocator's memory, not the process's code pages
    for every in (None, 2):
        rnn = ConnectomeRNN(Connectivity.random(64, 64, nnz=512, seed=0),
                            signs=torch.where(torch.arange(64) < 48, 1, -1),
                            groups=torch.arange(512) % 8, input_neurons=range(4),
                            output_neurons=range(2), checkpoint_every=every)
        opt = torch.optim.Adam(rnn.parameters())
        torch.nn.functional.mse_loss(rnn(torch.randn(2, 5, 4)), torch.zeros(2, 5, 2)).backward()
        opt.step()
        opt.zero_grad()
