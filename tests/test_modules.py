"""The attention zoo: every registered key is built, run and counted; simple modules against references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnbench.errors import OptionError, UnknownNameError
from attnbench.modules import ATTENTION, get_attention

KEYS = ATTENTION.names()
CHANNELS = 64  # divisible by 16 (fca) and 32 (sk), so every key builds with its defaults
SIZES = [(1, 1), (1, 3), (2, 2), (3, 5), (6, 4)]
ISSUE_KEYS = {
    *("se", "cbam", "cbam_channel", "cbam_spatial", "eca", "coord", "srm", "gct", "fca"),
    *("gsop", "encnet", "rcan", "soca", "dia", "bilinear", "scse", "sk", "bam"),
}

# Option values whose parameter count is checked besides the defaults; keys not listed use defaults only.
OPTION_CASES: dict[str, list[dict]] = {
    "se": [{"reduction": 8}, {"bias": True}, {"reduction": 4, "bias": True}],
    "cbam": [{"reduction": 8}, {"kernel_size": 3}],
    "cbam_channel": [{"reduction": 4}],
    "cbam_spatial": [{"kernel_size": 3}],
    "eca": [{"k_size": 9}, {"gamma": 3, "b": 2}, {"k_size": "mobilenet_v2"}, {"k_size": "resnet50"}],
    "coord": [{"reduction": 16}, {"min_mip": 16}],
    "srm": [{"eps": 1e-5}],
    "gct": [{"mode": "l1"}],
    "fca": [{"reduction": 8}, {"frequencies": "top32"}, {"dct_size": 14}],
    "rcan": [{"reduction": 8}],
    "scse": [{"reduction": 16}],
    "sk": [{"groups": 16}, {"reduction": 8, "min_dim": 16}, {"stride": 2}],
    "bam": [{"reduction": 8}, {"dilation": 2}, {"combine": "sum"}],
}


def _spatial_sizes(key: str) -> list[tuple[int, int]]:
    minimum = get_attention(key).min_spatial
    return [(h, w) for h, w in SIZES if min(h, w) >= minimum]


def _input(batch: int, height: int, width: int, channels: int = CHANNELS, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=generator)


def _randomise(module: nn.Module, seed: int = 1) -> nn.Module:
    """Random weights everywhere: zero-initialised gates (gct, srm) would otherwise hide dead paths."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def _check_shape(key: str, x: torch.Tensor, out: torch.Tensor) -> None:
    if get_attention(key).gate:
        assert out.shape == x.shape
    else:
        assert out.shape[:2] == x.shape[:2]


@pytest.mark.parametrize("key", KEYS)
def test_output_shape_eval(key: str) -> None:
    module = get_attention(key).build(CHANNELS).eval()
    for batch in (1, 3):
        for height, width in _spatial_sizes(key):
            x = _input(batch, height, width)
            with torch.no_grad():
                _check_shape(key, x, module(x))


@pytest.mark.parametrize("key", KEYS)
def test_output_shape_train(key: str) -> None:
    # Batch 3: BatchNorm over pooled (N, C, 1, 1) statistics needs more than one sample in training.
    module = get_attention(key).build(CHANNELS).train()
    for height, width in _spatial_sizes(key):
        x = _input(3, height, width)
        _check_shape(key, x, module(x))


@pytest.mark.filterwarnings("ignore:std:UserWarning")
def test_min_spatial_is_declared_where_one_position_is_undefined() -> None:
    assert get_attention("srm").min_spatial == 2
    out = get_attention("srm").build(8).eval()(_input(2, 1, 1, channels=8))
    assert torch.isnan(out).all()  # why srm declares 2: an unbiased std of one value is undefined


def _cases(keys: list[str]) -> list[tuple[str, int, dict]]:
    cases = []
    for key in keys:
        for channels in (64, 96, 256, 2048):
            for options in [{}, *OPTION_CASES.get(key, [])]:
                cases.append((key, channels, options))
    return cases


@pytest.mark.parametrize(("key", "channels", "options"), _cases(KEYS), ids=str)
def test_param_count_matches_formula(key: str, channels: int, options: dict) -> None:
    spec = get_attention(key)
    try:
        with torch.device("meta"):  # counts only: no memory, no initialisation cost at 2048 channels
            module = spec.build(channels, **options)
    except OptionError as error:
        pytest.skip(f"not valid here: {error}")
    counted = sum(p.numel() for p in module.parameters())
    assert counted == spec.param_count(channels, **options)


