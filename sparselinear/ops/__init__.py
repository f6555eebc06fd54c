"""The operations behind every sparse layer: the dispatch policy ([`policy`][sparselinear.kernels]:
which kernels a step runs, the backend switch and the tuning constants), the autograd function,
dense-band execution, torch's CSR kernels in bounded chunks, column blocks and the compiled CPU
kernels (``_ext``).

The names here are copies taken at import: to change a tuning constant, assign it on
[`sparselinear.kernels`][sparselinear.kernels] (the policy module itself), e.g.
``kernels.CACHE_BYTES = 0``."""

from .policy import (
    BACKENDS,
    CACHE_BYTES,
    CHUNK_BYTES,
    DENSE_BUDGET_BYTES,
    DENSE_MIN_FILL,
    FUSED_MAX_BATCH,
    MODES,
    PRIVATE_BYTES,
    STRIDED_MAX_BATCH,
    StepPlan,
    check_mode,
    compute_dtype,
    empty_cache,
    extension_enabled,
    get_backend,
    plan_step,
    set_backend,
    use_backend,
)

__all__ = [
    "BACKENDS",
    "CACHE_BYTES",
    "CHUNK_BYTES",
    "DENSE_BUDGET_BYTES",
    "DENSE_MIN_FILL",
    "FUSED_MAX_BATCH",
    "MODES",
    "PRIVATE_BYTES",
    "STRIDED_MAX_BATCH",
    "StepPlan",
    "check_mode",
    "compute_dtype",
    "empty_cache",
    "extension_enabled",
    "get_backend",
    "plan_step",
    "set_backend",
    "use_backend",
]
