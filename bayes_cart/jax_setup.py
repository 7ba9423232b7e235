"""The one place where bayes_cart configures JAX: 64-bit floats and a persistent compile cache.

:func:`configure_jax` is called by the modules that compute with JAX (the ODE and
matrix-exponential solvers, when imported) and by the sampler before it compiles a JAX model.
It is idempotent.

* **64-bit floats** (``jax_enable_x64``): 32-bit floats cannot hold the 10+ orders of magnitude
  of a CAR-T profile at the tolerances used. This is process-wide in JAX, so a user's own JAX
  code in the same process also gets 64-bit defaults.
* **Persistent compilation cache** (``jax_compilation_cache_dir``): XLA programs that took at
  least :data:`MIN_COMPILE_SECONDS` to compile are written to disk and loaded by later
  processes that compile the same program (same model structure, data shapes and values):
  refitting a model, the predictive and log-likelihood programs of a fit, a second
  ``bayes-cart`` command on the same data. The directory is
  ``$BAYES_CART_JAX_CACHE`` if set (``off`` disables the cache), otherwise
  ``~/.cache/bayes_cart/jax``; a cache directory the user configured for JAX themselves
  (``JAX_COMPILATION_CACHE_DIR``) is left alone. Measured in ``bench/bench_compile.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: XLA programs that compile faster than this are not written to the cache.
MIN_COMPILE_SECONDS = 0.5

_configured = False


def jax_cache_dir() -> Path | None:
    """Directory of bayes_cart's persistent JAX compilation cache (``None``: disabled)."""
    value = os.environ.get("BAYES_CART_JAX_CACHE", "")
    if value.strip().lower() in {"off", "0", "false", "none"}:
        return None
    if value:
        return Path(value).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "bayes_cart" / "jax"


def configure_jax() -> None:
    """Switch JAX to 64-bit floats and turn on the persistent compilation cache (once)."""
    global _configured
    if _configured:
        return
    import jax

    jax.config.update("jax_enable_x64", True)
    cache = jax_cache_dir()
    if cache is not None and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home: compile without the cache
            cache = None
        if cache is not None:
            jax.config.update("jax_compilation_cache_dir", str(cache))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _configured = True