@pytest.mark.parametrize("channels", [64, 256, 2048])
@pytest.mark.parametrize("reduction", [4, 16])
def test_se_formula_exact(channels: int, reduction: int) -> None:
    spec = get_attention("se")
    plain = spec.build(channels, reduction=reduction)
    biased = spec.build(channels, reduction=reduction, bias=True)
    assert sum(p.numel() for p in plain.parameters()) == 2 * channels**2 // reduction
    expected = 2 * channels**2 // reduction + channels // reduction + channels
    assert sum(p.numel() for p in biased.parameters()) == expected
    assert spec.param_count(channels, reduction=reduction, bias=True) == expected


@pytest.mark.parametrize("key", KEYS)
def test_gradients_reach_every_parameter(key: str) -> None:
    module = _randomise(get_attention(key).build(CHANNELS)).train()
    x = _input(3, 5, 6).requires_grad_()
    # A recurrent module (dia) starts from zero state, where its hidden-path weights get no gradient;
    # two steps within one pass, as in two blocks of a stage, reach them.
    steps = 2 if hasattr(module, "reset_state") else 1
    if steps == 2:
        module.reset_state()
    out = x
    for _ in range(steps):
        out = module(out)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{key}: no gradient reaches {name}"
        assert torch.isfinite(parameter.grad).all(), f"{key}: non-finite gradient in {name}"
        assert parameter.grad.abs().sum() > 0, f"{key}: zero gradient in {name}"
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("key", KEYS)
def test_eval_output_is_deterministic(key: str) -> None:
    module = _randomise(get_attention(key).build(CHANNELS)).eval()
    x = _input(2, 5, 4)
    with torch.no_grad():
        assert torch.equal(module(x), module(x))


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtypes_run(key: str, dtype: torch.dtype) -> None:
    module = get_attention(key).build(CHANNELS).eval().to(dtype)
    x = _input(2, 5, 4).to(dtype)
    with torch.no_grad():
        out = module(x)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    _check_shape(key, x, out)


@pytest.mark.parametrize("key", KEYS)
def test_channels_last_matches_contiguous(key: str) -> None:
    module = _randomise(get_attention(key).build(CHANNELS)).eval()
    x = _input(2, 6, 5)
    with torch.no_grad():
        expected = module(x)
        got = module(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_unknown_key_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="'se'") as error:
        get_attention("sse")
    assert "\n" not in str(error.value)


def test_unknown_option_suggests_close_matches() -> None:
    with pytest.raises(OptionError, match="did you mean 'reduction'"):
        get_attention("se").build(64, reductoin=4)


BAD_OPTIONS = [
    ("se", 64, {"reduction": 128}, "reduction"),
    ("se", 64, {"reduction": 0}, "reduction"),
    ("cbam", 64, {"kernel_size": 6}, "kernel_size"),
    ("eca", 64, {"k_size": 4}, "k_size"),
    ("eca", 96, {"k_size": "resnet50"}, "k_size"),
    ("eca", 64, {"k_size": "paper"}, "k_size"),
    ("coord", 64, {"reduction": 0}, "reduction"),
    ("srm", 64, {"eps": -1.0}, "eps"),
    ("gct", 64, {"mode": "l3"}, "mode"),
    ("gct", 64, {"epsilon": 0.0}, "epsilon"),
    ("fca", 72, {}, "divisible by 16"),
    ("fca", 64, {"frequencies": "top3"}, "frequencies"),
    ("fca", 64, {"dct_size": 0}, "dct_size"),
    ("rcan", 8, {}, "reduction"),
    ("scse", 64, {"reduction": 65}, "reduction"),
    ("sk", 64, {"groups": 24}, "groups"),
    ("sk", 64, {"stride": 0}, "stride"),
    ("bam", 64, {"combine": "mul"}, "combine"),
    ("bam", 8, {}, "reduction"),
]


@pytest.mark.parametrize(("key", "channels", "options", "fragment"), BAD_OPTIONS, ids=str)
def test_bad_options_fail_at_construction(key: str, channels: int, options: dict, fragment: str) -> None:
    with pytest.raises(OptionError) as error:
        get_attention(key).build(channels, **options)
    message = str(error.value)
    assert fragment in message and "\n" not in message and "accepted" in message


def test_every_key_of_the_zoo_is_registered_with_its_placement() -> None:
    assert ISSUE_KEYS == set(KEYS) and len(KEYS) == 18
    placements = {key: get_attention(key).placement for key in ISSUE_KEYS}
    assert placements["gsop"] == "stage_end" and placements["encnet"] == "head"
    assert placements["dia"] == "shared_per_stage"
    assert placements["coord"] == "expanded"
    assert placements["gct"] == "pre_conv"
    assert placements["bam"] == "between_stages"
    assert placements["sk"] == "replace_conv3x3" and not get_attention("sk").gate


# --- independent references on fixed inputs with set weights ---------------------------------------------


