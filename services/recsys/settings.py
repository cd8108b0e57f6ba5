"""Settings of the recsys service (env prefix ``CRM_RECSYS_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class RecsysSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_RECSYS_", extra="ignore")

    data_dir: str = Field(default="var/recsys", description="SQLite file and model versions live here.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    explain_top: int = Field(default=3, ge=0, le=20, description="'because' items per recommendation.")
    # Training
    min_train_interactions: int = Field(
        default=2000, ge=10, description="Serve popularity until this many interactions exist."
    )
    retrain_after_events: int = Field(
        default=20_000, ge=1, description="Retrain in the background after this many new interactions."
    )
    retrain_check_s: float = Field(default=10.0, gt=0, description="How often the trainer looks for work.")
    auto_train: bool = Field(
        default=True, description="Train in the background when there is enough new data."
    )
    serving_rank: int = Field(
        default=768,
        ge=0,
        description="Serve B through a rank-r factorisation (r-dim FAISS vectors); 0 serves B exactly.",
    )
    max_model_items: int = Field(default=8000, ge=2, description="Catalog cap for the item-item model.")
    keep_versions: int = Field(default=5, ge=1, description="Model versions kept on disk.")
    tuning_grid: list[tuple[float, float]] | None = Field(
        default=None, description="(lambda, dropout) pairs to try; default: the built-in grid."
    )
    # FAISS
    flat_max_items: int = Field(
        default=100_000, ge=1, description="Exact IndexFlatIP up to this many items; IVF above."
    )
    ivf_nlist: int | None = Field(default=None, ge=1, description="IVF lists (default ~sqrt(items)).")
    ivf_nprobe: int = Field(default=32, ge=1, description="IVF lists probed per search (recall vs latency).")
    use_gpu: bool | None = Field(
        default=None, description="FAISS on GPU: default when faiss-gpu and a GPU exist."
    )
    search_threads: int = Field(
        default=1, ge=1, description="OpenMP (FAISS) and BLAS threads per call inside the service process."
    )

    def models_dir(self) -> Path:
        return Path(self.data_dir) / "models"

    def index_options(self) -> dict[str, Any]:
        return {
            "flat_max_items": self.flat_max_items,
            "nlist": self.ivf_nlist,
            "nprobe": self.ivf_nprobe,
            "use_gpu": self.use_gpu,
            "threads": self.search_threads,
        }


@lru_cache
def get_settings() -> RecsysSettings:
    return RecsysSettings()
