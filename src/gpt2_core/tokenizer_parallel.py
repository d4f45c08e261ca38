"""Batch encoding on worker processes: what `GPT2Tokenizer.encode_batch(texts, num_workers=n)` runs.

Only on request: nothing here starts by itself, because the safe way to start workers depends on the process.
Workers are forked from the calling process when it runs a single thread, so they start with its warm caches
and nothing is pickled. A process that runs other threads (torch's or TensorFlow's thread pools, a server) gets
them from a fork server instead ("forkserver"; "spawn" where there is none): forking a multi-threaded process
copies locks that other threads held at that instant, and the child can hang on them forever. Those workers
receive a pickled copy of the tokenizer and start with empty caches. Both give the ids of the serial loop.
"""

from __future__ import annotations

import array
import gc
import os
import weakref
from bisect import bisect_left
from contextlib import contextmanager
from itertools import accumulate, chain
from typing import Callable, Sequence

_CHUNKS_PER_PROCESS = 8  # chunks per process: small enough to balance the work, large enough to send few messages


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while making ~1e5 tuples or lists that form no cycle (batch encoding):
    each collection would scan the young ones again, and the many survivors trigger full collections over every
    cache entry; that took half of a batch's unpacking."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def encode_serial(encode: Callable[[str], list[int]], texts: Sequence[str]) -> list[list[int]]:
    """The ids of each text, in this process."""
    with gc_paused():  # one list per text: see gc_paused
        return list(map(encode, texts))


def start_method() -> str:
    """"fork" when this process runs a single thread, else "forkserver" (or "spawn" where there is none)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and _thread_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _thread_count() -> int:
    """The threads of this process, native ones (torch's, TensorFlow's) included; 0 where it cannot tell."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class WorkerPool:
    """`workers` processes, each with a copy of `tokenizer`, encoding chunks of a batch beside this process."""

    def __init__(self, tokenizer, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.start_method = start_method()
        self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(self.start_method),
                                            initializer=_worker_init, initargs=(tokenizer,))
        # stops the workers when the pool is dropped or at exit
        self.close = weakref.finalize(self, self.executor.shutdown, wait=False, cancel_futures=True)

    def encode(self, encode: Callable[[str], list[int]], texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text: the workers take chunks from the front of the batch while this process encodes
        (with `encode`) chunks from the back that no worker has started, then unpacks the workers' results.

        Workers send each chunk's ids back as two flat uint32 arrays (ids, lengths): unpacking is one C call per
        chunk plus a slice per text, so the share of work that stays here is small.
        """
        chunks = _chunks(texts, _CHUNKS_PER_PROCESS * (self.workers + 1))
        futures = [self.executor.submit(_worker_encode, chunk) for chunk in chunks]
        results: list[list | None] = [None] * len(chunks)
        with gc_paused():
            for k in reversed(range(len(chunks))):
                if not futures[k].cancel():  # a worker has it: so are all before it
                    break
                results[k] = list(map(encode, chunks[k]))
            for k, future in enumerate(futures):
                if results[k] is None:
                    results[k] = _unpack(*future.result())
        return list(chain.from_iterable(results))


_WORKER = None  # the tokenizer of a worker process


def _worker_init(tokenizer) -> None:
    global _WORKER
    _WORKER = tokenizer


def _worker_encode(texts: list[str]) -> tuple[bytes, bytes]:
    """The ids of a chunk of texts, packed: all ids as uint32, then each text's number of ids."""
    if _WORKER is None:
        raise RuntimeError("tokenizer worker used before _worker_init")
    with gc_paused():
        encoded = list(map(_WORKER._encode_text, texts))
    ids = array.array("I")
    any(map(ids.extend, encoded))  # extend returns None: any() runs them all at C speed
    return ids.tobytes(), array.array("I", map(len, encoded)).tobytes()


def _unpack(ids_blob: bytes, lengths_blob: bytes) -> list[list[int]]:
    ids = array.array("I", ids_blob).tolist()
    ends = list(accumulate(array.array("I", lengths_blob)))
    return list(map(ids.__getitem__, map(slice, chain((0,), ends), ends)))


def _chunks(texts: Sequence[str], count: int) -> list[Sequence[str]]:
    """`texts` cut into about `count` runs of similar size in characters, in order."""
    ends = list(accumulate(map(len, texts)))
    step = max(1, ends[-1] // count)
    cuts = sorted({bisect_left(ends, size) + 1 for size in range(step, ends[-1], step)} - {len(texts)})
    cuts = [0, *cuts, len(texts)]
    return list(map(texts.__getitem__, map(slice, cuts, cuts[1:])))
