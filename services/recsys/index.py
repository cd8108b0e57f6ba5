"""FAISS inner-product retrieval over item vectors: the one index class the service and the benches use.

Exact ``IndexFlatIP`` up to ``flat_max_items``; an ``IndexIVFFlat`` (inner product) above it. IVF rather
than HNSW because it builds in seconds at 1M items on two cores and has a GPU implementation. When faiss
was built with GPU support and a GPU is visible, the index is moved to GPU 0 automatically.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shared.logging import get_logger

log = get_logger(__name__)

FloatArray = npt.NDArray[np.float32]
# faiss GPU k-selection handles at most this many results per query.
GPU_MAX_K = 2048


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class ItemIndex:
    """Top-k inner-product search over ``vectors`` (row i is item i)."""

    def __init__(
        self,
        vectors: FloatArray,
        *,
        flat_max_items: int = 100_000,
        nlist: int | None = None,
        nprobe: int = 32,
        use_gpu: bool | None = None,
        train_sample: int = 64,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        import faiss

        # OpenMP's thread count is per calling thread, so it is set on every search (request threads
        # are fresh pool threads); None leaves it alone (batch jobs use every core).
        self.threads = threads
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n_items, self.dim = data.shape
        self.kind: Literal["flat", "ivf"] = "flat" if self.n_items <= flat_max_items else "ivf"
        index: Any
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
            self.nlist = 0
        else:
            # ~sqrt(n) lists keeps both k-means and the probed fraction small.
            self.nlist = nlist or max(64, int(math.sqrt(self.n_items)))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            size = min(self.n_items, train_sample * self.nlist)
            sample = data[rng.choice(self.n_items, size=size, replace=False)]
            index.train(sample)
            index.nprobe = nprobe
        index.add(data)
        self.nprobe = nprobe if self.kind == "ivf" else 0
        self.device = "cpu"
        if use_gpu is None:
            use_gpu = gpu_available()
        if use_gpu:
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
            if self.kind == "ivf":
                index.nprobe = nprobe
            self.device = "gpu"
        self._index = index
        log.info("item_index_built", kind=self.kind, items=self.n_items, dim=self.dim, device=self.device)

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Scores and item indices of the top ``k`` per query (index -1 where fewer exist)."""
        k = max(1, min(k, self.n_items, GPU_MAX_K if self.device == "gpu" else self.n_items))
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.threads is not None:
            import faiss

            faiss.omp_set_num_threads(self.threads)
        scores, ids = self._index.search(q, k)
        return scores, ids

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": self.n_items,
            "dim": self.dim,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "device": self.device,
        }
