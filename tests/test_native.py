"""Backbones that ship their own squeeze-excitation (EfficientNet, MobileNetV3, RegNetY), and ConvNeXt-T.

`native` keeps torchvision's SE, `none` removes it, and every registered module either takes its place
(or sits at block placement in ConvNeXt) or is refused in one line. Counts are checked against
torchvision's own models, built independently here with torchvision's builders.
"""

from __future__ import annotations

import io
import time
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torchvision import models
from torchvision.models._utils import _make_divisible
from torchvision.models.efficientnet import MBConv
from torchvision.models.regnet import ResBottleneckBlock
from torchvision.ops import SqueezeExcitation

from attnbench.backbones import (
    BACKBONES,
    NATIVE_FORMULA,
    build_model,
    check_pair,
    get_backbone,
    native_summary,
    resolve_placement,
)
from attnbench.cli import main
from attnbench.cli.listing import LISTINGS
from attnbench.config import AttentionEntry, CaseSpec, TimingSpec, attention_entry, expand_grid, make_case
from attnbench.config import filter_suite, load_project, load_suite, parse_suite
from attnbench.errors import ConfigError, OptionError
from attnbench.measure import MeasureContext
from attnbench.measure.complexity import complexity, count_complexity, site_formula, site_rows
from attnbench.measure.prepared import prepare_case
from attnbench.modules import ATTENTION, BASELINE, NATIVE, get_attention
from attnbench.results import find_runs, read_run
from tests import test_backbones
from tests.conftest import write

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_v2_s": 21_458_488,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "regnet_y_400mf": 4_344_144,
    "convnext_tiny": 28_589_128,
}
"""torchvision's published num_params of each model (its weights metadata, printed in its docs)."""
SE_INSTANCES = {
    "efficientnet_b0": 16,
    "efficientnet_v2_s": 30,
    "mobilenet_v3_large": 8,
    "mobilenet_v3_small": 9,
    "regnet_y_400mf": 16,
    "convnext_tiny": 0,
}
NATIVE_BACKBONES = [name for name, n in SE_INSTANCES.items() if n]
KEYS = [*ATTENTION.names(), NATIVE, BASELINE]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=None)
def torchvision_model(name: str) -> nn.Module:
    """torchvision's own builder: the reference for attnbench's backbone of that name."""
    with torch.device("cpu"):  # RegNet's builder cannot run on the meta device
        return getattr(models, name)(weights=None)


def se_modules(model: nn.Module) -> dict[str, SqueezeExcitation]:
    return {path: m for path, m in model.named_modules() if isinstance(m, SqueezeExcitation)}


@lru_cache(maxsize=None)
def se_params(name: str) -> int:
    return sum(count(m) for m in se_modules(torchvision_model(name)).values())


def test_every_registered_backbone_is_covered_by_one_test_file():
    assert sorted(BACKBONES.names()) == sorted([*test_backbones.TORCHVISION_PARAMS, *PUBLISHED])


@pytest.mark.parametrize("name", PUBLISHED)
def test_native_is_torchvisions_model_and_none_is_it_without_se(name):
    assert models.get_model_weights(name).DEFAULT.meta["num_params"] == PUBLISHED[name]
    reference = torchvision_model(name)
    with torch.device("meta"):
        kept = build_model(name, NATIVE) if SE_INSTANCES[name] else build_model(name)
        plain = build_model(name)
    # The same architecture as torchvision's builder (regnet_y_400mf is assembled from its public parts).
    assert str(kept.model) == str(reference)
    assert count(kept.model) == count(reference) == PUBLISHED[name]
    assert count(plain.model) == PUBLISHED[name] - se_params(name)
    assert not se_modules(plain.model) and plain.sites == []
    assert all(isinstance(plain.model.get_submodule(path), nn.Identity) for path in se_modules(reference))


@pytest.mark.parametrize("name", NATIVE_BACKBONES)
def test_native_sites_are_torchvisions_se_modules(name):
    built = build_model(name, NATIVE)
    expected = se_modules(torchvision_model(name))
    assert [site.path for site in built.sites] == list(expected) and len(expected) == SE_INSTANCES[name]
    for site in built.sites:
        assert site.module is built.model.get_submodule(site.path)
        assert (site.channels, site.squeeze) == (site.module.fc1.in_channels, site.module.fc1.out_channels)
        assert count(site.module) == 2 * site.channels * site.squeeze + site.squeeze + site.channels
    gate = nn.Hardsigmoid if name.startswith("mobilenet_v3") else nn.Sigmoid
    assert all(isinstance(site.module.scale_activation, gate) for site in built.sites)
    stages = [site.stage for site in built.sites]
    assert "?" not in stages and stages == sorted(stages, key=stages.index)  # grouped, in network order


