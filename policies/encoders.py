"""Observation encoders shared by every policy: a small GroupNorm ResNet per camera and the fusion of
images and low-dim features into one conditioning vector.

torchvision does not work with the CPU torch here, so the ResNet is written in the project:
ResNet-18's layout (a stride-2 5x5 stem conv and a stride-2 max pool, so the blocks start at 1/4
resolution; then BasicBlocks, strides 1-2-2-2) with configurable widths, GroupNorm instead of
BatchNorm (batch statistics break with EMA and small batches, as Diffusion Policy found), then either
spatial softmax (expected 2-D keypoint per channel, good for manipulation) or global average
pooling, and a linear projection to `feature_dim`.

`ObservationEncoder(features, ...)` maps normalized observations
    {name: (B, T, D)} low-dim  and  {name: (B, T, 3, H, W)} images
(images in [0, 1]: the loader's normalizer passes images through) to (B, T, F) per-step features
(F = sum of per-camera feature_dim + low-dim sizes); policies flatten
that to (B, T*F) as the global condition. Images are resized to `image_size` and, in training,
randomly cropped (Diffusion Policy's augmentation); at inference they are centre-cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    return max(1, min(8, channels // 8))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = None
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(_groups(cout), cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) -> (B, 2C): the softmax-weighted mean image coordinate of each channel, in [-1, 1]."""

    def __init__(self, height: int, width: int, temperature: float = 1.0):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attn = torch.softmax(x.reshape(b, c, h * w) / self.temperature, dim=-1)    # B, C, HW
        return (attn @ self.grid).reshape(b, 2 * c)                               # B, 2C


class ResNetGN(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, feature_dim)."""

    def __init__(self, image_size: tuple[int, int], *, widths: tuple[int, ...] = (32, 64, 128, 256),
                 blocks: int = 2, feature_dim: int = 64, pooling: str = "spatial_softmax"):
        super().__init__()
        if pooling not in ("spatial_softmax", "avg"):
            raise ValueError(f"pooling must be 'spatial_softmax' or 'avg', got {pooling!r}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 5, 2, 2, bias=False),          # H/2
                                  nn.GroupNorm(_groups(widths[0]), widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))                                 # H/4
        layers, cin = [], widths[0]
        for i, cout in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        h, w = image_size
        for _ in range(2 + len(widths[1:])):                     # stem conv, max pool, strided stages
            h, w = (h + 1) // 2, (w + 1) // 2
        self.pool = SpatialSoftmax(h, w) if pooling == "spatial_softmax" else nn.AdaptiveAvgPool2d(1)
        pooled = 2 * cin if pooling == "spatial_softmax" else cin
        self.proj = nn.Linear(pooled, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.layers(self.stem(x)))
        return self.proj(y.flatten(1))


class ObservationEncoder(nn.Module):
    """Normalized observations -> (B, T, F) per-step features (see the module docstring)."""

    def __init__(self, image_shapes: dict[str, tuple[int, int, int]], lowdim_sizes: dict[str, int], *,
                 image_size: tuple[int, int] = (84, 84), crop: float = 0.9, feature_dim: int = 64,
                 widths: tuple[int, ...] = (32, 64, 128, 256), blocks: int = 2, pooling: str = "spatial_softmax"):
        super().__init__()
        self.image_names, self.lowdim_names = sorted(image_shapes), sorted(lowdim_sizes)
        self.image_size = tuple(image_size)
        self.crop_size = (max(8, round(image_size[0] * crop)), max(8, round(image_size[1] * crop)))
        self.cameras = nn.ModuleDict({n.replace(".", "_"): ResNetGN(self.crop_size, widths=widths, blocks=blocks,
                                                                     feature_dim=feature_dim, pooling=pooling)
                                      for n in self.image_names})
        self.out_dim = feature_dim * len(self.image_names) + sum(lowdim_sizes.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name in self.image_names:
            x = obs[name]                                              # B, T, 3, H, W
            b, t = x.shape[:2]
            x = self._prepare(x.reshape(b * t, *x.shape[2:]))          # B*T, 3, h, w in [-1, 1]
            parts.append(self.cameras[name.replace(".", "_")](x).reshape(b, t, -1))
        parts += [obs[name] for name in self.lowdim_names]             # B, T, D each
        return torch.cat(parts, dim=-1)                                # B, T, F

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        ch, cw = self.crop_size
        h, w = self.image_size
        if self.training:
            i = int(torch.randint(0, h - ch + 1, (1,)))
            j = int(torch.randint(0, w - cw + 1, (1,)))
        else:
            i, j = (h - ch) // 2, (w - cw) // 2
        x = x[..., i:i + ch, j:j + cw]
        return x * 2.0 - 1.0                              # [0, 1] images (normalizer image mode identity)
