"""The project's GroupNorm ResNet image encoder and the observation fusion."""

from __future__ import annotations

import pytest
import torch

from policies.encoders import ObservationEncoder, ResNetGN, SpatialSoftmax


@pytest.mark.parametrize(("size", "final"), [((76, 76), (3, 3)), ((43, 43), (2, 2)), ((84, 64), (3, 2))])
def test_resnet_layout_starts_the_blocks_at_a_quarter_resolution(size, final):
    net = ResNetGN(size, widths=(8, 16, 32, 64), feature_dim=12)
    seen = []
    net.layers[0].register_forward_hook(lambda _m, inp, _out: seen.append(tuple(inp[0].shape[-2:])))
    out = net(torch.rand(2, 3, *size) * 2 - 1)
    assert out.shape == (2, 12)
    assert seen == [((size[0] + 3) // 4, (size[1] + 3) // 4)]            # stride-2 stem conv + stride-2 max pool
    assert net.pool.grid.shape == (final[0] * final[1], 2)               # the last stage's map, ResNet-18's 3x3 at 76


def test_spatial_softmax_finds_a_peak():
    pool = SpatialSoftmax(5, 7, temperature=0.01)
    x = torch.zeros(1, 2, 5, 7)
    x[0, 0, 4, 6] = x[0, 1, 0, 0] = 10.0                                 # bottom-right, top-left
    xy = pool(x).reshape(2, 2)
    assert torch.allclose(xy, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), atol=1e-3)


def test_observation_encoder_fuses_cameras_and_lowdim_per_step():
    enc = ObservationEncoder({"observation.images.fixed": (3, 48, 48)}, {"observation.state": 4},
                             image_size=(40, 40), feature_dim=10, widths=(8, 16))
    obs = {"observation.images.fixed": torch.rand(2, 3, 3, 48, 48), "observation.state": torch.randn(2, 3, 4)}
    enc.eval()
    out = enc(obs)                                                       # B, T, F
    assert out.shape == (2, 3, 14) and enc.out_dim == 14
    assert torch.equal(out[..., 10:], obs["observation.state"])
    assert torch.equal(enc(obs), out)                                    # eval: centre crop, deterministic
