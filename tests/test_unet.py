"""The DDPM++ UNet: shapes at 8/28/32 px, conditioning on t, s and class, dropout, init, parameter count."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablate.train.networks.unet import UNetConfig
from ablate.train.networks.unet import ResBlock, UNet, group_count, level_resolutions


def tiny(**overrides) -> UNetConfig:
    fields = dict(channels=8, channel_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    return UNetConfig(**{**fields, **overrides})


def wake(model: UNet) -> UNet:
    """Give the zero / near-zero output layers ordinary weights, so every input reaches the output."""
    torch.manual_seed(1)
    for name, module in model.named_modules():
        if name.endswith(("conv1", "proj", "conv_out")):
            nn.init.xavier_uniform_(module.weight)
            nn.init.normal_(module.bias, std=0.1)
    return model


def inputs(batch: int, channels: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=g), torch.rand(batch, generator=g) * 2 - 1


@pytest.mark.parametrize("size, in_channels, cfg", [
    (8, 1, tiny(channel_mult=[1, 2, 2])),  # digits: 8 -> 4 -> 4
    (8, 1, tiny(channel_mult=[1, 2, 2], attn_resolutions=[4])),
    (28, 1, tiny(channel_mult=[2, 2, 2], attn_resolutions=[14])),  # 28 -> 14 -> 7
    (32, 3, tiny(channel_mult=[1, 2, 2, 2], num_res_blocks=2, attn_resolutions=[16])),  # 32 -> ... -> 4
    (32, 3, tiny(channels=6, channel_mult=[1, 3])),  # GroupNorm on 6 and 18 channels
])
def test_output_has_the_input_shape_and_is_zero_at_init(size, in_channels, cfg):
    model = UNet(cfg, in_channels=in_channels, image_size=size)
    x, c = inputs(3, in_channels, size)
    out = model(x, c)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised final conv
    woken = wake(model)(x, c)
    assert woken.shape == x.shape and torch.isfinite(woken).all() and woken.abs().mean() > 1e-3


def test_level_resolutions_halve_only_even_resolutions_down_to_4():
    assert level_resolutions(32, 3) == [32, 16, 8]
    assert level_resolutions(32, 4) == [32, 16, 8, 4]
    assert level_resolutions(28, 3) == [28, 14, 7]
    assert level_resolutions(8, 3) == [8, 4, 4]
    assert level_resolutions(7, 2) == [7, 7]


def test_group_count_divides_the_channels():
    assert group_count(4) == 1 and group_count(16) == 4 and group_count(128) == 32 and group_count(256) == 32
    for channels in range(1, 200):
        groups = group_count(channels)
        assert channels % groups == 0 and 1 <= groups <= 32


def test_attention_sits_at_the_listed_resolutions_and_the_bottleneck():
    cfg = tiny(channel_mult=[1, 2, 2], num_res_blocks=2, attn_resolutions=[16])
    model = UNet(cfg, in_channels=3, image_size=32)
    encoder = [b.attention for b in model.encoder]
    # level 32: 2 blocks; level 16: transition + 2 attending blocks; level 8: transition + 2 blocks
    assert encoder == [False, False, False, True, True, False, False, False]
    decoder = [b.attention for b in model.decoder]
    # bottleneck (attends, EDM) + plain; level 8: 3 blocks; level 16: up + 3 blocks, the last attends
    assert decoder == [True, False, False, False, False, False, False, False, True,
                       False, False, False, False]


def test_attention_is_softmax_of_scaled_query_key_products():
    torch.manual_seed(0)
    block = ResBlock(8, 8, emb_channels=4, dropout=0.0, attention=True)
    x = torch.randn(2, 8, 3, 5)
    q, k, v = block.qkv(x).reshape(2, 3, 8, 15).unbind(1)  # (B, C, HW) each
    weights = torch.softmax(torch.einsum("bcq,bck->bqk", q, k) / math.sqrt(8), dim=-1)
    expected = torch.einsum("bqk,bck->bcq", weights, v).reshape(2, 8, 3, 5)
    torch.testing.assert_close(block._attend(x), expected, rtol=1e-5, atol=1e-5)


def test_samples_do_not_mix_across_the_batch():
    model = wake(UNet(tiny(attn_resolutions=[4]), in_channels=1, image_size=8)).eval()
    x, c = inputs(5, 1, 8)
    torch.testing.assert_close(model(x, c)[:2], model(x[:2], c[:2]))


def test_gradient_reaches_every_parameter_once_the_final_layer_is_nonzero():
    cfg = tiny(channel_mult=[1, 2, 2], attn_resolutions=[4], dropout=0.1)
    model = UNet(cfg, in_channels=1, image_size=8, num_classes=3, dual_time=True)
    nn.init.normal_(model.conv_out.weight, std=0.1)  # only the zero-initialised layer is perturbed
    x, c = inputs(4, 1, 8)
    model(x, c, s_noise=c - 0.5, class_labels=torch.tensor([0, 1, 2, 1])).square().sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("c_values", [(-1.6, -1.55, 1.1), (0.0, 0.01, 1.0), (0.0, 10.0, 1000.0)])
def test_time_input_over_each_range_changes_the_output(c_values):
    model = wake(UNet(tiny(), in_channels=1, image_size=8)).eval()
    x = inputs(1, 1, 8)[0].expand(3, -1, -1, -1)
    out = model(x, torch.tensor(c_values, dtype=torch.float64))  # float64 times are accepted
    assert torch.isfinite(out).all()
    for i in range(3):
        for j in range(i):
            assert (out[i] - out[j]).abs().max() > 1e-4


def test_dual_time_output_changes_with_s_and_only_with_s():
    model = wake(UNet(tiny(), in_channels=1, image_size=8, dual_time=True)).eval()
    x, c = inputs(2, 1, 8)
    s = c - 0.3
    base = model(x, c, s_noise=s)
    torch.testing.assert_close(model(x, c, s_noise=s.clone()), base, rtol=0, atol=0)
    assert (model(x, c, s_noise=s - 0.2) - base).abs().amax(dim=(1, 2, 3)).min() > 1e-4
    swapped = model(x, s, s_noise=c)  # t and s are told apart
    assert (swapped - base).abs().amax(dim=(1, 2, 3)).min() > 1e-4


def test_time_inputs_must_match_the_model():
    x, c = inputs(2, 1, 8)
    with pytest.raises(ValueError, match="s_noise is required"):
        UNet(tiny(), 1, 8, dual_time=True)(x, c)
    with pytest.raises(ValueError, match="dual_time=False"):
        UNet(tiny(), 1, 8)(x, c, s_noise=c)
    with pytest.raises(ValueError, match=r"c_noise must have shape \(2,\)"):
        UNet(tiny(), 1, 8)(x, c[:1])
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        UNet(tiny(), 1, 8)(torch.zeros(2, 3, 8, 8), c)


def test_class_labels_change_the_output_and_are_required_only_when_conditional():
    model = wake(UNet(tiny(), in_channels=1, image_size=8, num_classes=4)).eval()
    x, c = inputs(1, 1, 8)
    x, c = x.expand(4, -1, -1, -1), c.expand(4)
    out = model(x, c, class_labels=torch.arange(4))
    for i in range(4):
        for j in range(i):
            assert (out[i] - out[j]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="num_classes=4"):
        model(x, c)
    with pytest.raises(ValueError, match="num_classes=0"):
        UNet(tiny(), 1, 8)(x, c, class_labels=torch.arange(4))


def test_dropout_is_random_in_train_mode_replayable_by_seed_and_off_in_eval():
    model = wake(UNet(tiny(dropout=0.3), in_channels=1, image_size=8))
    x, c = inputs(2, 1, 8)
    torch.manual_seed(7)
    first = model(x, c)
    second = model(x, c)
    assert (first - second).abs().max() > 1e-4
    torch.manual_seed(7)
    torch.testing.assert_close(model(x, c), first, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(model(x, c), model(x, c), rtol=0, atol=0)
    assert (model(x, c) - first).abs().max() > 1e-4


def test_channels_last_input_gives_the_same_output():
    model = wake(UNet(tiny(attn_resolutions=[8]), in_channels=3, image_size=8)).eval()
    x, c = inputs(2, 3, 8)
    expected = model(x, c)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last), c), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cfg, in_channels, size, paper_millions", [
    (UNetConfig(channels=64, channel_mult=[2, 2, 2], num_res_blocks=4), 1, 28, 13.6),  # VCT Table 4
    (UNetConfig(channels=128, num_res_blocks=4, attn_resolutions=[16]), 3, 32, 55.7),  # VCT Table 4
    (UNetConfig(channels=32, num_res_blocks=1), 1, 28, 1.5),  # VCT Table 4 encoder, FashionMNIST
])
def test_parameter_count_matches_vct_table_4(cfg, in_channels, size, paper_millions):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = UNet(cfg, in_channels=in_channels, image_size=size)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(millions, 1) == paper_millions