def test_squeeze_widths_are_each_familys_own_rule():
    """Not C/r of the gated tensor: EfficientNet squeezes to a quarter of the block's input, MobileNetV3
    to make_divisible(C/4, 8) of the gated C, RegNetY to a quarter of the block's input width."""
    for name in ("efficientnet_b0", "efficientnet_v2_s"):
        for block in (m for m in torchvision_model(name).modules() if isinstance(m, MBConv)):
            se = next(m for m in block.modules() if isinstance(m, SqueezeExcitation))
            assert se.fc1.out_channels == max(1, block.block[0][0].in_channels // 4)
    for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        for se in se_modules(torchvision_model(name)).values():
            assert se.fc1.out_channels == _make_divisible(se.fc1.in_channels // 4, 8)
    for block in (m for m in torchvision_model("regnet_y_400mf").modules() if isinstance(m, ResBottleneckBlock)):
        assert block.f.se.fc1.out_channels == int(round(0.25 * block.f.a[0].in_channels))
    first = build_model("efficientnet_b0", NATIVE).sites[1]
    assert (first.channels, first.squeeze) == (96, 4)  # a 16-channel block expanded 6x, squeezed to 16/4


def test_block_gates_take_the_native_place_and_coordinate_attention_too():
    for name in NATIVE_BACKBONES:
        for key in ("se", "eca", "cbam", "coord"):
            assert resolve_placement(name, get_attention(key)) == "native"
    assert resolve_placement("convnext_tiny", get_attention("coord")) == "block"
    assert resolve_placement("efficientnet_b0", get_attention("gct")) == "pre_conv"
    native = build_model("mobilenet_v3_large", NATIVE).sites
    replaced = build_model("mobilenet_v3_large", "eca").sites
    assert [(s.path, s.stage, s.channels, s.squeeze) for s in replaced] == [
        (s.path, s.stage, s.channels, s.squeeze) for s in native
    ]
    # Asked for explicitly, block placement runs on the backbone without its SE.
    at_block = build_model("efficientnet_b0", "eca", placement_name="block")
    assert not se_modules(at_block.model) and len(at_block.sites) == 16
    assert at_block.sites[1].path == "features.2.0.block.4" and at_block.sites[1].channels == 24


def test_block_placements_sit_before_the_residual_addition():
    convnext = build_model("convnext_tiny", "se")
    assert len(convnext.sites) == 18 and convnext.sites[0].path == "features.1.0.block.7"
    assert [s.stage for s in convnext.sites].count("stage3") == 9
    regnet = build_model("regnet_y_400mf", "se", placement_name="block")
    assert regnet.sites[0].path == "trunk_output.block1.block1-0.f.c.2" and regnet.sites[0].channels == 48
    small = build_model("mobilenet_v3_small", "se", placement_name="block")
    assert small.sites[0].path == "features.1.block.3" and small.sites[0].stage == "seq1"


@pytest.mark.parametrize("name", NATIVE_BACKBONES)
def test_explicit_block_placement_runs_without_the_se(name):
    """The pairs below take the SE's place by default; block placement, asked for, has its own sites."""
    built = build_model(name, "eca", placement_name="block")
    assert not se_modules(built.model) and len(built.sites) > SE_INSTANCES[name] // 2
    spec = get_attention("eca")
    added = sum(spec.param_count(site.channels) for site in built.sites)
    assert count(built.model) == PUBLISHED[name] - se_params(name) + added
    built.model.eval()
    with torch.no_grad():
        assert torch.isfinite(built.model(torch.randn(1, 3, 32, 32))).all()


# --- every (backbone, module) pair ---------------------------------------------------------------

EXPECTED_REJECTIONS = {
    **{
        (name, key): f"placement '{placement}' does not apply to backbone '{name}'"
        for name in PUBLISHED
        for key, placement in (
            ("bam", "between_stages"), ("dia", "shared_per_stage"), ("gsop", "stage_end"), ("sk", "replace_conv3x3"),
        )
    },
    ("mobilenet_v3_large", "fca"): "features.4.block.2 (72 channels): attention 'fca': 72 channels do not split",
    ("mobilenet_v3_small", "fca"): "features.7.block.2 (120 channels): attention 'fca': 120 channels do not split",
    ("regnet_y_400mf", "fca"): "(104 channels): attention 'fca': 104 channels do not split into 16",
    ("convnext_tiny", NATIVE): "backbone 'convnext_tiny' ships no attention of its own for 'native' to keep",
}
PAIRS = [(name, key) for name in PUBLISHED for key in KEYS]
NO_FORWARD = {("efficientnet_b0", "soca"), ("efficientnet_v2_s", "soca")}
"""SOCA's matrix square root is cubic in the channels: at EfficientNet's SE sites (up to 1152 and 1536
expanded channels) one forward takes 7 and 30 s on two cores. These pairs are built and counted; SOCA runs
forward in the four other backbones, and the native placement with every other module here."""


def resolution_for(key: str) -> int:
    """32 px, or 64 where a module needs 2x2 maps (the last stage of these networks is 1/32 of the input)."""
    return 64 if key in ATTENTION and get_attention(key).min_spatial > 1 else 32


@lru_cache(maxsize=1)
def initialised(name: str) -> nn.Module:
    """One stock backbone with initialised weights at a time (the pairs come backbone by backbone):
    build_model copies it instead of initialising one per pair (ConvNeXt-T's 28M parameters take a
    second to initialise, a copy a few hundredths)."""
    return get_backbone(name).build()


@pytest.mark.parametrize(("name", "key"), PAIRS, ids=[f"{n}-{k}" for n, k in PAIRS])
def test_every_pair_builds_counts_and_runs_or_is_refused_in_one_line(name, key):
    expected = EXPECTED_REJECTIONS.get((name, key))
    if expected:
        with pytest.raises(OptionError) as error:
            check_pair(name, key, resolution=resolution_for(key))
        assert expected in str(error.value) and "\n" not in str(error.value)
        return
    if key != BASELINE:
        check_pair(name, key, resolution=resolution_for(key))
    built = build_model(name, key, base=initialised(name))
    plain = PUBLISHED[name] - se_params(name)
    if key == BASELINE:
        assert count(built.model) == plain and not built.sites
    else:
        # Each instance follows its formula row (formula_ok); the model is `none` plus those instances.
        entry = AttentionEntry(key, key)
        case = CaseSpec(name, entry, 1, resolution_for(key), "float32", "eval", "cpu")
        rows = site_rows(case, built, site_formula(entry))
        assert rows and all(row["ok"] for row in rows)
        assert count(built.model) == plain + sum(row["counted_params"] for row in rows)
    if (name, key) in NO_FORWARD:
        return
    torch.manual_seed(0)
    built.model.eval()
    size = resolution_for(key)
    with torch.no_grad():
        out = built.model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


# --- complexity ----------------------------------------------------------------------------------


def context() -> MeasureContext:
    return MeasureContext(timing=TimingSpec(), device=torch.device("cpu"))


@pytest.mark.parametrize("name", NATIVE_BACKBONES)
def test_native_se_is_counted_as_attention(name):
    built = build_model(name, NATIVE)
    case = make_case(name, attention_entry(NATIVE), batch_size=1, resolution=32, dtype="float32", mode="eval",
                     device="cpu")
    prepared = prepare_case(case, built, torch.device("cpu"), TimingSpec(), time.perf_counter)
    columns = complexity(prepared, context()).columns
    assert case.key["placement"] == "native"
    assert columns["uncounted_ops"] == "" and columns["formula_ok"] is True
    assert columns["params"] == PUBLISHED[name] and columns["params_attention"] == se_params(name)
    # At batch 1 each SE's two 1x1 convs act on one pooled vector: C·s + s·C MACs.
    assert columns["macs_attention"] == sum(2 * s.channels * s.squeeze for s in built.sites)
    assert 0 < columns["flops_attention"] < columns["flops"]


def test_convnext_ops_are_all_counted():
    built = build_model("convnext_tiny", "cbam")
    counts = count_complexity(built.model, built.sites, (3, 32, 32))
    assert not counts.uncounted and counts.at_one["flops_attention"] > 0


# --- suites ----------------------------------------------------------------------------------------


def grid(project, backbones: list[str], attention: list) -> dict:
    return {"grid": {"backbones": backbones, "attention": attention, "batch_sizes": [1], "resolutions": [32]}}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda project: check_pair("resnet18", NATIVE),
         "native in resnet18: backbone 'resnet18' ships no attention of its own for 'native' to keep; accepted: "
         "efficientnet_b0, efficientnet_v2_s, mobilenet_v3_large, mobilenet_v3_small, regnet_y_400mf"),
        (lambda project: build_model("resnet18", NATIVE), "backbone 'resnet18' ships no attention of its own"),
        (lambda project: attention_entry(NATIVE, {"reduction": 8}),
         "attention 'native' (the backbone's own attention, as built) takes no options or placement"),
        (lambda project: parse_suite(grid(project, ["resnet18", "convnext_tiny"], ["none", "native"]), "x.toml", project),
         "x.toml: grid.attention: native in resnet18: backbone 'resnet18' ships no attention of its own"),
        (lambda project: parse_suite(
            grid(project, ["convnext_tiny", "efficientnet_b0"], [{"name": "native", "backbones": ["convnext_tiny"]}]),
            "x.toml", project),
         "x.toml: grid.attention: native in convnext_tiny: backbone 'convnext_tiny' ships no attention"),
        (lambda project: check_pair("convnext_tiny", "se", placement_name="native"),
         "placement 'native' does not apply to backbone 'convnext_tiny'; it applies to: efficientnet_b0"),
    ],
)
def test_native_is_refused_in_one_line_where_there_is_none(project, call, message):
    with pytest.raises((OptionError, ConfigError)) as error:
        call(project)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_native_runs_where_a_grid_backbone_ships_attention_and_star_leaves_it_out(project):
    suite = parse_suite(grid(project, ["convnext_tiny", "efficientnet_b0"], ["none", "native", "*"]), "x", project)
    native = next(entry for entry in suite.grid.attention if entry.key == NATIVE)
    assert native.backbones == ("efficientnet_b0",)
    pairs = {(case.backbone, case.attention.label) for case in expand_grid(suite, "cpu")}
    assert ("efficientnet_b0", NATIVE) in pairs and ("convnext_tiny", NATIVE) not in pairs
    assert sum(entry.key == NATIVE for entry in suite.grid.attention) == 1  # from the list, not from "*"
    starred = parse_suite(grid(project, ["efficientnet_b0"], ["none", "*"]), "x", project)
    assert NATIVE not in {entry.key for entry in starred.grid.attention}


