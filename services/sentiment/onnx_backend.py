"""ONNX Runtime on CPU: the English network exported from our own model files, its transformer graph
fused (attention, LayerNorm, GELU), its weights int8-quantised, cached next to the model.

Nothing is downloaded: the export runs locally from the loaded torch network. The cache lives in
``<model_dir>/onnx/`` (``model.onnx`` float32 as exported, ``model-fused.onnx`` after ONNX Runtime's BERT
fusions, ``model-fused-int8.onnx`` with dynamically quantised MatMul weights) and is rebuilt when the
model's ``metadata.json`` changes (the files carry its hash in ``onnx/source.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from shared.logging import get_logger

log = get_logger(__name__)

FP32 = "model-fused.onnx"
INT8 = "model-fused-int8.onnx"


def _source_hash(model_dir: Path) -> str:
    return hashlib.sha1((model_dir / "metadata.json").read_bytes()).hexdigest()[:12]


def _export_onnx(net: Any, path: Path) -> None:
    import torch

    net.eval()
    dummy = (torch.ones((2, 16), dtype=torch.long), torch.ones((2, 16), dtype=torch.long))
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript tracer's notes on Python control flow
        torch.onnx.export(
            net,
            dummy,
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )


def build(model_dir: Path, net: Any, hidden_size: int, num_heads: int) -> Path:
    """Export, fuse and quantise ``net`` (float32 torch, on CPU) into ``<model_dir>/onnx``; returns it.
    A no-op when the cache is there and matches the model's metadata."""
    out = model_dir / "onnx"
    source = _source_hash(model_dir)
    marker = out / "source.json"
    if marker.exists() and json.loads(marker.read_text()).get("metadata_sha1") == source:
        if (out / FP32).exists() and (out / INT8).exists():
            return out
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    # Build in a temporary folder next to the cache and move it into place, so a reader never sees
    # half-written files and two processes building at once do not clash.
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=model_dir))
    try:
        _export_onnx(net, tmp / "model.onnx")
        fused = optimizer.optimize_model(
            str(tmp / "model.onnx"),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=1,
            use_gpu=False,
        )
        fused.save_model_to_file(str(tmp / FP32))
        quantize_dynamic(
            str(tmp / FP32),
            str(tmp / INT8),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # The fused operators (com.microsoft domain) have no ONNX shape inference: they are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        (tmp / "source.json").write_text(json.dumps({"metadata_sha1": source}))
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.replace(out)
        except OSError:  # another process moved its copy in first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("onnx_model_built", model_dir=str(model_dir))
    return out


class OrtNet:
    """Callable like the torch networks: ``(input_ids, attention_mask) -> logits`` (torch tensors in,
    a torch tensor out), backed by an ONNX Runtime CPU session."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No busy-waiting between operators: the cores are shared with the event loop and the consumers.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        logits = self.session.run(
            ["logits"],
            {
                "input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
                "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64),
            },
        )[0]
        return torch.from_numpy(np.asarray(logits))
