"""The second-order and recurrent modules: gsop, encnet, soca, dia, bilinear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules import get_attention
from attnbench.modules.covariance import covariance_pool, newton_schulz_sqrt

KEYS = ["gsop", "encnet", "soca", "dia", "bilinear"]
CHANNELS = 64


def build(key: str, channels: int = CHANNELS, **options) -> nn.Module:
    torch.manual_seed(0)
    return get_attention(key).build(channels, **options)


def inputs(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(*shape, generator=generator).to(dtype)


def counted(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- the generic properties, for these five keys -------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape_equals_input_shape(key: str, batch: int) -> None:
    module = build(key).eval()
    smallest = get_attention(key).min_spatial
    for height, width in [(7, 7), (6, 9), (smallest, smallest), (smallest, smallest + 3)]:
        x = inputs(batch, CHANNELS, height, width)
        assert module(x).shape == x.shape


@pytest.mark.parametrize("key", KEYS)
def test_train_mode_runs_at_the_smallest_size(key: str) -> None:
    smallest = get_attention(key).min_spatial
    x = inputs(3, CHANNELS, smallest, smallest)
    assert build(key).train()(x).shape == x.shape


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("channels", [64, 96, 256, 2048])
def test_counted_parameters_equal_the_formula(key: str, channels: int) -> None:
    spec = get_attention(key)
    assert counted(spec.build(channels)) == spec.param_count(channels)


@pytest.mark.parametrize(
    ("key", "options"),
    [
        ("gsop", {"att_dim": 16}),
        ("gsop", {"att_dim": 64, "dr_stride": 1}),
        ("encnet", {"codewords": 8}),
        ("soca", {"reduction": 8}),
        ("dia", {"reduction": 8}),
        ("bilinear", {"reduction": 8}),
    ],
)
@pytest.mark.parametrize("channels", [64, 96, 256])
def test_formula_holds_for_other_options(key: str, options: dict, channels: int) -> None:
    spec = get_attention(key)
    assert counted(spec.build(channels, **options)) == spec.param_count(channels, **options)


@pytest.mark.parametrize("key", KEYS)
def test_gradients_reach_every_parameter(key: str) -> None:
    module = build(key).train()
    x = inputs(3, CHANNELS, 6, 5).requires_grad_()
    if key == "dia":
        # From zero state the hidden path's first layer sees zeros; a second step gives it a gradient.
        module.reset_state()
        output = module(module(x))
    else:
        output = module(x)
    output.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("key", KEYS)
def test_eval_output_is_deterministic(key: str) -> None:
    module = build(key).eval()
    x = inputs(2, CHANNELS, 6, 5)
    assert torch.equal(module(x), module(x))


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_runs_in_float32_and_bfloat16(key: str, dtype: torch.dtype) -> None:
    module = build(key).eval().to(dtype)
    x = inputs(2, CHANNELS, 6, 5, dtype=dtype)
    output = module(x)
    assert output.dtype == dtype and output.shape == x.shape
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("key", KEYS)
def test_channels_last_gives_the_contiguous_result(key: str) -> None:
    module = build(key).eval()
    x = inputs(2, CHANNELS, 6, 5)
    expected = module(x)
    actual = module(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("key", "channels", "options", "message"),
    [
        ("gsop", 64, {"att_dim": 0}, "att_dim"),
        ("gsop", 64, {"dr_stride": 0}, "dr_stride"),
        ("encnet", 64, {"codewords": 0}, "codewords"),
        ("soca", 64, {"iterations": 0}, "iterations"),
        ("soca", 64, {"max_size": 1}, "max_size"),
        ("soca", 8, {}, "no hidden unit"),
        ("dia", 64, {"reduction": 128}, "no hidden unit"),
        ("bilinear", 8, {}, "no hidden unit"),
        ("bilinear", 64, {"reduce": 8}, "did you mean 'reduction'"),
    ],
)
def test_bad_options_fail_at_construction(key: str, channels: int, options: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        get_attention(key).build(channels, **options)


def test_registry_entries_carry_paper_and_placement() -> None:
    placements = {key: get_attention(key).placement for key in KEYS}
    assert placements == {
        "gsop": "stage_end",
        "encnet": "head",
        "soca": "block",
        "dia": "shared_per_stage",
        "bilinear": "block",
    }
    for key in KEYS:
        spec = get_attention(key)
        assert spec.paper.url.startswith("https://") and spec.paper.year in (2018, 2019, 2020)
        assert spec.cls.__module__.endswith(key)
        assert spec.cls.__module__ and spec.cls.__doc__
    assert get_attention("soca").min_spatial == 2


# --- covariance and matrix square root (gsop, soca) -----------------------------------------------------


def test_covariance_pool_is_the_biased_sample_covariance() -> None:
    x = inputs(2, 5, 4, 3, dtype=torch.float64)
    for sample in range(2):
        expected = np.cov(x[sample].flatten(1).numpy(), bias=True)
        np.testing.assert_allclose(covariance_pool(x)[sample].numpy(), expected, rtol=1e-12)


def test_newton_schulz_root_squares_back_to_the_normalised_covariance() -> None:
    covariance = covariance_pool(inputs(2, 6, 8, 8, dtype=torch.float64))
    trace = torch.diagonal(covariance, dim1=1, dim2=2).sum(dim=1)[:, None, None]
    normalised_root = newton_schulz_sqrt(covariance, iterations=30) / trace.sqrt()
    torch.testing.assert_close(normalised_root @ normalised_root, covariance / trace, rtol=0, atol=1e-10)


def test_five_iterations_approximate_a_well_conditioned_root() -> None:
    eigenvalues = torch.tensor([1.0, 0.8, 0.6, 0.5], dtype=torch.float64)
    rotation, _ = torch.linalg.qr(inputs(4, 4, dtype=torch.float64))
    matrix = (rotation * eigenvalues) @ rotation.T
    expected = (rotation * eigenvalues.sqrt()) @ rotation.T
    root = newton_schulz_sqrt(matrix[None], iterations=5)[0]
    torch.testing.assert_close(root, expected, rtol=0, atol=1e-3)
    assert (root - expected).abs().max() > (newton_schulz_sqrt(matrix[None], 8)[0] - expected).abs().max()


def test_zero_covariance_gives_a_zero_root_not_nan() -> None:
    assert torch.equal(newton_schulz_sqrt(torch.zeros(1, 3, 3), iterations=5), torch.zeros(1, 3, 3))


def test_soca_gate_is_the_mean_of_the_root() -> None:
    module = build("soca").eval()
    x = inputs(2, CHANNELS, 5, 6)
    root = newton_schulz_sqrt(covariance_pool(x), iterations=5)
    gate = torch.sigmoid(module.conv_du(root.mean(dim=1)[:, :, None, None]))
    torch.testing.assert_close(module(x), x * gate)


def test_soca_pools_only_the_central_window() -> None:
    module = build("soca", max_size=4).eval()
    x = inputs(1, CHANNELS, 8, 7)
    changed = x.clone()
    changed[:, :, :2] += 5.0  # rows 0-1 lie outside the central rows 2-5
    changed[:, :, :, 0] -= 3.0  # column 0 lies outside the central columns 1-4
    torch.testing.assert_close(module(x) / x, module(changed) / changed)
    changed[:, :, 3, 3] += 5.0
    assert not torch.allclose(module(x) / x, module(changed) / changed)


def test_gsop_strides_its_reduction_in_the_first_stage_only() -> None:
    assert build("gsop", 256).reduce[1].stride == (2, 2)
    assert build("gsop", 512).reduce[1].stride == (1, 1)
    assert build("gsop", 512, dr_stride=2).reduce[1].stride == (2, 2)


@pytest.mark.parametrize("channels", [64, 256, 512, 1024, 2048])
def test_gsop_formula_is_641c_plus_66688_at_att_dim_128(channels: int) -> None:
    assert counted(build("gsop", channels)) == 641 * channels + 66_688


@pytest.mark.parametrize(("channels", "att_dim"), [(64, 16), (256, 32), (128, 128)])
def test_gsop_formula_in_att_dim(channels: int, att_dim: int) -> None:
    expected = channels * (5 * att_dim + 1) + 4 * att_dim**2 + 9 * att_dim
    assert counted(build("gsop", channels, att_dim=att_dim)) == expected


# --- encnet ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "codewords"), [(64, 32), (96, 8), (512, 32), (2048, 32)])
def test_encnet_formula(channels: int, codewords: int) -> None:
    expected = 2 * channels**2 + 3 * channels + codewords * channels + 3 * codewords
    assert counted(build("encnet", channels, codewords=codewords)) == expected


def test_encoding_layer_matches_the_direct_residual_sum() -> None:
    module = build("encnet", 8, codewords=4).double()
    x = inputs(2, 8, 3, 2, dtype=torch.float64)
    codewords, scale = module.encoding.codewords, module.encoding.scale
    features = x.flatten(2).transpose(1, 2)  # (B, N, C)
    residuals = features[:, :, None, :] - codewords  # (B, N, K, C)
    assignment = torch.softmax(scale * residuals.square().sum(dim=3), dim=2)
    expected = (assignment[..., None] * residuals).sum(dim=1)
    torch.testing.assert_close(module.encoding(x), expected)


def test_encnet_output_is_relu_of_x_plus_x_gamma() -> None:
    module = build("encnet").eval()
    x = inputs(2, CHANNELS, 5, 4)
    encoded = torch.relu(module.codeword_bn(module.encoding(module.project(x))))
    gamma = torch.sigmoid(module.fc(encoded.mean(dim=1)))[:, :, None, None]
    output = module(x)
    torch.testing.assert_close(output, torch.relu(x + x * gamma))
    assert (output >= 0).all() and (output == 0).any()


# --- dia ----------------------------------------------------------------------------------------------


def lstm_step(module: nn.Module, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """DIANet's cell written out: gates from both MLPs, c' = f·c + i·tanh(g), h' = o·sigmoid(c')."""
    gates = module.input_gates(x.mean(dim=(2, 3))) + module.hidden_gates(h)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.sigmoid(c), c


def test_dia_carries_state_across_calls_after_a_reset() -> None:
    module = build("dia").eval()
    first, second = inputs(2, CHANNELS, 4, 4), inputs(2, CHANNELS, 3, 5) * 2
    zeros = torch.zeros(2, CHANNELS)
    h1, c1 = lstm_step(module, first, zeros, zeros)
    h2, _ = lstm_step(module, second, h1, c1)
    module.reset_state()
    torch.testing.assert_close(module(first), first * h1[:, :, None, None])
    torch.testing.assert_close(module(second), second * h2[:, :, None, None])
    module.reset_state()
    h_fresh, _ = lstm_step(module, second, zeros, zeros)
    torch.testing.assert_close(module(second), second * h_fresh[:, :, None, None])


def test_dia_used_alone_starts_every_call_from_zero_state() -> None:
    module = build("dia").eval()
    x = inputs(2, CHANNELS, 4, 4)
    zeros = torch.zeros(2, CHANNELS)
    expected = x * lstm_step(module, x, zeros, zeros)[0][:, :, None, None]
    torch.testing.assert_close(module(x), expected)
    torch.testing.assert_close(module(x), expected)


class GatedBlock(nn.Module):
    """A stand-in residual block: conv, then the shared attention, then the residual addition."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.attention(self.conv(x)))