def test_shipped_native_suites():
    project = load_project(REPO / "attnbench.toml")
    cpu, gpu = load_suite("native", project), load_suite("native-gpu", project)
    for suite, device, batches in ((cpu, "cpu", (1, 8)), (gpu, "cuda", (1, 64))):
        assert suite.metrics == ("complexity", "latency", "memory")
        assert (suite.grid.device, suite.grid.batch_sizes, suite.grid.resolutions) == (device, batches, (224,))
        assert set(suite.grid.backbones) == set(PUBLISHED)
        assert [entry.label for entry in suite.grid.attention] == ["none", "native", "se", "eca", "coord", "cbam"]
    assert cpu.grid.case_count == (5 * 6 + 5) * 2 and gpu.grid.dtypes == ("float32", "bfloat16")
    # A slice keeps `native`'s backbones within the grid, so a resumed run parses its stored suite again.
    sliced = filter_suite(cpu, ["mobilenet_v3_small", "convnext_tiny"], [BASELINE, NATIVE])
    assert [entry.backbones for entry in sliced.grid.attention] == [(), ("mobilenet_v3_small",)]
    assert parse_suite(sliced.raw, "meta.json", project).grid == sliced.grid


def test_list_backbones_shows_the_native_attention(project):
    table = LISTINGS["backbones"](project)
    wide = Console(width=200, file=io.StringIO())
    wide.print(table)
    text = wide.file.getvalue()
    assert "SE ×8 (hardsigmoid), after the depthwise conv of SE blocks" in text
    assert "SE ×30 (sigmoid), after each MBConv's depthwise conv" in text
    assert "SE ×16 (sigmoid), after each block's grouped 3x3 conv" in text
    assert native_summary("convnext_tiny") == native_summary("resnet50") == ""
    narrow = Console(width=80, file=io.StringIO())
    narrow.print(table)
    lines = narrow.file.getvalue().splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in "".join(lines)  # no name cut short


