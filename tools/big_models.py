"""Export full-size benchmark models with random weights (never committed).

Usage (from the repo root)::

    python tools/big_models.py --out /tmp/big                       # all models
    python tools/big_models.py --out /tmp/big --only vit_b16 bert_base
    python tools/big_models.py --out /tmp/big --force                # re-export

Models (plain torch, seeded, eval mode, TorchScript exporter, opset 17, batch 1,
static shapes; BatchNorm folded into the convs by the exporter):

* ``resnet50``     ResNet-50 at 3x224x224 (``tools/export_samples.py``), ~25.6M params;
* ``mobilenetv2``  MobileNetV2 (width 1.0, ReLU6, 1000 classes) at 3x224x224, ~3.5M;
* ``vit_b16``      ViT-B/16: 224x224, 16x16 patches, 12 pre-norm layers, hidden 768,
  12 heads, MLP 3072, 1000 classes, ~86.6M;
* ``bert_base``    BERT-base encoder: vocab 30522, 512 positions, 2 token types,
  12 post-norm layers, hidden 768, 12 heads, MLP 3072, inputs ``input_ids`` and
  ``attention_mask`` [1, 128], ~109M;
* ``bert_large``   the same at 24 layers, hidden 1024, 16 heads, MLP 4096, ~334M
  parameters = 1.34 GB of fp32 weights, stored as ONNX external data
  (``bert_large.onnx`` + ``bert_large.onnx.data``, tensors over 1 KB outside);
* ``bert_xl``      48 such layers, ~636M parameters = 2.5 GB, over protobuf's 2 GB
  limit, also as external data (only exported when asked for by name).

A model already present in ``--out`` is kept (``--force`` re-exports). Every file is
loaded in onnxruntime and compared with torch on one seeded input; the maximum
difference relative to the output's scale is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_samples import export_resnet50  # noqa: E402
from sample_nets import InvertedResidual, conv_bn_act, randomize_batchnorm  # noqa: E402
from transformer_nets import Bert, EncoderLayer, bert_inputs, randomize_norms  # noqa: E402

OPSET = 17
SEED = 0
SEQ = 128
VOCAB = 30522
EXTERNAL_THRESHOLD = 1024  # bytes: smaller tensors stay inside the .onnx file
REL_TOLERANCE = 1e-3


# ---------------------------------------------------------------- architectures
class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width multiplier 1.0) in plain torch."""

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, nn.ReLU6())]
        cin = 32
        for expand, cout, repeat, stride in self.SETTINGS:
            for i in range(repeat):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_act(cin, 1280, 1, 1, nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x224x224 image."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class ViT(nn.Module):
    """ViT with a class token, learned position embeddings and pre-norm layers."""

    def __init__(
        self,
        image: int = 224,
        patch: int = 16,
        hidden: int = 768,
        n_layers: int = 12,
        n_heads: int = 12,
        inner: int = 3072,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        n_tokens = (image // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(3, hidden, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, hidden) * 0.02)
        self.layers = nn.Sequential(
            *(EncoderLayer(hidden, n_heads, inner, nn.GELU(), True, 1e-6) for _ in range(n_layers))
        )
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Classify from the class token."""
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        return self.head(self.norm(self.layers(x))[:, 0])


def bert(hidden: int, n_layers: int, n_heads: int, inner: int) -> Bert:
    """A BERT encoder of the given size with BERT's vocabulary and positions."""
    return Bert(VOCAB, hidden, n_layers, n_heads, inner, max_positions=512, type_vocab=2)


# ------------------------------------------------------------------- registry
Inputs = dict[str, torch.Tensor]


def image_input() -> Inputs:
    """Seeded pixel values [1, 3, 224, 224]."""
    gen = torch.Generator().manual_seed(SEED + 1)
    return {"pixel_values": torch.randn(1, 3, 224, 224, generator=gen)}


def token_input() -> Inputs:
    """Seeded token ids and an all-ones attention mask, [1, 128] each."""
    return bert_inputs(1, SEQ, SEED, VOCAB)


@dataclass(frozen=True)
class BigModel:
    """How to build, feed and store one benchmark model."""

    factory: Callable[[], nn.Module]
    inputs: Callable[[], Inputs]
    output: str
    external_data: bool = False


MODELS: dict[str, BigModel] = {
    "mobilenetv2": BigModel(MobileNetV2, image_input, "logits"),
    "vit_b16": BigModel(ViT, image_input, "logits"),
    "bert_base": BigModel(lambda: bert(768, 12, 12, 3072), token_input, "last_hidden_state"),
    "bert_large": BigModel(
        lambda: bert(1024, 24, 16, 4096), token_input, "last_hidden_state", external_data=True
    ),
    "bert_xl": BigModel(
        lambda: bert(1024, 48, 16, 4096), token_input, "last_hidden_state", external_data=True
    ),
}
ALL = ("resnet50", *MODELS)


def model_path(out: Path, name: str) -> Path:
    """Where ``name`` is (or will be) stored in ``out``."""
    return out / f"{name}.onnx"


def build(spec: BigModel) -> nn.Module:
    """The seeded model in eval mode, with non-trivial BatchNorm and LayerNorm parameters."""
    torch.manual_seed(SEED)
    model = spec.factory()
    randomize_batchnorm(model, SEED)
    randomize_norms(model, SEED)
    return model.eval()


def export(spec: BigModel, model: nn.Module, feed: Inputs, path: Path) -> None:
    """TorchScript export at the feed's static shapes; external data if the spec says so."""
    target = path
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        if spec.external_data:
            target = Path(tmp) / path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(feed.values()),
                str(target),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(feed),
                output_names=[spec.output],
                do_constant_folding=True,
            )
        if spec.external_data:
            proto = onnx.load(str(target))
            onnx.save(
                proto,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=f"{path.name}.data",
                size_threshold=EXTERNAL_THRESHOLD,
            )


def verify(path: Path, model: nn.Module, feed: Inputs) -> float:
    """Run ``path`` in onnxruntime; max |ort - torch| relative to max |torch|."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in feed.items()})[0]
    with torch.no_grad():
        want = model(*feed.values()).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"{path.name}: shape {got.shape} != torch {want.shape}")
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))


def weight_bytes(path: Path) -> int:
    """Bytes of all initializers (inline or external), from dims and data types."""
    proto = onnx.load(str(path), load_external_data=False)
    total = 0
    for t in proto.graph.initializer:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        total += int(np.prod(t.dims, dtype=np.int64)) * itemsize
    return total


def export_one(name: str, out: Path, force: bool = False) -> Path:
    """Export ``name`` into ``out`` unless present; return its path."""
    path = model_path(out, name)
    if path.exists() and not force:
        print(f"{name:12s} present: {path}")
        return path
    start = time.perf_counter()
    if name == "resnet50":
        export_resnet50(path)
    else:
        spec = MODELS[name]
        model, feed = build(spec), spec.inputs()
        export(spec, model, feed, path)
        rel = verify(path, model, feed)
        params = sum(p.numel() for p in model.parameters())
        flag = "" if rel <= REL_TOLERANCE else "  (ABOVE TOLERANCE)"
        print(f"{name:12s} {params / 1e6:.1f}M params, max|ort-torch|/max|torch| {rel:.1e}{flag}")
    mb = weight_bytes(path) / 2**20
    print(f"{name:12s} -> {path}  weights {mb:.0f} MiB  ({time.perf_counter() - start:.0f} s)")
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--only", nargs="+", choices=ALL, metavar="NAME", help=", ".join(ALL))
    parser.add_argument("--force", action="store_true", help="re-export models already present")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or [n for n in ALL if n != "bert_xl"]:
        export_one(name, args.out, args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
