"""Complexity: hand-worked counts, the operator rule table, memory-traffic models, the formula check."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from attnbench.backbones import BuiltModel, Site, build_model
from attnbench.config import AttentionEntry, CaseSpec, TimingSpec
import attnbench.measure.complexity as complexity_module
from attnbench.measure import MeasureContext
from attnbench.measure.complexity import complexity, count_complexity, format_counter, site_rows
from attnbench.measure.flops import RULES, adaptive_taps, table, window_taps
from attnbench.measure.prepared import PreparedCase, prepare_case
from attnbench.modules import ATTENTION, get_attention
from attnbench.report.markdown import render
from attnbench.results import RunWriter, read_run
from attnbench.runner import run_suite
from tests.conftest import write

ROOT = Path(__file__).resolve().parent.parent
RESNET50_STAGES = ((3, 256, 56 * 56), (4, 512, 28 * 28), (6, 1024, 14 * 14), (3, 2048, 7 * 7))
"""(blocks N_s, channels C_s, positions H·W) of the SE sites of torchvision ResNet-50 at 224x224."""


def alone(module: nn.Module, channels: int, spatial: int):
    """The complexity of one module on a 1 x channels x spatial² input, all of it attention."""
    model = nn.Sequential(module)
    return count_complexity(model, [Site("0", "s", channels, module)], (channels, spatial, spatial))


def case(backbone: str, key: str, batch_size: int = 1, resolution: int = 32) -> CaseSpec:
    return CaseSpec(backbone, AttentionEntry(key, key), batch_size, resolution, "float32", "eval", "cpu")


def context() -> MeasureContext:
    return MeasureContext(timing=TimingSpec(), device=torch.device("cpu"))


def prepared(case: CaseSpec, built) -> PreparedCase:
    return prepare_case(case, built, torch.device("cpu"), TimingSpec(), time.perf_counter)


def test_se_on_64x8x8_by_hand():
    # SE, C=64, r=16 -> hidden 4, no biases; x is 1x64x8x8 (4096 elements), float32.
    #   mean(x, (2,3))   flops 4096 (4032 adds + 64 divides)      reads 4096 el.  writes 64
    #   mm(v, W1ᵀ)       MACs 64·4 = 256, flops 512             reads 64 + 256    writes 4
    #   relu_            flops 4                                 reads 4           writes 4
    #   mm(h, W2ᵀ)       MACs 4·64 = 256, flops 512             reads 4 + 256     writes 64
    #   sigmoid          flops 64·4 = 256 (negate, exp, add, divide)  reads 64     writes 64
    #   x * gate         flops 4096                              reads 4096 + 64   writes 4096
    # MACs 512; flops 4096 + 512 + 4 + 512 + 256 + 4096 = 9476.
    # eager: 4160 + 324 + 8 + 324 + 128 + 8256 = 13200 elements = 52800 bytes.
    # fused groups: {mean} {mm1, relu} {mm2, sigmoid, mul}: reads x, v, W1, h, W2, x again
    #   (4096 + 64 + 256 + 4 + 256 + 4096) and writes v, h, out (64 + 4 + 4096): 12936 el. = 51744 bytes.
    counts = alone(get_attention("se").build(64), 64, 8)
    assert counts.at_one == {
        "macs": 512, "flops": 9476, "bytes_eager": 52800, "bytes_min": 51744,
        "macs_attention": 512, "flops_attention": 9476, "bytes_eager_attention": 52800,
        "bytes_min_attention": 51744,
    }
    assert not counts.uncounted
    # Batch 3: activations triple, the 2·256 weights (2048 bytes) are read once per forward.
    at_three = counts.at_batch(3)
    assert at_three["flops"] == 3 * 9476 and at_three["macs"] == 3 * 512
    assert at_three["bytes_eager"] == 3 * (52800 - 2048) + 2048
    assert at_three["bytes_min"] == 3 * (51744 - 2048) + 2048


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x.mean((2, 3), keepdim=True))


def test_fused_groups_round_trip_a_gated_tensor():
    # conv 1x1 (4->4, no bias) then a gate, on 1x4x8x8 (256 elements, 1024 bytes).
    # Groups: {conv y, mean m} {sigmoid, mul}: the mean's result cannot flow back into its own group,
    # so y and m are written and read again.
    #   reads: input 1024 + weight 64 + m 16 + y 1024 = 2128; writes: m 16 + y 1024 + out 1024 = 2064.
    # Without the gate: conv reads 1024 + 64 and writes 1024.
    gate = Gate()
    model = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), gate)
    counts = count_complexity(model, [Site("1", "s", 4, gate)], (4, 8, 8)).at_one
    assert counts["bytes_min"] == 2128 + 2064
    # eager: conv 1024+64+1024, mean 1024+16, sigmoid 16+16, mul 1024+16+1024.
    assert counts["bytes_eager"] == 2112 + 1040 + 32 + 2064
    # The gate alone: reads x twice and m once, writes m and out: 3·1024 + 2·16.
    assert counts["bytes_min_attention"] == 3 * 1024 + 2 * 16
    plain = count_complexity(nn.Sequential(nn.Conv2d(4, 4, 1, bias=False)), [], (4, 8, 8)).at_one
    assert plain["bytes_min"] == 1024 + 64 + 1024


def test_pooling_windows_are_exact_at_the_borders():
    # 3x3, stride 2, padding 1 over 4 positions: windows cover 2 and 3 positions.
    assert window_taps(4, 2, 3, 2, 1, 1) == 5
    # Adaptive 7 -> 3: windows [0,3), [2,5), [4,7).
    assert adaptive_taps(7, 3) == 9
    pool = count_complexity(nn.MaxPool2d(3, 2, 1), [], (1, 4, 4)).at_one
    assert pool["flops"] == 5 * 5 - 4
    adaptive = count_complexity(nn.AdaptiveAvgPool2d(3), [], (2, 7, 7)).at_one
    assert adaptive["flops"] == 2 * 9 * 9


def test_layer_norm_and_gelu_by_hand():
    # ConvNeXt's ops. LayerNorm over 8 features of a 1x2x4x8 input: 64 elements in 8 rows,
    # (mean 1 + variance 3 + normalise 1 + weight 1 + bias 1)·64 + (eps, rsqrt)·8.
    assert count_complexity(nn.LayerNorm(8), [], (2, 4, 8)).at_one["flops"] == 7 * 64 + 2 * 8
    plain = nn.LayerNorm(8, elementwise_affine=False)
    assert count_complexity(plain, [], (2, 4, 8)).at_one["flops"] == 5 * 64 + 2 * 8
    assert count_complexity(nn.GELU(), [], (4, 4, 4)).at_one["flops"] == 5 * 64
    assert count_complexity(nn.GELU(approximate="tanh"), [], (4, 4, 4)).at_one["flops"] == 9 * 64


@pytest.mark.parametrize("key", ATTENTION.names())
def test_every_registered_module_is_fully_counted(key: str):
    counts = alone(get_attention(key).build(64), 64, 8)
    assert format_counter(counts.uncounted) == ""
    assert counts.at_one["flops"] == counts.at_one["flops_attention"] > 0
    assert counts.at_one["bytes_min_attention"] > 0


def test_uncounted_ops_are_listed_with_call_counts():
    class Sorting(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sort(dim=1).values + x.sort(dim=2).values

    counts = count_complexity(Sorting(), [], (2, 4, 4))
    assert format_counter(counts.uncounted) == "aten.sort:2"
    assert counts.at_one["flops"] == 2 * 4 * 4  # only the add is counted


@pytest.mark.slow
def test_resnet50_macs_and_se_attention_alone():
    none = build_model("resnet50")
    se = build_model("resnet50", "se")
    base = count_complexity(none.model, none.sites, (3, 224, 224)).at_one
    counts = count_complexity(se.model, se.sites, (3, 224, 224)).at_one
    # Convolutions and the classifier only (fvcore's 4.11 G adds BatchNorm and pooling); 4.09 G.
    assert base["macs"] == 4_089_184_256 and round(base["macs"] / 1e9, 2) == 4.09
    assert base["macs_attention"] == base["flops_attention"] == 0
    # SE's two FCs do one MAC per weight at batch 1: 2·C·C/16 summed = its 2,514,944 parameters.
    assert counts["macs_attention"] == 2 * sum(n * c * c // 16 for n, c, _ in RESNET50_STAGES) == 2_514_944
    # Per instance (hidden h = C/16, S = H·W, see the 64x8x8 test): flops 2CS + 4Ch + h + 4C,
    # eager elements 3CS + 2Ch + 6C + 4h, fused elements 3CS + 2Ch + 2C + 2h.
    def total(per_instance) -> int:
        return sum(n * per_instance(c, s, c // 16) for n, c, s in RESNET50_STAGES)

    assert counts["flops_attention"] == total(lambda c, s, h: 2 * c * s + 4 * c * h + h + 4 * c)
    assert counts["bytes_eager_attention"] == 4 * total(lambda c, s, h: 3 * c * s + 2 * c * h + 6 * c + 4 * h)
    assert counts["bytes_min_attention"] == 4 * total(lambda c, s, h: 3 * c * s + 2 * c * h + 2 * c + 2 * h)
    # Inserting SE changes no backbone op, so the whole-model difference is the attention alone.
    for name in ("macs", "flops", "bytes_eager"):
        assert counts[name] - base[name] == counts[f"{name}_attention"]


def test_shared_instance_is_one_row_and_counted_per_call():
    shared = get_attention("se").build(64)
    model = nn.Sequential(shared, shared)
    sites = [Site("0", "s", 64, shared), Site("1", "s", 64, shared)]
    rows = site_rows(case("resnet18", "se"), BuiltModel(model, sites), lambda site: get_attention("se").param_count(64))
    assert [(row["path"], row["sites"], row["counted_params"], row["ok"]) for row in rows] == [
        ("0", 2, 512, True)
    ]
    counts = count_complexity(model, sites, (64, 8, 8)).at_one
    assert counts["flops_attention"] == counts["flops"] == 2 * 9476


def test_formula_check_flags_a_wrong_formula(monkeypatch):
    built = build_model("resnet18", "se")
    spec = get_attention("se")
    wrong = dataclasses.replace(spec, params=lambda channels, reduction, bias: channels * channels // reduction)
    rows = site_rows(case("resnet18", "se"), built, lambda site: wrong.param_count(site.channels))
    assert len(rows) == 8 and not any(row["ok"] for row in rows)
    assert rows[0]["formula_params"] * 2 == rows[0]["counted_params"] == 2 * 64 * 64 // 16

    right = complexity(prepared(case("resnet18", "se"), built), context())
    assert right.columns["formula_ok"] is True and all(row["ok"] for row in right.sites)
    monkeypatch.setattr(complexity_module, "get_attention", lambda key: wrong)
    flagged = complexity(prepared(case("resnet18", "se"), built), context())
    assert flagged.columns["formula_ok"] is False


def test_metric_columns_and_cache():
    ctx = context()
    built = build_model("resnet18", "eca")
    one = complexity(prepared(case("resnet18", "eca"), built), ctx).columns
    four = complexity(prepared(case("resnet18", "eca", batch_size=4), built), ctx).columns
    assert len([key for key in ctx.cache if key[0] == "complexity"]) == 1
    assert four["macs"] == 4 * one["macs"]
    # Flops are affine in the batch: eval BatchNorm folds its statistics once per forward, 5 per channel.
    folds = 5 * sum(m.num_features for m in built.model.modules() if isinstance(m, nn.BatchNorm2d))
    assert four["flops"] == 4 * one["flops"] - 3 * folds
    assert one["arithmetic_intensity"] == one["flops"] / one["bytes_eager"]
    assert one["uncounted_ops"] == "" and one["formula_ok"] is True
    assert 0 < one["flops_attention"] < one["flops"] and 0 < one["bytes_min_attention"] < one["bytes_min"]
    baseline = complexity(prepared(case("resnet18", "none"), build_model("resnet18")), ctx)
    assert baseline.columns["formula_ok"] is None and baseline.sites == []
    assert baseline.columns["bytes_min_attention"] == 0


def test_sites_round_trip_drops_orphans_and_repeats(tmp_path: Path):
    writer = RunWriter.create(tmp_path, {"suite": {"name": "t"}})
    row = {"case_id": "a", "backbone": "b", "attention": "se", "path": "p", "stage": "s", "channels": 8,
           "sites": 1, "formula_params": 8, "counted_params": 8, "ok": True}
    writer.append_sites([{**row, "counted_params": 7, "ok": False}])  # interrupted before its case row
    writer.append_sites([row, {**row, "case_id": "orphan"}])
    writer.append_case({"case_id": "a", "backbone": "b", "attention": "se", "batch_size": 1, "resolution": 8,
                        "dtype": "float32", "mode": "eval", "device": "cpu", "status": "ok"})
    sites = read_run(writer.path).sites
    assert sites[["case_id", "counted_params", "ok"]].values.tolist() == [["a", 8, True]]


def test_complexity_run_reports_formula_verification(tmp_path: Path, project):
    suite_file = write(
        tmp_path / "cx.toml",
        """
        name = "cx"
        metrics = ["complexity"]
        [grid]
        backbones = ["resnet18"]
        attention = ["none", "se", { name = "se", label = "se-bias", bias = true }, "eca"]
        batch_sizes = [1, 2]
        resolutions = [32]
        device = "cpu"
        """,
    )
    from attnbench.config import load_suite

    run = read_run(run_suite(load_suite(str(suite_file), project), project, tmp_path / "results"))
    cases = run.cases.set_index(["attention", "batch_size"])
    assert (cases["status"] == "ok").all()
    assert cases.loc[("se", 2), "macs"] == 2 * cases.loc[("se", 1), "macs"]
    assert cases["uncounted_ops"].isna().all()  # written as an empty cell
    assert len(run.sites) == 3 * 2 * 8  # three attention entries, two batch sizes, eight blocks
    report = render([run])
    section = report.split("### Formula verification", 1)[1]
    assert "| se | layer1 | 64 | 2 | 2·C²/r (+ C/r + C with bias) | 512 | 512 | yes |" in section
    # ResNet-18: two blocks per stage at 64, 128, 256, 512 channels; SE's 2·C²/r summed over them.
    closed = 2 * sum(2 * c * c for c in (64, 128, 256, 512)) // 16
    assert (
        "`se`, f(C) = 2·C²/r (+ C/r + C with bias): Σ N_s·f(C_s) = 2·f(64) + 2·f(128) + 2·f(256) + 2·f(512) = "
        f"2·512 + 2·2,048 + 2·8,192 + 2·32,768 = {closed:,}, which equals the {closed:,} parameters counted over "
        "its 8 instances." in section
    )
    assert "`se-bias`, f(C) = 2·C²/r (+ C/r + C with bias): Σ N_s·f(C_s)" in section  # every module, biases too


def test_readme_lists_every_rule():
    readme = (ROOT / "README.md").read_text()
    for ops, text in table():
        assert f"| {ops} | {text} |" in readme
    assert len(RULES) == sum(len(ops.split(", ")) for ops, _ in table())


@pytest.mark.gpu
def test_counts_do_not_depend_on_the_device():
    module = get_attention("cbam").build(64)
    on_cpu = alone(module, 64, 8).at_one
    assert alone(module.cuda(), 64, 8).at_one == on_cpu


FVCORE_MAC_OPERATORS = ("conv", "linear", "matmul", "bmm", "einsum", "addmm", "mm", "baddbmm")


@pytest.mark.parametrize("key", ["none", "se", "eca", "cbam", "soca"])
def test_macs_agree_with_fvcore(key: str):
    """fvcore, an independent tracer, counts the same conv/linear/matmul MACs (its other entries,
    batch_norm and pooling, are outside the MAC convention)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        built = build_model("resnet18", key)
        built.model.eval()
        analysis = FlopCountAnalysis(built.model, torch.zeros(1, 3, 64, 64))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_operator = analysis.by_operator()
    fvcore_macs = sum(count for op, count in by_operator.items() if op in FVCORE_MAC_OPERATORS)
    ours = count_complexity(built.model, built.sites, (3, 64, 64)).at_one["macs"]
    assert ours == fvcore_macs


@pytest.mark.parametrize("key", sorted(ATTENTION))
def test_counts_on_real_tensors_equal_the_counts_on_fake_ones(key):
    built = build_model("resnet50" if key == "sk" else "resnet18", key)  # SK replaces a Bottleneck's conv
    image = (3, 64, 64)  # the last stage at 2x2: SRM's and SOCA's statistics need more than one position
    real = count_complexity(built.model, built.sites, image, fake=False)
    fake = count_complexity(built.model, built.sites, image, fake=True)
    assert (real.at_one, real.at_two, real.uncounted) == (fake.at_one, fake.at_two, fake.uncounted)


def test_large_images_and_float16_on_the_cpu_are_counted_on_fake_tensors():
    model = nn.Conv2d(3, 4, 3)
    assert complexity_module.counts_on_real_tensors(model, (3, 224, 224), complexity_module.Precision())
    assert not complexity_module.counts_on_real_tensors(model, (3, 512, 512), complexity_module.Precision())
    assert not complexity_module.counts_on_real_tensors(model.half(), (3, 64, 64), complexity_module.Precision(torch.float16))
