"""ShapesViT: a small vision transformer (patch tokens + class token) for the shapes classes.

RGB images in [0, 1] of any size >= 32 px: a stride-8 8x8 convolution cuts them into patch
tokens (a 64 px image gives 8x8 = 64 patches; pixels beyond the last whole patch are
ignored), a learned class token is prepended, and the learned position embedding (made for
the 8x8 grid of 64 px training images) is resized bilinearly to other grids. Pre-norm
blocks, multi-head self-attention and GELU MLPs; the class token's final state gives the
logits. Named modules, with their outputs for a 64 px input (N = 65 tokens):

=========================  =================================================  ============
name                       what                                               output
=========================  =================================================  ============
normalize                  (x - 0.5) / 0.25, fixed                            [B, 3, 64, 64]
patch_embed                conv8x8 stride 8 (3->D), flattened to tokens       [B, 64, D]
blocks.K                   x + attn(norm1(x)), then + mlp(norm2(x))           [B, N, D]
blocks.K.attn              multi-head self-attention (qkv, proj)              [B, N, D]
blocks.K.mlp.fc1           linear D->4D                                       [B, N, 4D]
blocks.K.mlp.act           GELU: the neurons worth visualizing                [B, N, 4D]
norm                       final LayerNorm                                    [B, N, D]
head                       linear D->10 on the class token: logits            [B, 10]
=========================  =================================================  ============

Ghiasi et al. (2022) found the MLP neurons after the GELU give the interpretable images of a
ViT (keys/queries/values do not), so ``atlas_layers`` lists ``blocks.K.mlp.act``.

Example::

    >>> import torch
    >>> from pyviz_fast.zoo.shapes_vit import ShapesViT
    >>> ShapesViT()(torch.rand(2, 3, 48, 48)).shape
    torch.Size([2, 10])
"""
import torch
from torch import nn
from torch.nn import functional as F

from pyviz_fast.zoo.shapesnet import Normalize, check_images

PATCH = 8
TRAIN_GRID = 8  # patches per side of the 64 px images the position embedding is made for


class PatchEmbed(nn.Module):
    """[B, 3, H, W] -> patch tokens [B, (H // 8) * (W // 8), D]."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over [B, N, D] tokens."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v)
        return self.proj(mixed.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ShapesViT(nn.Module):
    """Patch-token ViT classifier of the ten shapes classes; input [B, 3, H, W] in [0, 1], H, W >= 32."""

    input_mean = (0.0, 0.0, 0.0)
    input_std = (1.0, 1.0, 1.0)

    def __init__(self, num_classes=10, dim=64, depth=4, heads=4, mlp_ratio=4):
        super().__init__()
        self.normalize = Normalize()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + TRAIN_GRID * TRAIN_GRID, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.atlas_layers = tuple(f"blocks.{k}.mlp.act" for k in range(depth))

    def _position_embedding(self, grid_h, grid_w):
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (grid_h, grid_w) != (TRAIN_GRID, TRAIN_GRID):
            grid = patch_pos.reshape(1, TRAIN_GRID, TRAIN_GRID, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
            patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, x):
        check_images(x, "ShapesViT")
        tokens = self.patch_embed(self.normalize(x))
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + self._position_embedding(x.shape[-2] // PATCH, x.shape[-1] // PATCH)
        return self.head(self.norm(self.blocks(tokens))[:, 0])