@pytest.mark.slow
def test_native_run_reports_overhead_formula_and_published_total(project_dir, monkeypatch):
    monkeypatch.chdir(project_dir)
    write(
        project_dir / "suites" / "nat.toml",
        """
        metrics = ["complexity", "latency", "memory"]
        [grid]
        backbones = ["mobilenet_v3_small"]
        attention = ["none", "native", "eca"]
        batch_sizes = [1]
        resolutions = [32]
        device = "cpu"
        [timing]
        warmup = 1
        min_repeats = 2
        max_repeats = 4
        max_seconds = 0.05
        """,
    )
    assert main(["run", "--suite", "nat"]) == 0
    run = read_run(find_runs(project_dir / "results")[0])
    cases = run.cases.set_index(["backbone", "attention"])
    assert (run.cases["status"] == "ok").all() and len(run.cases) == 3
    assert cases.loc[("mobilenet_v3_small", NATIVE), "params_attention"] == se_params("mobilenet_v3_small")
    assert cases.loc[("mobilenet_v3_small", NATIVE), "formula_ok"]
    assert main(["report", "results", "--out", "report.md"]) == 0
    report = (project_dir / "report.md").read_text()
    assert (
        "| MobileNetV3-Small | mobilenet_v3_small | native | 2.542856 M | 2.542856 M | +0.000000 | 2,542,856 | yes |"
        in report
    )
    assert f"| native | seq1 | 16 | 1 | {NATIVE_FORMULA} | 280 | 280 | yes |" in report
