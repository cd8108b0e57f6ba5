from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.sentiment import data
from services.sentiment.model import detect_language, neutral_margin
from services.sentiment.service import label_for


def test_languages_are_detected_from_cjk_characters() -> None:
    assert detect_language("这本书写得很好") == "zh"
    assert detect_language("Great product, 好!") == "en"
    assert detect_language("Loved it") == "en"


def test_labels_are_neutral_inside_the_margin() -> None:
    assert label_for(0.55, 0.1) == "neutral"
    assert label_for(0.61, 0.1) == "positive"
    assert label_for(0.2, 0.1) == "negative"


def test_the_neutral_margin_reaches_the_target_precision_on_validation_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    # Confident predictions are right, those near 0.5 are coin flips.
    probs = np.where(rng.random(2000) < 0.7, np.where(labels == 1, 0.9, 0.1), rng.uniform(0.4, 0.6, 2000))
    margin = neutral_margin(probs, labels, target_precision=0.9, max_neutral=0.5)

    keep = np.abs(probs - 0.5) >= margin
    assert 0 < margin <= 0.11
    assert ((probs[keep] >= 0.5) == labels[keep]).mean() >= 0.9


def test_rotten_tomatoes_test_split_is_disjoint_and_stable() -> None:
    ds = data.rotten_tomatoes()
    assert len(ds.test) > 900
    assert not set(ds.test.texts) & set(ds.train.texts)
    assert data.rotten_tomatoes().test.texts == ds.test.texts


def test_chinese_split_is_disjoint_and_balanced() -> None:
    ds = data.chinese()
    assert not set(ds.test.texts) & set(ds.train.texts)
    assert 0.4 < sum(ds.test.labels) / len(ds.test) < 0.6


# Two clear reviews and one longer than the model reads: every CPU backend must score them as float32 does.
BACKEND_TEXTS = [
    "An absolute delight, I loved every minute.",
    "A dull, tedious mess and a waste of money.",
    "It arrived on Tuesday. " * 60 + "Sadly it was broken.",
]


@pytest.fixture
def first_start_reference(sentiment_models_dir: Path) -> tuple[Path, np.ndarray]:
    """The first-start model's directory and its float32 torch scores of BACKEND_TEXTS."""
    from services.sentiment.model import KIND_FROZEN, list_models, load_network

    model_dir = list_models(sentiment_models_dir / "models", KIND_FROZEN)[0]
    return model_dir, load_network(model_dir, backend="torch").predict_proba(BACKEND_TEXTS)


def test_onnx_backends_agree_with_float32_torch_and_are_cached_next_to_the_model(
    first_start_reference: tuple[Path, np.ndarray],
) -> None:
    from services.sentiment import onnx_backend
    from services.sentiment.model import load_network

    model_dir, reference = first_start_reference
    texts = BACKEND_TEXTS
    fp32 = load_network(model_dir, backend="onnx")
    built = (model_dir / "onnx" / onnx_backend.INT8).stat().st_mtime_ns
    int8 = load_network(model_dir, backend="onnx-int8")

    assert (fp32.backend, int8.backend) == ("onnx", "onnx-int8")
    assert (model_dir / "onnx" / onnx_backend.INT8).stat().st_mtime_ns == built  # reused, not rebuilt
    np.testing.assert_allclose(fp32.predict_proba(texts), reference, atol=1e-4)
    # The first-start head's large logistic-regression weights magnify int8 rounding: 0.068 on one of
    # these texts with ONNX Runtime's AVX-512 VNNI kernels (within 0.05 on an AVX2 CPU). Labels must agree.
    np.testing.assert_allclose(int8.predict_proba(texts), reference, atol=0.1)
    assert ((int8.predict_proba(texts) >= 0.5) == (reference >= 0.5)).all()


