"""The operations behind every sparse layer: the autograd function, dense-band execution, torch's
CSR kernels in bounded chunks, column blocks and the compiled CPU kernels (``_ext``), and the
switch between kernel backends."""

from .torch_kernels import (
    CACHE_BYTES,
    CHUNK_BYTES,
    PRIVATE_BYTES,
    compute_dtype,
    empty_cache,
    extension_enabled,
    get_backend,
    set_backend,
    use_backend,
)

__all__ = [
    "CACHE_BYTES",
    "CHUNK_BYTES",
    "PRIVATE_BYTES",
    "compute_dtype",
    "empty_cache",
    "extension_enabled",
    "get_backend",
    "set_backend",
    "use_backend",
]
