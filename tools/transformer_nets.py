"""Small deterministic transformer architectures in plain torch (no ``transformers``).

Attention is written the way common model code writes it, so exporters emit the
patterns a pruner meets in the wild: separate or fused q/k/v ``nn.Linear``,
``x.view(B, S, n_heads, head_dim).transpose(1, 2)``, ``q @ k^T / sqrt(head_dim)``,
softmax, ``@ v``, transpose back and ``reshape(B, S, hidden)`` (literal hidden size)
or ``.contiguous().view(B, S, -1)``, then an output projection.

``SPECS`` lists the exported samples (``bert_tiny``, ``vit_tiny``, ``gpt_tiny``,
``gqa_tiny``): each spec builds a seeded eval-mode model and seeded example inputs
of any batch/sequence size, and names the inputs, outputs and dynamic axes.
``Bert`` is also the encoder that ``tools/minilm.py`` loads real weights into.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

SEED = 0
VOCAB = 100
HIDDEN = 32
HEADS = 4
MLP = 64
MAX_POSITIONS = 64
IMAGE = 16
PATCH = 4


# ------------------------------------------------------------------ attention
class SelfAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections (BERT / ViT style)."""

    def __init__(self, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.hidden, self.n_heads, self.head_dim = hidden, n_heads, hidden // n_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, hidden] -> [B, heads, S, head_dim]."""
        b, s, _ = x.shape
        return x.view(b, s, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over the sequence; ``mask`` is additive, broadcast to [B, heads, S, S]."""
        b, s, _ = x.shape
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2)
        return self.out(context.reshape(b, s, self.hidden))


def causal_mask(seq: int, device: torch.device) -> torch.Tensor:
    """Boolean [S, S] mask, True above the diagonal (future positions)."""
    return torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=device), diagonal=1)


class CausalSelfAttention(nn.Module):
    """GPT-2 style: one fused Linear(hidden, 3*hidden) split into q, k, v."""

    def __init__(self, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.hidden, self.n_heads, self.head_dim = hidden, n_heads, hidden // n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal attention; the mask is built from the run-time sequence length."""
        b, s, _ = x.shape
        q, k, v = self.qkv(x).split(self.hidden, dim=2)
        q = q.view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(causal_mask(s, x.device), float("-inf"))
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2)
        return self.out(context.contiguous().view(b, s, -1))


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Llama's repeat_kv: [B, kv_heads, S, D] -> [B, kv_heads * n_rep, S, D]."""
    b, kv_heads, s, d = x.shape
    if n_rep == 1:
        return x
    x = x[:, :, None, :, :].expand(b, kv_heads, n_rep, s, d)
    return x.reshape(b, kv_heads * n_rep, s, d)


class GroupedQueryAttention(nn.Module):
    """Llama-style GQA: ``n_heads`` query heads share ``n_kv_heads`` key/value heads."""

    def __init__(self, hidden: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = hidden // n_heads
        self.q_proj = nn.Linear(hidden, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal GQA with an additive -inf mask above the diagonal."""
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        mask = torch.full((s, s), float("-inf"), device=x.device).triu(1)
        context = ((scores + mask).softmax(dim=-1) @ v).transpose(1, 2)
        return self.o_proj(context.reshape(b, s, self.n_heads * self.head_dim))


# ------------------------------------------------------------- blocks, norms
class RMSNorm(nn.Module):
    """Root-mean-square norm written out (no mean subtraction, learned scale)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x / rms(x) * weight`` over the last axis."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class FeedForward(nn.Module):
    """Linear -> activation -> Linear."""

    def __init__(self, hidden: int, inner: int, act: nn.Module) -> None:
        super().__init__()
        self.up, self.act, self.down = nn.Linear(hidden, inner), act, nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Position-wise MLP."""
        return self.down(self.act(self.up(x)))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``, bias-free as in Llama."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden, inner, bias=False)
        self.up = nn.Linear(hidden, inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated MLP."""
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))


class EncoderLayer(nn.Module):
    """Transformer encoder layer; post-norm (BERT) or pre-norm (ViT)."""

    def __init__(
        self,
        hidden: int,
        n_heads: int,
        inner: int,
        act: nn.Module | None = None,
        pre_norm: bool = False,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = SelfAttention(hidden, n_heads)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.mlp = FeedForward(hidden, inner, act or nn.GELU())
        self.mlp_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention and MLP sublayers, each with a residual connection."""
        if self.pre_norm:
            x = x + self.attn(self.attn_norm(x), mask)
            return x + self.mlp(self.mlp_norm(x))
        x = self.attn_norm(x + self.attn(x, mask))
        return self.mlp_norm(x + self.mlp(x))


class DecoderBlock(nn.Module):
    """Pre-RMSNorm decoder block: causal attention + SwiGLU MLP."""

    def __init__(self, attn: nn.Module, hidden: int, inner: int) -> None:
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(hidden), attn
        self.mlp_norm, self.mlp = RMSNorm(hidden), SwiGLU(hidden, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two residual sublayers."""
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


# --------------------------------------------------------------------- models
class Bert(nn.Module):
    """BERT encoder: word + position (+ token type 0) embeddings, LayerNorm, layers.

    ``forward(input_ids, attention_mask)`` returns ``last_hidden_state`` [B, S, hidden];
    padding (mask 0) becomes an additive ``finfo.min`` mask as in ``transformers``.
    """

    def __init__(
        self,
        vocab: int = VOCAB,
        hidden: int = HIDDEN,
        n_layers: int = 2,
        n_heads: int = HEADS,
        inner: int = MLP,
        max_positions: int = MAX_POSITIONS,
        type_vocab: int = 0,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden) if type_vocab else None
        self.embed_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            EncoderLayer(hidden, n_heads, inner, eps=eps) for _ in range(n_layers)
        )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token + position (+ token type 0) embeddings, then LayerNorm."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        if self.token_type_embeddings is not None:
            x = x + self.token_type_embeddings.weight[0]
        return self.embed_norm(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode a padded batch of token ids."""
        mask = attention_mask[:, None, None, :].to(torch.float32)
        mask = (1.0 - mask) * torch.finfo(torch.float32).min
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x


class ViTTiny(nn.Module):
    """ViT on 3x16x16: 4x4 patches (16 tokens) + class token, 2 pre-norm layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        n_tokens = (IMAGE // PATCH) ** 2 + 1
        self.patch_embed = nn.Conv2d(3, HIDDEN, PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.randn(1, 1, HIDDEN) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, HIDDEN) * 0.02)
        self.layers = nn.Sequential(
            EncoderLayer(HIDDEN, HEADS, MLP, nn.GELU(), pre_norm=True, eps=1e-6),
            EncoderLayer(HIDDEN, HEADS, MLP, nn.GELU(approximate="tanh"), pre_norm=True, eps=1e-6),
        )
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-6)
        self.head = nn.Linear(HIDDEN, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Classify from the class token."""
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.layers(x))
        return self.head(x[:, 0])


class DecoderLM(nn.Module):
    """Token + learned position embeddings, decoder blocks, RMSNorm, LM head."""

    def __init__(self, blocks: list[nn.Module], hidden: int) -> None:
        super().__init__()
        self.tok_embed = nn.Embedding(VOCAB, hidden)
        self.pos_embed = nn.Embedding(MAX_POSITIONS, hidden)
        self.blocks = nn.Sequential(*blocks)
        self.norm = RMSNorm(hidden)
        self.lm_head = nn.Linear(hidden, VOCAB, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, S, vocab]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tok_embed(input_ids) + self.pos_embed(positions)
        return self.lm_head(self.norm(self.blocks(x)))


def gpt_tiny() -> DecoderLM:
    """2 blocks, hidden 32, 4 heads, fused QKV, SwiGLU 64."""
    blocks = [DecoderBlock(CausalSelfAttention(HIDDEN, HEADS), HIDDEN, MLP) for _ in range(2)]
    return DecoderLM(blocks, HIDDEN)


def gqa_tiny() -> DecoderLM:
    """1 block, hidden 64, 8 query heads and 2 key/value heads of dim 8, SwiGLU 128."""
    hidden = 64
    return DecoderLM([DecoderBlock(GroupedQueryAttention(hidden, 8, 2), hidden, 128)], hidden)


# ------------------------------------------------------------------- registry
def randomize_norms(model: nn.Module, seed: int = SEED) -> None:
    """Give every LayerNorm / RMSNorm a distinct non-trivial scale (and shift).

    Freshly initialised norms are all ones and zeros; exporters then deduplicate them
    into one shared initializer, which trained models never have.
    """
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, RMSNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            if isinstance(m, nn.LayerNorm):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


Inputs = dict[str, torch.Tensor]


def token_inputs(batch: int, seq: int, seed: int = SEED, vocab: int = VOCAB) -> Inputs:
    """Seeded ``input_ids`` [batch, seq] in ``[0, vocab)``."""
    gen = torch.Generator().manual_seed(seed + 1)
    return {"input_ids": torch.randint(0, vocab, (batch, seq), generator=gen)}


def bert_inputs(batch: int, seq: int, seed: int = SEED, vocab: int = VOCAB) -> Inputs:
    """Token ids plus an ``attention_mask`` whose rows after the first are right-padded."""
    feed = token_inputs(batch, seq, seed, vocab)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    for row in range(1, batch):
        mask[row, max(1, seq - 2 * row) :] = 0
    feed["attention_mask"] = mask
    return feed


def image_inputs(batch: int, seq: int = 0, seed: int = SEED) -> Inputs:
    """Seeded ``pixel_values`` [batch, 3, 16, 16]; ``seq`` is ignored."""
    gen = torch.Generator().manual_seed(seed + 1)
    return {"pixel_values": torch.randn(batch, 3, IMAGE, IMAGE, generator=gen)}


BATCH_SEQ = {0: "batch", 1: "seq"}


@dataclass(frozen=True)
class TransformerSpec:
    """How to build, feed and export one sample transformer."""

    factory: Callable[[], nn.Module]
    make_inputs: Callable[[int, int, int], Inputs]
    output: str
    input_axes: dict[str, dict[int, str]]
    output_axes: dict[int, str] = field(default_factory=lambda: dict(BATCH_SEQ))
    max_seq: int = MAX_POSITIONS
    pretrained: bool = False

    @property
    def has_seq(self) -> bool:
        """True if the sequence length is a dynamic axis."""
        return any("seq" in axes.values() for axes in self.input_axes.values())

    def build(self, seed: int = SEED) -> nn.Module:
        """Model in eval mode; unless pretrained, seeded with randomized norm parameters."""
        torch.manual_seed(seed)
        model = self.factory()
        if not self.pretrained:
            randomize_norms(model, seed)
        return model.eval()


SPECS: dict[str, TransformerSpec] = {
    "bert_tiny": TransformerSpec(
        Bert,
        bert_inputs,
        "last_hidden_state",
        {"input_ids": BATCH_SEQ, "attention_mask": BATCH_SEQ},
    ),
    "vit_tiny": TransformerSpec(
        ViTTiny, image_inputs, "logits", {"pixel_values": {0: "batch"}}, {0: "batch"}
    ),
    "gpt_tiny": TransformerSpec(gpt_tiny, token_inputs, "logits", {"input_ids": BATCH_SEQ}),
    "gqa_tiny": TransformerSpec(gqa_tiny, token_inputs, "logits", {"input_ids": BATCH_SEQ}),
}
