"""What the CPU can do, read from /proc/cpuinfo (Linux) without a framework: whether bfloat16 math is native."""

from __future__ import annotations

import functools

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_bfloat16() -> bool:
    """True where the CPU computes in bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and
    slower than float32."""
    return any(flag in cpu_flags() for flag in _BF16_FLAGS)