def test_dia_shared_by_a_stage_with_a_reset_hook() -> None:
    cell = build("dia")
    torch.manual_seed(2)
    stage = nn.Sequential(*(GatedBlock(cell) for _ in range(3))).eval()
    stage.register_forward_pre_hook(lambda _module, _args: cell.reset_state())
    x = inputs(2, CHANNELS, 4, 4)
    first = stage(x)
    torch.testing.assert_close(stage(x), first)  # the hook resets, so passes do not leak into each other
    assert counted(stage) == 3 * counted(stage[0].conv) + counted(cell)  # one cell, counted once

    h = c = torch.zeros(2, CHANNELS)
    expected = x
    for block in stage:
        out = block.conv(expected)
        h, c = lstm_step(cell, out, h, c)
        expected = torch.relu(expected + out * h[:, :, None, None])
    torch.testing.assert_close(first, expected)


@pytest.mark.parametrize("channels", [64, 96, 256, 2048])
def test_dia_formula_is_2_5_c2_plus_8_5_c(channels: int) -> None:
    assert counted(build("dia", channels)) == int(2.5 * channels**2 + 8.5 * channels)


# --- bilinear -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [64, 96, 256, 480, 1024])
def test_bilinear_formula(channels: int) -> None:
    mid = channels // 16
    pairs = mid * (mid + 1) // 2
    expected = (channels * mid + mid + 2 * mid) + 2 * (pairs * channels + channels + 2 * channels)
    assert counted(build("bilinear", channels)) == expected


def test_bilinear_products_follow_the_release_diagonal_order() -> None:
    module = build("bilinear").eval()
    x = inputs(2, CHANNELS, 3, 4)
    reduced = module.reduce(x)
    batch, mid, rows, cols = reduced.shape
    per_position = reduced.permute(0, 2, 3, 1).reshape(-1, mid)
    outer = per_position[:, :, None] * per_position[:, None, :]
    diagonals = torch.cat([torch.diagonal(outer, offset=-i, dim1=1, dim2=2) for i in range(mid)], dim=1)
    products = diagonals.reshape(batch, rows, cols, -1).permute(0, 3, 1, 2)
    gate = torch.sigmoid(module.spatial(products) * module.pooled(products.mean(dim=(2, 3), keepdim=True)))
    torch.testing.assert_close(module(x), gate * x)
