"""MovieLens 100k read from the installed ``recbole`` package (bench, demo and `train --from-movielens` only).

In production the service learns from interaction events; this reader never runs on a request path.
Ids use the replay's format (``ml-<user>``, ``movie-<item>``): a CLI-trained model serves replayed customers.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import numpy.typing as npt


class MovieLensMissing(RuntimeError):
    """The recbole data package (which ships ml-100k) is not installed."""


def movielens_inter_path() -> Path:
    # find_spec locates recbole without importing it (its import pulls in torch and more).
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise MovieLensMissing("install the data package: pip install --no-deps recbole==1.2.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not path.exists():
        raise MovieLensMissing(f"recbole is installed but {path} is missing")
    return path


def load_movielens_100k() -> tuple[list[str], list[str], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Users, items (replay id format), ratings and timestamps of the 100,000 ml-100k ratings."""
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[int] = []
    with movielens_inter_path().open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [column.split(":", 1)[0] for column in next(reader)]
        at = {name: header.index(name) for name in ("user_id", "item_id", "rating", "timestamp")}
        for row in reader:
            if not row:
                continue
            users.append(f"ml-{row[at['user_id']]}")
            items.append(f"movie-{row[at['item_id']]}")
            ratings.append(float(row[at["rating"]]))
            stamps.append(int(float(row[at["timestamp"]])))
    return users, items, np.asarray(ratings), np.asarray(stamps, dtype=np.int64)