def test_torch_bf16_and_int8_backends_agree_with_float32_and_auto_picks_one_of_them(
    first_start_reference: tuple[Path, np.ndarray],
) -> None:
    from services.sentiment.model import auto_cpu_backend, load_network

    model_dir, reference = first_start_reference
    texts = BACKEND_TEXTS
    bf16 = load_network(model_dir, backend="bf16")
    int8 = load_network(model_dir, backend="int8")
    auto = load_network(model_dir, backend="auto")

    assert (bf16.backend, bf16.dtype, int8.backend, int8.dtype) == ("bf16", "bfloat16", "int8", "qint8")
    assert auto.backend == auto_cpu_backend() in ("bf16-compiled", "bf16", "int8")
    # The Chinese network: bf16 with AMX too, else ONNX int8 (torch int8 cost it 0.7 points).
    assert auto_cpu_backend("zh") == (auto_cpu_backend() if auto_cpu_backend() != "int8" else "onnx-int8")
    # bf16 (the head stays float32) moved these by at most 0.004; torch int8 by 0.106 on the second text
    # (0.78 vs 0.67; the first-start head's large logistic-regression weights magnify int8 rounding).
    np.testing.assert_allclose(bf16.predict_proba(texts), reference, atol=0.02)
    np.testing.assert_allclose(int8.predict_proba(texts), reference, atol=0.15)
    for model in (bf16, int8, auto):
        assert ((model.predict_proba(texts) >= 0.5) == (reference >= 0.5)).all()


def test_no_training_text_is_a_held_out_text_of_any_english_set() -> None:
    # Pang & Lee's sentences are Rotten Tomatoes snippets: the raw corpora share texts across splits.
    rt = data.rotten_tomatoes()
    copy = data.Dataset("copy", "en", rt.test, data.Split(), data.Split())  # rt's test as another's train
    cleaned_rt, cleaned_copy = data.without_held_out([rt, copy])

    assert len(cleaned_copy.train) == 0
    assert len(cleaned_rt.test) == len(rt.test)
    held_out = {data.normalise(t) for t in rt.test.texts + rt.val.texts}
    assert not held_out & {data.normalise(t) for t in cleaned_rt.train.texts}


def test_head_tail_truncation_keeps_both_ends_of_a_long_text() -> None:
    from services.sentiment.model import base_model_path, encode, load_tokenizer

    tokenizer = load_tokenizer(base_model_path())
    text = "wonderful start " + "filler " * 300 + "terrible ending"
    ids = encode(tokenizer, [text, "short"], 32, "head_tail")
    tokens = tokenizer.convert_ids_to_tokens(ids[0])

    assert len(ids[0]) == 32
    assert tokens[:3] == ["[CLS]", "wonderful", "start"]
    assert tokens[-3:] == ["terrible", "ending", "[SEP]"]
    assert ids[1] == encode(tokenizer, ["short"], 32, "head")[0]


def test_the_batcher_runs_as_many_batches_at_once_as_it_has_workers() -> None:
    import asyncio
    import threading
    from collections.abc import Sequence

    from services.sentiment.batcher import MicroBatcher

    # Each batch waits for a second batch to be inside the model at the same time; with one worker the
    # barrier would break (after its guard timeout) instead of opening.
    both_inside = threading.Barrier(2, timeout=30)

    def predict(texts: Sequence[str]) -> np.ndarray:
        both_inside.wait()
        return np.array([len(t) / 10 for t in texts])

    async def run() -> list[list[float]]:
        batcher = MicroBatcher(predict, max_batch_size=2, max_wait_ms=1, workers=2)
        batcher.start()
        try:
            return await asyncio.gather(batcher.submit(["a", "bb"]), batcher.submit(["ccc", "dddd"]))
        finally:
            await batcher.stop()

    assert asyncio.run(run()) == [[0.1, 0.2], [0.3, 0.4]]


def test_repeat_passes_a_named_sets_distinct_training_texts_k_times() -> None:
    from services.sentiment.training import parse_repeat, repeat_training_rows, training_rows

    food = data.Dataset(
        "finefood",
        "en",
        data.Split(["Great coffee!", "great  coffee", "Stale crackers."], [1, 1, 0]),
        data.Split(),
        data.Split(),
    )
    movies = data.Dataset(
        "rotten_tomatoes", "en", data.Split(["A fine film.", "Dull."], [1, 0]), data.Split(), data.Split()
    )
    rows = training_rows([movies, food])  # "great  coffee" is "Great coffee!" again: one text
    repeated = repeat_training_rows(rows, [movies, food], parse_repeat(["finefood=3"]))

    counts = {t: repeated.texts.count(t) for t in repeated.texts}
    assert counts == {"A fine film.": 1, "Dull.": 1, "Great coffee!": 3, "Stale crackers.": 3}
    assert dict(zip(repeated.texts, repeated.labels, strict=True)) == dict(
        zip(rows.texts, rows.labels, strict=True)
    )
    assert repeat_training_rows(rows, [movies, food], {}) == rows
    with pytest.raises(ValueError, match="yelp"):
        repeat_training_rows(rows, [movies, food], {"yelp": 2})
    for bad in ("finefood", "finefood=0", "finefood=1.5", "=2"):
        with pytest.raises(ValueError, match="NAME=K"):
            parse_repeat([bad])