def _fixed_input(channels: int = 8, height: int = 3, width: int = 4) -> torch.Tensor:
    count = channels * height * width
    values = torch.arange(2 * count, dtype=torch.float32)
    return torch.sin(values * 0.37).reshape(2, channels, height, width)


def _set(parameter: torch.Tensor, scale: float, offset: float = 0.0) -> None:
    with torch.no_grad():
        values = torch.cos(torch.arange(parameter.numel(), dtype=torch.float32) * scale + offset)
        parameter.copy_(values.reshape(parameter.shape))


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _linear_reference(vector: list[float], weight: torch.Tensor, bias: torch.Tensor | None) -> list[float]:
    offsets = [0.0] * weight.shape[0] if bias is None else bias.tolist()
    return [
        sum(weight[o, i].item() * vector[i] for i in range(len(vector))) + offsets[o]
        for o in range(weight.shape[0])
    ]


def _mlp_reference(vector: list[float], first: nn.Linear, second: nn.Linear) -> list[float]:
    hidden = [max(0.0, value) for value in _linear_reference(vector, first.weight, first.bias)]
    return _linear_reference(hidden, second.weight, second.bias)


@pytest.mark.parametrize("bias", [False, True])
def test_se_matches_reference(bias: bool) -> None:
    x = _fixed_input()
    module = get_attention("se").build(8, reduction=4, bias=bias).eval()
    _set(module.fc1.weight, 0.7)
    _set(module.fc2.weight, 1.3, 0.5)
    if bias:
        _set(module.fc1.bias, 2.1)
        _set(module.fc2.bias, 0.3, 1.0)
    expected = torch.empty_like(x)
    for n in range(x.shape[0]):
        means = [x[n, c].sum().item() / x[n, c].numel() for c in range(8)]
        logits = _mlp_reference(means, module.fc1, module.fc2)
        for c in range(8):
            expected[n, c] = x[n, c] * _sigmoid(logits[c])
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("k_size", [3, 5])
def test_eca_matches_reference(k_size: int) -> None:
    x = _fixed_input()
    module = get_attention("eca").build(8, k_size=k_size).eval()
    _set(module.conv.weight, 0.9, 0.2)
    kernel = module.conv.weight.flatten().tolist()
    half = (k_size - 1) // 2
    expected = torch.empty_like(x)
    for n in range(x.shape[0]):
        means = [x[n, c].mean().item() for c in range(8)]
        for c in range(8):
            # zero padding at both ends of the channel axis, as Conv1d(padding=(k-1)//2) does
            logit = sum(kernel[j] * means[c + j - half] for j in range(k_size) if 0 <= c + j - half < 8)
            expected[n, c] = x[n, c] * _sigmoid(logit)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


