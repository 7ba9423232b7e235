"""Flush subnormal floating-point numbers to zero while the sampler runs (x86-64).

Numbers below 2.2e-308 in magnitude ("subnormal" or "denormal") take a slow microcode path on
x86 CPUs: ``log1p(exp(x))`` over x in [-740, -709] costs 7x more per value than with them
flushed to zero (``bench/bench_subnormals.py --micro``). The Liu and Stein closed forms are
written in log space, but some intermediate terms are exponentials of differences of log
levels (``log1p(exp(lo - hi))`` in :func:`bayes_cart.kinetics.closed_form.log_add_exp`, the
censored tails of the likelihood) and reach that range far from the posterior, where warm-up
can wander. Flushing removes that slow path; in the typical set the cost is unchanged.

:func:`flush_subnormals` sets the FTZ (flush to zero) and DAZ (denormals are zero) bits of the
calling thread's SSE control register (MXCSR) for the duration of a ``with`` block and
restores the register afterwards. Threads created inside the block inherit the register
(Linux copies the floating-point control state to a new thread), which is how nutpie's chain
threads get it. XLA already runs JAX programs this way on CPU, so the JAX route is unchanged.

What it changes in the numbers: any result that would be subnormal becomes 0 (a term
``e^-708`` smaller than the one it is added to is dropped instead of kept to a few digits).
The log density and its gradient agree with the unflushed ones to far below the sampler's
accuracy; on the runs measured, the trajectories were identical.

On other processors (ARM, where the same bit lives in FPCR) this is a no-op.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

#: MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)
FTZ_DAZ = 0x8040


def supported() -> bool:
    """Whether this processor's control register can be set (x86-64)."""
    return platform.machine().lower() in {"x86_64", "amd64"}


@cache
def _mxcsr_functions() -> tuple[Any, Any]:
    """Numba functions reading and writing this thread's MXCSR (compiled on first use)."""
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()

    def _call(builder: Any, name: str, ptr: Any) -> None:
        fn_type = ir.FunctionType(ir.VoidType(), [i8p])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, name)
        builder.call(fn, [builder.bitcast(ptr, i8p)])

    @intrinsic
    def _read(typingctx):  # noqa: ARG001
        def codegen(context, builder, signature, args):  # noqa: ARG001
            ptr = cgutils.alloca_once(builder, i32)
            _call(builder, "llvm.x86.sse.stmxcsr", ptr)
            return builder.load(ptr)

        return types.uint32(), codegen

    @intrinsic
    def _write(typingctx, value):  # noqa: ARG001
        def codegen(context, builder, signature, args):  # noqa: ARG001
            ptr = cgutils.alloca_once(builder, i32)
            builder.store(args[0], ptr)
            _call(builder, "llvm.x86.sse.ldmxcsr", ptr)
            return context.get_dummy_value()

        return types.void(types.uint32), codegen

    @numba.njit(cache=True)
    def read() -> int:
        return _read()

    @numba.njit(cache=True)
    def write(value: int) -> None:
        _write(value)

    return read, write


def read_mxcsr() -> int | None:
    """Read the calling thread's MXCSR register (``None`` where it cannot be read)."""
    if not supported():
        return None
    read, _ = _mxcsr_functions()
    return int(read())


@contextmanager
def flush_subnormals(enabled: bool = True) -> Iterator[bool]:
    """Flush subnormal numbers to zero in this thread (and threads it starts) in the block.

    Parameters
    ----------
    enabled : bool
        ``False`` makes the block a no-op (to measure or reproduce the unflushed arithmetic).

    Yields
    ------
    bool
        Whether flushing is on in the block.

    Examples
    --------
    >>> import numpy as np
    >>> tiny = np.array([1e-310])
    >>> with flush_subnormals() as on:
    ...     inside = float(tiny[0] * 1.0)
    >>> (inside == 0.0) if on else True
    True
    >>> float(tiny[0] * 1.0) > 0.0
    True
    """
    if not (enabled and supported()):
        yield False
        return
    import numpy as np

    read, write = _mxcsr_functions()
    before = int(read())
    write(np.uint32(before | FTZ_DAZ))
    try:
        yield True
    finally:
        write(np.uint32(before))
