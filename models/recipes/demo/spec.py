"""Sizes of the demo model (no torch needed to read them)."""

from __future__ import annotations

from dataclasses import dataclass

from stagewise.models.build.gguf_writer import TextHyper, VisionHyper


@dataclass(frozen=True)
class DemoSpec:
    """A small LLaVA-1.5 shaped model: a ViT, an MLP projector and a llama decoder.

    Attributes:
        text: The decoder's sizes (``n_embd`` is also the projector's output width).
        image_size: Side of the square input image, in pixels.
        patch_size: Side of one patch, in pixels.
        v_embd: Width of the vision tower.
        v_blocks: Vision blocks that run. The GGUF declares one more, because llama.cpp's
            LLaVA graph runs ``block_count - 1`` blocks (the last one is written as zeros).
        v_head: Attention heads of the vision tower.
        v_ff: Feed-forward width of the vision tower.
    """

    text: TextHyper
    image_size: int
    patch_size: int
    v_embd: int
    v_blocks: int
    v_head: int
    v_ff: int
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def vision_hyper(self) -> VisionHyper:
        return VisionHyper(self.image_size, self.patch_size, self.v_embd, self.v_blocks + 1,
                           self.v_head, self.v_ff, self.text.n_embd, self.image_mean,
                           self.image_std)


DEMO = DemoSpec(
    # the second model's decoder (4 blocks of width 192) wrote captions that missed objects
    # the vision tower had read right: this one is deeper and wider
    text=TextHyper(n_embd=256, n_layer=6, n_head=8, n_head_kv=2, n_ff=512, n_ctx_train=2048),
    image_size=96,
    patch_size=32,  # one patch a grid cell: every object lies inside one patch
    v_embd=128,
    v_blocks=3,
    v_head=4,
    v_ff=384,
)

# For tests: the same graph at a size that trains and exports in a second.
MINI = DemoSpec(
    text=TextHyper(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128, n_ctx_train=1024),
    image_size=48,
    patch_size=16,
    v_embd=32,
    v_blocks=2,
    v_head=2,
    v_ff=64,
)