def test_eca_adaptive_and_released_kernels() -> None:
    from attnbench.modules.eca import adaptive_kernel_size

    # Paper rule with gamma=2, b=1 at the ResNet-50 stage widths; the release used 3, 5, 5, 7 instead.
    assert [adaptive_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    spec = get_attention("eca")
    assert [spec.param_count(c, k_size="resnet50") for c in (256, 512, 1024, 2048)] == [3, 5, 5, 7]
    assert [spec.param_count(c, k_size="mobilenet_v2") for c in (24, 96, 160, 320)] == [1, 1, 3, 3]


def test_cbam_matches_reference() -> None:
    channels, kernel = 8, 3
    x = _fixed_input(channels, 4, 5)
    module = get_attention("cbam").build(channels, reduction=2, kernel_size=kernel).eval()
    mlp = module.channel.mlp
    _set(mlp[0].weight, 0.7)
    _set(mlp[0].bias, 1.9)
    _set(mlp[2].weight, 1.1, 0.4)
    _set(mlp[2].bias, 0.6)
    _set(module.spatial.conv.weight, 0.45, 0.3)
    bn = module.spatial.bn
    with torch.no_grad():
        bn.weight.fill_(1.5), bn.bias.fill_(-0.2), bn.running_mean.fill_(0.1), bn.running_var.fill_(2.0)

    after_channel = torch.empty_like(x)
    for n in range(x.shape[0]):
        avg = [x[n, c].mean().item() for c in range(channels)]
        peak = [x[n, c].max().item() for c in range(channels)]
        from_avg = _mlp_reference(avg, mlp[0], mlp[2])
        from_peak = _mlp_reference(peak, mlp[0], mlp[2])
        for c in range(channels):
            after_channel[n, c] = x[n, c] * _sigmoid(from_avg[c] + from_peak[c])

    weight = module.spatial.conv.weight[0]
    height, width = x.shape[-2:]
    half = kernel // 2
    expected = torch.empty_like(x)
    for n in range(x.shape[0]):
        pooled = [after_channel[n].max(dim=0).values, after_channel[n].mean(dim=0)]
        for i in range(height):
            for j in range(width):
                total = 0.0
                for p in range(2):
                    for di in range(kernel):
                        for dj in range(kernel):
                            a, b = i + di - half, j + dj - half
                            if 0 <= a < height and 0 <= b < width:
                                total += weight[p, di, dj].item() * pooled[p][a, b].item()
                normalised = (total - 0.1) / math.sqrt(2.0 + bn.eps) * 1.5 - 0.2
                expected[n, :, i, j] = after_channel[n, :, i, j] * _sigmoid(normalised)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


# --- structural facts of the released code ---------------------------------------------------------------


def test_fca_dct_filter_matches_release_formula() -> None:
    from attnbench.modules.fca import TOP_U, TOP_V

    channels, size = 32, 14
    module = get_attention("fca").build(channels, dct_size=size)
    assert "dct" in dict(module.named_buffers()) and "dct" not in dict(module.named_parameters())

    def basis(position: int, frequency: int, length: int) -> float:
        value = math.cos(math.pi * frequency * (position + 0.5) / length) / math.sqrt(length)
        return value if frequency == 0 else value * math.sqrt(2)

    per_group = channels // 16
    for c in (0, 5, 17, 31):
        u, v = TOP_U[c // per_group] * (size // 7), TOP_V[c // per_group] * (size // 7)
        for i, j in ((0, 0), (3, 11), (13, 6)):
            assert module.dct[c, i, j].item() == pytest.approx(basis(i, u, size) * basis(j, v, size), abs=1e-6)


def test_fca_pools_to_the_dct_grid() -> None:
    module = _randomise(get_attention("fca").build(32)).eval()
    x = _input(2, 14, 14, channels=32).abs() + 0.5  # positive, so the gate is out / x
    pooled = F.adaptive_avg_pool2d(x, 7)
    with torch.no_grad():
        gate_from_pooled = module(pooled) / pooled
        gate_from_full = module(x) / x
    torch.testing.assert_close(gate_from_full[:, :, :1, :1], gate_from_pooled[:, :, :1, :1])


def test_gct_is_identity_at_initialisation() -> None:
    for mode in ("l2", "l1"):
        x = _input(2, 3, 4)
        torch.testing.assert_close(get_attention("gct").build(CHANNELS, mode=mode)(x), x)


def test_srm_matches_reference() -> None:
    module = get_attention("srm").build(8).eval()
    _set(module.cfc, 0.8)
    x = _fixed_input()
    bn = module.bn
    expected = torch.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(8):
            values = x[n, c].flatten().tolist()
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            z = module.cfc[c, 0].item() * mean + module.cfc[c, 1].item() * std
            expected[n, c] = x[n, c] * _sigmoid(z / math.sqrt(1.0 + bn.eps))
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


def test_bam_combines_branches_by_product_or_sum() -> None:
    x = _input(2, 5, 5)
    for combine, mix in (("product", torch.mul), ("sum", torch.add)):
        module = _randomise(get_attention("bam").build(CHANNELS, combine=combine)).eval()
        with torch.no_grad():
            channel = module.channel(x.mean(dim=(2, 3)))[:, :, None, None]
            expected = x * (1 + torch.sigmoid(mix(channel, module.spatial(x))))
            torch.testing.assert_close(module(x), expected)


def test_sk_output_is_a_convex_mix_of_its_branches() -> None:
    module = _randomise(get_attention("sk").build(CHANNELS, stride=2)).eval()
    x = _input(2, 7, 6)
    with torch.no_grad():
        out = module(x)
        first, second = (branch(x) for branch in module.branches)
    assert out.shape == (2, CHANNELS, 4, 3)
    assert (out >= torch.minimum(first, second) - 1e-5).all()
    assert (out <= torch.maximum(first, second) + 1e-5).all()


def test_scse_takes_the_elementwise_maximum() -> None:
    module = _randomise(get_attention("scse").build(CHANNELS)).eval()
    x = _input(2, 4, 4)
    with torch.no_grad():
        channel_gate = torch.sigmoid(module.fc2(torch.relu(module.fc1(x.mean(dim=(2, 3))))))[:, :, None, None]
        spatial_gate = torch.sigmoid(module.spatial(x))
        torch.testing.assert_close(module(x), torch.maximum(x * channel_gate, x * spatial_gate))


def test_coord_uses_hard_swish() -> None:
    module = get_attention("coord").build(CHANNELS)
    assert isinstance(module.act, nn.Hardswish)
    assert module.conv1.out_channels == max(8, CHANNELS // 32)
