"""The demo model in PyTorch: the forward pass llama.cpp computes for its GGUF pair.

Every choice here mirrors :mod:`stagewise.models.build.gguf_writer`'s description of the llama.cpp
graph: LayerNorm with bias and tanh-GELU in the vision tower, no class embedding and no
post-norm, an ``mlp`` projector over every patch, RMSNorm, interleaved-pair RoPE, grouped
K/V heads and SwiGLU in the decoder, no biases there. Image embeddings take ordinary
positions in the sequence, with causal attention like the text around them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stagewise.models.recipes.demo.spec import DemoSpec


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotates interleaved pairs (x0, x1), (x2, x3), ... as llama's "normal" RoPE does.

    Args:
        x: ``(batch, heads, seq, head_dim)``.
        positions: ``(seq,)`` integer positions.
        base: The RoPE frequency base.
    """
    half = x.shape[-1] // 2
    inv = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) * 2 / x.shape[-1])
    angles = positions.float()[:, None] * inv[None, :]  # (seq, half)
    cos, sin = angles.cos(), angles.sin()
    pairs = x.unflatten(-1, (half, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class VitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.up = nn.Linear(dim, ff)
        self.down = nn.Linear(ff, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        q, k, v = (p(h).unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).flatten(-2))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class VisionTower(nn.Module):
    """Patches → ViT → ``mlp`` projector: one text-width embedding per patch."""

    def __init__(self, spec: DemoSpec, eps: float = 1e-5) -> None:
        super().__init__()
        v, p = spec.v_embd, spec.patch_size
        self.patch = nn.Conv2d(3, v, p, stride=p)
        self.position = nn.Parameter(torch.randn(spec.n_patches, v) * 0.02)
        self.pre_ln = nn.LayerNorm(v, eps=eps)
        self.blocks = nn.ModuleList(VitBlock(v, spec.v_head, spec.v_ff, eps)
                                    for _ in range(spec.v_blocks))
        self.mm0 = nn.Linear(v, spec.text.n_embd)
        self.mm2 = nn.Linear(spec.text.n_embd, spec.text.n_embd)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(batch, 3, H, W)`` normalised pixels → ``(batch, patches, n_embd)``."""
        x = self.patch(pixels).flatten(2).transpose(1, 2) + self.position
        x = self.pre_ln(x)
        for block in self.blocks:
            x = block(x)
        return self.mm2(F.gelu(self.mm0(x), approximate="tanh"))


class DecoderBlock(nn.Module):
    def __init__(self, spec: DemoSpec) -> None:
        super().__init__()
        t = spec.text
        self.n_head, self.n_kv = t.n_head, t.n_head_kv
        self.head_dim = t.n_embd // t.n_head
        self.base = t.rope_base
        self.attn_norm = RMSNorm(t.n_embd, t.rms_eps)
        self.q = nn.Linear(t.n_embd, t.n_embd, bias=False)
        self.k = nn.Linear(t.n_embd, t.n_head_kv * self.head_dim, bias=False)
        self.v = nn.Linear(t.n_embd, t.n_head_kv * self.head_dim, bias=False)
        self.o = nn.Linear(t.n_embd, t.n_embd, bias=False)
        self.ffn_norm = RMSNorm(t.n_embd, t.rms_eps)
        self.gate = nn.Linear(t.n_embd, t.n_ff, bias=False)
        self.up = nn.Linear(t.n_embd, t.n_ff, bias=False)
        self.down = nn.Linear(t.n_ff, t.n_embd, bias=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        q = self.q(h).unflatten(-1, (self.n_head, self.head_dim)).transpose(1, 2)
        k = self.k(h).unflatten(-1, (self.n_kv, self.head_dim)).transpose(1, 2)
        v = self.v(h).unflatten(-1, (self.n_kv, self.head_dim)).transpose(1, 2)
        q, k = rope(q, positions, self.base), rope(k, positions, self.base)
        group = self.n_head // self.n_kv
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).flatten(-2))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class DemoModel(nn.Module):
    """The whole vision-language model.

    Args:
        spec: Its sizes.
        n_vocab: Tokens in the vocabulary.
    """

    def __init__(self, spec: DemoSpec, n_vocab: int) -> None:
        super().__init__()
        self.spec = spec
        t = spec.text
        self.vision = VisionTower(spec)
        self.embed = nn.Embedding(n_vocab, t.n_embd)
        self.blocks = nn.ModuleList(DecoderBlock(spec) for _ in range(t.n_layer))
        self.norm = RMSNorm(t.n_embd, t.rms_eps)
        self.output = nn.Linear(t.n_embd, n_vocab, bias=False)
        self.apply(_init)

    def forward(self, tokens: torch.Tensor, pixels: torch.Tensor | None = None,
                image_at: int = 0, has_image: torch.Tensor | None = None, *,
                image: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every position.

        Args:
            tokens: ``(batch, seq)`` token ids; where an image goes, any id (overwritten).
            pixels: ``(batch, 3, H, W)`` normalised pixels, or None for text only.
            image_at: Sequence index where the image's ``n_patches`` embeddings start.
            has_image: ``(batch,)`` bool: which rows get the image (default all, if pixels).
            image: The vision tower's output for ``pixels``, when the caller has it already.

        Returns:
            ``(batch, seq, n_vocab)`` logits.
        """
        x = self.embed(tokens)
        if image is None and pixels is not None:
            image = self.vision(pixels)
        if image is not None:
            img = image
            n = img.shape[1]
            if has_image is None:
                x = torch.cat((x[:, :image_at], img, x[:, image_at + n:]), dim=1)
            else:
                keep = (~has_image)[:, None, None].to(x.dtype)
                mixed = x[:, image_at:image_at + n] * keep + img * (1 - keep)
                x = torch.cat((x[:, :image_at], mixed, x[:, image_at + n:]), dim=1)
        positions = torch.arange(x.shape[1], device=x.device)
        for block in self.blocks:
            x = block(x, positions)
        return self.output(self.norm(x))


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def normalise(pixels: np.ndarray, spec: DemoSpec) -> torch.Tensor:
    """``(batch, H, W, 3)`` uint8 → ``(batch, 3, H, W)`` float, as clip normalises them."""
    x = torch.from_numpy(pixels).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(spec.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.image_std).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------- GGUF tensors


def text_tensors(model: DemoModel, dtype: type = np.float32) -> Iterator[tuple[str, np.ndarray]]:
    """The decoder's tensors under llama.cpp's names; norms stay F32."""
    def mat(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().numpy().astype(dtype)

    def vec(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().numpy().astype(np.float32)

    yield "token_embd.weight", mat(model.embed.weight)
    for i, b in enumerate(model.blocks):
        yield f"blk.{i}.attn_norm.weight", vec(b.attn_norm.weight)
        yield f"blk.{i}.attn_q.weight", mat(b.q.weight)
        yield f"blk.{i}.attn_k.weight", mat(b.k.weight)
        yield f"blk.{i}.attn_v.weight", mat(b.v.weight)
        yield f"blk.{i}.attn_output.weight", mat(b.o.weight)
        yield f"blk.{i}.ffn_norm.weight", vec(b.ffn_norm.weight)
        yield f"blk.{i}.ffn_gate.weight", mat(b.gate.weight)
        yield f"blk.{i}.ffn_up.weight", mat(b.up.weight)
        yield f"blk.{i}.ffn_down.weight", mat(b.down.weight)
    yield "output_norm.weight", vec(model.norm.weight)
    yield "output.weight", mat(model.output.weight)


def projector_tensors(model: DemoModel,
                      dtype: type = np.float16) -> Iterator[tuple[str, np.ndarray]]:
    """The vision tower and projector under clip's names, plus the never-run last block.

    Matrices take ``dtype``; biases, norms and position embeddings stay F32.
    """
    vt = model.vision

    def mat(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().numpy().astype(dtype)

    def vec(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().numpy().astype(np.float32)

    yield "v.patch_embd.weight", mat(vt.patch.weight)  # (v, 3, p, p) == ggml [p, p, 3, v]
    yield "v.patch_embd.bias", vec(vt.patch.bias)
    yield "v.position_embd.weight", vec(vt.position)
    yield "v.pre_ln.weight", vec(vt.pre_ln.weight)
    yield "v.pre_ln.bias", vec(vt.pre_ln.bias)
    blocks = list(vt.blocks)
    for i, b in enumerate([*blocks, None]):
        yield from _vit_block(f"v.blk.{i}", b, blocks[0], mat, vec)
    yield "mm.0.weight", mat(vt.mm0.weight)
    yield "mm.0.bias", vec(vt.mm0.bias)
    yield "mm.2.weight", mat(vt.mm2.weight)
    yield "mm.2.bias", vec(vt.mm2.bias)


def _vit_block(prefix: str, block: VitBlock | None, shape_of: VitBlock, mat, vec
               ) -> Iterator[tuple[str, np.ndarray]]:
    """One block's tensors; ``block`` None writes zeros of ``shape_of``'s shapes (the block
    llama.cpp's LLaVA graph declares but never runs)."""
    source = block or shape_of
    parts = {
        "attn_q": source.q, "attn_k": source.k, "attn_v": source.v, "attn_out": source.out,
        "ln1": source.ln1, "ln2": source.ln2, "ffn_up": source.up, "ffn_down": source.down,
    }
    for name, layer in parts.items():
        weight, bias = layer.weight, layer.bias
        if block is None:
            weight, bias = torch.zeros_like(weight), torch.zeros_like(bias)
        is_norm = name.startswith("ln")
        yield f"{prefix}.{name}.weight", vec(weight) if is_norm else mat(weight)
        yield f"{prefix}.{name}.bias", vec(bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


