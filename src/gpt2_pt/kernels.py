"""Which kernel runs the linear products of decoding (Conv1D and the LM head), per shape class and per host.

A decoding step is one product with every weight matrix of the model, so its speed is the speed at which the
product kernel reads the weights, and that depends on the host more than on the machine: on an AMD EPYC exposing
AVX2 only, torch's MKL takes a slow path (F.linear ~17 GB/s for one row) where numpy's OpenBLAS reads the same
weights at ~32 GB/s; on the Intel hosts MKL is the fast one. So the kernel is chosen by measuring, per host and per
shape class (one row, a few rows, many rows), on the model's own weights:

  * "torch":  F.linear in torch's thread pool (the default everywhere, and the reference of the tests);
  * "blas":   numpy's BLAS on zero-copy views of the same tensors, with the thread arrangement that lets it run
              without a fight: either BLAS owns the cores and torch runs on one thread around it, or BLAS runs on
              one thread beside torch's pool. Both pools spin-wait after each call; two pools of 2 threads on 2
              cores spin against each other and decoding falls ~4x (PERFORMANCE.md).

Outside `decoding(...)`, `linear` is F.linear. `decoding(model, rows)` (what generate enters) calibrates once per
host, library versions, thread count, model shape and row class (a few passes over the weights, interleaved; well
under a second on an idle machine, at most one round past a 1 s budget under load; cached in
~/.cache/gpt2/kernels.json or $GPT2_KERNEL_CACHE, delete it to calibrate again), arranges the thread pools for the
winner and restores them on exit. A calibration taken under load, whose rounds disagree, does not stay: the next
processes take it again (plan_for). Without numpy's BLAS or threadpoolctl (which sets BLAS's threads) it stays on "torch", and
GPT2_KERNELS=torch keeps it there on purpose.
Every kernel gives F.linear's products up to fp32 summation order (tests/pt/test_kernels.py).

    >>> with kernels.decoding(model, rows=1):     # generate does this
    ...     logits = model(ids, past_key_values=cache, logits_to_keep=1).logits
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib
import platform
import tempfile
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class Plan:
    """A kernel and the thread counts of torch's pool and BLAS's pool it runs with."""

    kernel: str
    torch_threads: int
    blas_threads: int

    @property
    def name(self) -> str:
        return f"{self.kernel} (torch {self.torch_threads} threads, blas {self.blas_threads})"


def row_class(rows: int) -> str:
    """The shape class of a product with `rows` rows: one row (a GEMV), a few (a batched decoding step), many."""
    return "one" if rows == 1 else "few" if rows <= 16 else "many"


# ----------------------------------------------------------------------------------------------- the kernels

def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(x, weight, bias), weight (out, in), through the kernel `decoding` chose for x's row count (F.linear
    itself outside `decoding`, and wherever the BLAS kernel does not apply: autograd, not fp32 on CPU)."""
    kernel = _state.kernels.get(row_class(x.numel() // x.size(-1))) if _state.kernels else None
    if kernel != "blas" or not _blas_applies(x, weight, bias):
        return F.linear(x, weight, bias)
    return blas_linear(x, weight, bias)


def chosen(rows: int) -> bool:
    """Whether `decoding` chose a kernel other than F.linear for products of `rows` rows."""
    return bool(_state.kernels) and _state.kernels[row_class(rows)] != "torch"


def blas_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear through numpy's BLAS (fp32 CPU tensors, no autograd): the products are written straight into the
    result tensor's memory, the weight is read in place whatever its layout (a Conv1D's (in, out) storage seen as
    (out, in) is a plain GEMM for BLAS, the LM head's (out, in) a transposed one); no copy of either. The bias is
    added by numpy too: on a decoding step's few hundred numbers a numpy call costs ~1 us, a torch one ~5-9."""
    x2 = x.reshape(-1, x.size(-1))  # (rows, in)
    out = torch.empty(x2.size(0), weight.size(0), dtype=x.dtype)  # (rows, out)
    o, w, xs = out.numpy(), weight.detach().numpy(), x2.detach().numpy()
    if x2.size(0) == 1:  # a GEMV: numpy's 2-D matmul would run a one-row GEMM, slower in some BLAS builds
        np.matmul(w, xs[0], out=o[0])
    else:
        np.matmul(xs, w.T, out=o)
    if bias is not None:
        np.add(o, bias.detach().numpy(), out=o)
    return out.view(*x.shape[:-1], weight.size(0))


def _blas_applies(x, weight, bias) -> bool:
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


# ----------------------------------------------------------------------------------------------- thread pools

class _State(threading.local):
    kernels: dict | None = None  # row class -> kernel, inside `decoding`


_state = _State()


@contextlib.contextmanager
def _threads(plan: Plan):
    """torch's pool and BLAS's pool at the plan's sizes, restored afterwards."""
    with _torch_threads(plan.torch_threads), _blas_threads(plan.blas_threads):
        yield


@contextlib.contextmanager
def _torch_threads(n: int):
    """torch's intra-op threads for this thread's work (with OpenMP the count is per calling thread)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _blas_threads(n: int):
    blas = _blas_controller()
    limit = blas.limit(limits=n, user_api="blas") if blas is not None else None
    try:
        yield
    finally:
        if limit is not None:
            limit.restore_original_limits()


_CONTROLLER = []


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded in the process (found once: the scan costs ~ms),
    or None without threadpoolctl or without a BLAS numpy can reach."""
    if not _CONTROLLER:
        try:
            import threadpoolctl
        except ImportError:
            _CONTROLLER.append(None)
        else:
            controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
            _CONTROLLER.append(controller if controller.lib_controllers else None)
    return _CONTROLLER[0]


def candidates(threads: int) -> list[Plan]:
    """The arrangements worth timing at `threads` threads: torch alone, BLAS owning the cores with torch on one
    thread, and single-thread BLAS beside torch's pool. BLAS only when threadpoolctl can size its pool."""
    plans = [Plan("torch", threads, 1)]
    if _blas_controller() is not None:
        plans.append(Plan("blas", threads, 1))
        if threads > 1:
            plans.append(Plan("blas", 1, threads))
    return plans


# ----------------------------------------------------------------------------------------------- calibration

def _products(model) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight (out, in), bias) of every product a decoding step runs: each Conv1D, then the LM head."""
    from .modeling import Conv1D

    pairs = [(m.weight.detach().t(), m.bias.detach()) for m in model.modules() if isinstance(m, Conv1D)]
    head = getattr(model, "lm_head", None)
    if head is not None:
        pairs.append((head.weight.detach(), None))
    return pairs


# Calibration reads at most this many bytes of weights per pass: well past the last-level caches (tens of MB), so
# every kernel is timed reading from memory as decoding does, yet a pass over a large model stays short.
CALIBRATION_BYTES = 256 << 20


def _sample(pairs):
    """The LM head plus the first layers' products, up to CALIBRATION_BYTES (all of them for a small model)."""
    *layers, head = pairs
    chosen, size = [head], head[0].numel() * 4
    for pair in layers:
        if size >= CALIBRATION_BYTES:
            break
        chosen.append(pair)
        size += pair[0].numel() * 4
    return chosen


def calibrate(model, rows: int, *, rounds: int = 3, budget_s: float = 1.0) -> dict:
    """Time every candidate arrangement on one pass over (a sample of) the model's products at `rows` rows,
    interleaved over `rounds` rounds so that a load spike on a shared machine hits all of them, stopping early
    after `budget_s`; the fastest pass of each counts. A candidate must beat "torch" by 5% to be chosen.
    Returns {"plan": the Plan's fields, "ms": {plan name: ms per pass}, "stable": whether the rounds agree (see
    `agree`)}."""
    pairs = _sample(_products(model))
    inputs = {n: torch.randn(rows, n) for n in {w.size(1) for w, _ in pairs}}
    plans = candidates(torch.get_num_threads())
    times = {plan: [] for plan in plans}
    start_all = time.perf_counter()
    with torch.inference_mode():
        for plan in plans:  # warm-up: the first BLAS call starts its threads and sizes its buffers
            with _threads(plan):
                _kernel(plan)(inputs[pairs[0][0].size(1)], *pairs[0])
        for _ in range(rounds):
            for plan in plans:
                run = _kernel(plan)
                with _threads(plan):
                    start = time.perf_counter()
                    for w, b in pairs:
                        run(inputs[w.size(1)], w, b)
                    times[plan].append(time.perf_counter() - start)
            if time.perf_counter() - start_all > budget_s:
                break
    best = {plan: min(t) * 1e3 for plan, t in times.items()}
    choice = min(best, key=best.get)
    if best[choice] > 0.95 * best[plans[0]]:
        choice = plans[0]
    return {"plan": dataclasses.asdict(choice), "ms": {p.name: round(ms, 3) for p, ms in best.items()},
            "stable": agree(list(times.values()))}


# Two passes over the same weights on an idle machine take the same time within a few percent; a load spike, or
# a neighbour's burst of work, makes one of them much slower. Past this spread a calibration proves nothing.
AGREEMENT = 1.3


def agree(rounds: list[list[float]]) -> bool:
    """Whether a calibration's timings can be trusted: at least two rounds of each candidate, and every
    candidate's slowest round within AGREEMENT of its fastest."""
    return all(len(t) >= 2 and max(t) <= AGREEMENT * min(t) for t in rounds)


def _kernel(plan: Plan):
    return F.linear if plan.kernel == "torch" else blas_linear


def host_key() -> str:
    """What the choice depends on besides the model: CPU model and flags, library versions, threads, BLAS."""
    blas = _blas_controller()
    blas_info = [] if blas is None else [(i["internal_api"], i.get("version"), i.get("architecture"))
                                           for i in blas.info()]
    parts = [_cpu_model(), _cpu_flags(), platform.machine(), torch.__version__, np.__version__,
             str(blas_info), str(torch.get_num_threads()), str(torch.backends.mkldnn.is_available())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _cpu_info_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_model() -> str:
    return _cpu_info_field("model name") or platform.processor()


def _cpu_flags() -> str:
    return _cpu_info_field("flags")


def cpu_description() -> str:
    """The CPU model and its vector flags, for benchmark headers."""
    flags = set(_cpu_flags().split())
    vector = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile")
              if f in flags]
    return f"{_cpu_model()} ({os.cpu_count()} cpus; {' '.join(vector) or 'no avx2'})"


def cache_path() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "gpt2" / "kernels.json"
    return pathlib.Path(os.environ.get("GPT2_KERNEL_CACHE", default))


def cache_key(model, rows: int) -> str:
    """The calibration's key: the host (host_key), the model's product shapes and the row class."""
    shapes = [tuple(w.shape) for w, _ in _products(model)]
    return f"{host_key()}/{hashlib.sha256(str(shapes).encode()).hexdigest()[:12]}/{row_class(rows)}"


# A calibration whose rounds disagreed (taken under load) is used by the process that took it and measured again
# by the next ones, until one agrees or this many have tried (then the last stands: a machine that is never
# quiet should not pay a calibration per process forever).
ATTEMPTS = 3

_session_plans: dict[tuple[str, str], Plan] = {}  # (cache file, key) -> plan settled in this process


def plan_for(model, rows: int) -> Plan:
    """The cached plan for this host, model shape and row class; calibrated (and cached) on first use. A cached
    calibration whose rounds disagreed is taken again by the next process (at most ATTEMPTS in all)."""
    key, path = cache_key(model, rows), cache_path()
    if (str(path), key) in _session_plans:  # settled in this process: no second calibration
        return _session_plans[str(path), key]
    entry = _read(path).get(key)
    if entry is None or _retry(entry):
        attempts = 0 if entry is None else entry.get("attempts", 0)
        entry = calibrate(model, rows) | {"cpu": cpu_description(), "rows": rows, "attempts": attempts + 1}
        table = _read(path)  # another process may have written other entries meanwhile
        table[key] = entry
        logger.info("kernel calibration for %s rows on %s (%s): %s", rows, entry["cpu"],
                    "rounds agree" if entry["stable"] else "rounds disagree, to be taken again", entry["ms"])
        _write(path, table)
    plan = _session_plans[str(path), key] = Plan(**entry["plan"])
    return plan


def _retry(entry: dict) -> bool:
    """A cached calibration to take again: its rounds disagreed (or it predates that check), and fewer than
    ATTEMPTS processes have tried."""
    return not entry.get("stable", False) and entry.get("attempts", 0) < ATTEMPTS


def _read(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or an unreadable one: calibrate again


def _write(path: pathlib.Path, table: dict) -> None:
    """Atomically (temp file + rename); a read-only home only costs the next process a calibration."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(table, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError as e:
        logger.warning("could not cache the kernel calibration in %s: %s", path, e)


# ----------------------------------------------------------------------------------------------- the entry point

@contextlib.contextmanager
def decoding(model, rows: int):
    """Run the model's products through the kernel chosen for decoding `rows` rows at a time on this host, with
    the thread pools arranged for it; yields the Plan. fp32 models on CPU only; anything else, or GPT2_KERNELS=torch
    in the environment (F.linear's exact numbers everywhere, e.g. to compare runs across hosts), runs unchanged
    and yields None."""
    choice = os.environ.get("GPT2_KERNELS", "auto")
    if choice not in ("auto", "torch"):
        raise ValueError(f"GPT2_KERNELS should be 'auto' or 'torch'. Received: GPT2_KERNELS={choice!r}")
    if choice == "torch" or not _applies(model):
        yield None
        return
    plan = plan_for(model, rows)
    kernels = dict.fromkeys(("one", "few", "many"), "torch")
    kernels[row_class(rows)] = plan.kernel
    if plan.kernel == "blas" and plan.torch_threads == 1:
        # torch has one thread now, BLAS the rest: the prompt's products go to BLAS's full pool too.
        kernels = dict.fromkeys(kernels, "blas")
    previous = _state.kernels
    _state.kernels = kernels
    try:
        with _shared_threads(plan):
            yield plan
    finally:
        _state.kernels = previous


_blas_users = {"count": 0, "exit": None}  # decodings under way in this process, and how to restore BLAS's pool
_blas_lock = threading.Lock()


@contextlib.contextmanager
def _shared_threads(plan: Plan):
    """_threads(plan) for a decoding that may overlap others (a server's threads). torch's count is per thread,
    so each sets and restores its own; BLAS's pool is the process's: the first decoding sizes it, the last one
    to end restores it, so overlapping decodings never leave it at a decoding's size."""
    with _blas_lock:
        if _blas_users["count"] == 0:
            arrangement = _blas_threads(plan.blas_threads)
            arrangement.__enter__()
            _blas_users["exit"] = arrangement
        _blas_users["count"] += 1
    try:
        with _torch_threads(plan.torch_threads):
            yield
    finally:
        with _blas_lock:
            _blas_users["count"] -= 1
            if _blas_users["count"] == 0:
                _blas_users.pop("exit").__exit__(None, None, None)


def _applies(model) -> bool:
    """Our models (whose Conv1D and LM head call `linear`), fp32 on CPU."""
    from .modeling import GPT2PreTrainedModel

    return isinstance(model, GPT2PreTrainedModel) and all(
        p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
