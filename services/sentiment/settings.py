"""Sentiment service settings (env prefix ``CRM_SENTIMENT_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SentimentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_SENTIMENT_", extra="ignore")

    data_dir: str = Field(
        default="var/sentiment", description="Datasets, model versions and the SQLite file."
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    model_version: str | None = Field(
        default=None,
        description="English model directory name under data_dir/models (pinned: never switched); default: "
        "the one most accurate on the validation splits of every English set (see model_poll_s), else "
        "one trained at start-up.",
    )
    zh_model_version: str | None = Field(
        default=None,
        description="Chinese model directory name under data_dir/models; default: the newest Chinese "
        "fine-tune or its ensemble, else the newest character n-gram one, else one trained at start-up.",
    )
    device: str = Field(default="auto", description="auto = CUDA when present, else cpu.")
    cpu_backend: Literal["auto", "torch", "bf16", "bf16-compiled", "int8", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="CPU inference. auto = bf16 on a CPU with AMX (Intel Sapphire Rapids or later), else "
        "int8; measured by bench/sentiment_throughput.py and bench/sentiment_quality.py, see "
        "docs/sentiment.md. bf16: weights and activations in bfloat16 (fast only with AMX or AVX-512 BF16). "
        "int8: torch dynamic quantisation with one weight scale per output channel (the fastest at float32 "
        "accuracy on the AVX-512 VNNI CPU without AMX). onnx-int8 / onnx: ONNX Runtime with int8 per-channel "
        "or float32 weights (exported locally, cached in <model>/onnx). torch: plain float32.",
    )
    zh_cpu_backend: Literal["auto", "torch", "bf16", "bf16-compiled", "int8", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="CPU inference of the Chinese network (the multilingual-e5 fine-tune), same choices. "
        "auto = bf16 with AMX, else onnx-int8: torch int8 cost that network 0.7 points of test accuracy "
        "where ONNX int8 cost 0.1 at about the same speed (docs/sentiment.md).",
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="CPU threads per forward (0 = torch's default; for ONNX Runtime, 1 when model_workers > 1, "
        "else every core).",
    )
    model_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="English batches run at once, each in its own thread (with ONNX Runtime each session then "
        "runs on one thread). 1 measured faster on 2 cores; see docs/sentiment.md.",
    )
    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Micro-batch size limit.")
    token_budget: int = Field(
        default=0,
        ge=0,
        description="Padded tokens per model forward (a micro-batch is cut into length-sorted chunks of at "
        "most this many); 0 = 512 on a CPU (measured fastest, docs/sentiment.md), 16384 on a GPU.",
    )
    max_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long a micro-batch waits to fill."
    )
    max_texts_per_request: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=5000, ge=1)
    consumer_group: str = Field(
        default="crm-sentiment", description="Group reading reviews/support messages."
    )
    customers_group: str = Field(
        default="crm-sentiment-customers", description="Group reading merges/erasures."
    )
    first_start_cap: int = Field(
        default=2500,
        ge=50,
        description="Training texts per English set embedded for the first start's frozen-MiniLM head "
        "(its n-gram models read every training text).",
    )
    model_poll_s: float = Field(
        default=30.0,
        ge=0,
        description="How often the service looks under data_dir/models for an English model (a finished "
        "`crm sentiment train`) that beats the served one on validation data, and switches to it; 0 = never.",
    )


@lru_cache
def get_settings() -> SentimentSettings:
    return SentimentSettings()