def test_the_training_plan_covers_every_row_once_per_epoch_in_an_order_set_by_the_order_seed() -> None:
    from services.sentiment.training import training_plan

    lengths = [(i * 37) % 120 + 1 for i in range(1000)]
    plan, per_epoch = training_plan(lengths, 32, 2.5, order_seed=13)

    assert per_epoch == 32  # 1,000 rows in batches of at most 32
    assert len(plan) == 80  # two and a half epochs
    for epoch in range(2):
        rows = [i for batch in plan[epoch * per_epoch : (epoch + 1) * per_epoch] for i in batch]
        assert sorted(rows) == list(range(1000))
    assert plan[:per_epoch] != plan[per_epoch : 2 * per_epoch]  # each epoch is shuffled anew
    assert training_plan(lengths, 32, 2.5, order_seed=13) == (plan, per_epoch)
    other, _ = training_plan(lengths, 32, 2.5, order_seed=14)
    assert other[:per_epoch] != plan[:per_epoch]


def test_a_short_cpu_bf16_fine_tune_writes_a_model_that_loads_and_records_its_precision(
    tmp_path: Path,
) -> None:
    from services.sentiment.model import KIND_FINETUNED, load_network, read_metadata
    from services.sentiment.training import fine_tune

    model_dir = fine_tune(
        tmp_path, epochs=1, batch_size=16, max_length=32, max_train=64, cpu_bf16=True, run_name="bf16"
    )

    meta = read_metadata(model_dir)
    assert meta["kind"] == KIND_FINETUNED
    assert meta["hyperparameters"]["cpu_bf16"] is True
    assert meta["hyperparameters"]["steps_done"] == meta["hyperparameters"]["steps_planned"] == 4
    probs = load_network(model_dir, backend="torch").predict_proba(["Loved it.", "Hated it."])
    assert probs.shape == (2,)
    assert ((probs > 0) & (probs < 1)).all()


def test_a_resumed_fine_tune_counts_the_training_time_of_the_run_it_resumes(tmp_path: Path) -> None:
    import torch

    from services.sentiment.model import read_metadata
    from services.sentiment.training import fine_tune

    first = read_metadata(fine_tune(tmp_path, epochs=1, max_length=32, max_train=160, run_name="resume"))
    # The time the finished run recorded in its last checkpoint (before writing it, so a little less than
    # the metadata's figure, which also counts that write).
    checkpoint = torch.load(tmp_path / "checkpoints" / "resume" / "last.pt", weights_only=False)
    # The same run name finds the finished checkpoint: nothing is trained again, the model is rewritten.
    again = read_metadata(fine_tune(tmp_path, epochs=1, max_length=32, max_train=160, run_name="resume"))

    assert again["hyperparameters"]["steps_done"] == first["hyperparameters"]["steps_done"] == 5
    recorded = round(checkpoint["train_seconds"], 1)  # the metadata's figures are rounded to 0.1 s
    assert 0 < recorded <= first["train_seconds"]
    assert again["train_seconds"] >= recorded


def test_the_throughput_benchs_untrained_stand_in_loads_when_pinned_and_is_never_served_unpinned(
    tmp_path: Path,
) -> None:
    from services.sentiment.model import KIND_UNTRAINED_HEAD, load_network, save_untrained_head
    from services.sentiment.service import english_model_dir
    from services.sentiment.settings import SentimentSettings

    path = save_untrained_head(tmp_path / "models")
    model = load_network(path, backend="torch", threads=1)
    probs = model.predict_proba(["A wonderful film.", "Stale and broken on arrival."])

    assert (model.kind, model.version) == (KIND_UNTRAINED_HEAD, path.name)
    assert probs.shape == (2,)
    assert bool(((probs >= 0) & (probs <= 1)).all())
    saved = (path / "metadata.json").stat().st_mtime_ns
    assert save_untrained_head(tmp_path / "models") == path
    assert (path / "metadata.json").stat().st_mtime_ns == saved  # saved once, then reused
    settings = SentimentSettings(data_dir=str(tmp_path), consume_events=False)
    assert english_model_dir(settings) is None  # its labels mean nothing: only a pinned version serves it
    assert english_model_dir(settings.model_copy(update={"model_version": path.name})) == path
