"""Backbones, placement policies and suite-time pair validation."""

from __future__ import annotations

import dataclasses
import types

import pandas as pd

import pytest
import torch
from torch import nn

from attnbench.backbones import (
    BACKBONES,
    PLACEMENTS,
    build_model,
    check_pair,
    get_backbone,
    probe_sites,
    resolve_placement,
)
from attnbench.backbones.validate import Probe
from attnbench.config import parse_suite
from attnbench.errors import ConfigError, OptionError
from attnbench.modules import ATTENTION, get_attention

# Published by torchvision's model documentation (num_params of each weights entry).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904,
    "mobilenet_v2": 3_504_872,
}
BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3),
          "resnet101": (3, 4, 23, 3), "resnext50_32x4d": (3, 4, 6, 3)}
BASIC = {"resnet18", "resnet34"}
SMALL = 64


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def probed(backbone: str, placement: str) -> list[Probe]:
    """The policy run with probes in place of attention modules, and one forward pass.

    On the meta device: shapes are all these tests need, and nothing is allocated or initialised.
    """
    with torch.device("meta"):
        model = get_backbone(backbone).build()
        sites = PLACEMENTS.get(placement)[get_backbone(backbone).family](model, Probe)
        model.eval()
        assert model(torch.zeros(1, 3, SMALL, SMALL)).shape == (1, 1000)
    return sites


def stage_channels(backbone: str) -> list[int]:
    """Block output channels, stage by stage: 64·2^i, times 4 for Bottleneck networks."""
    expansion = 1 if backbone in BASIC else 4
    return [64 * 2**stage * expansion for stage in range(4)]


def test_the_six_backbones_are_registered_with_torchvision_parameter_counts():
    assert set(TORCHVISION_PARAMS) <= set(BACKBONES.names())  # the others: tests/test_native.py
    for name, params in TORCHVISION_PARAMS.items():
        assert count(build_model(name).model) == params
        assert get_backbone(name).min_resolution == 32


@pytest.mark.parametrize("backbone", sorted(BLOCKS))
def test_block_placement_one_per_residual_block_on_its_output_channels(backbone):
    sites = probed(backbone, "block")
    expected = [c for blocks, c in zip(BLOCKS[backbone], stage_channels(backbone)) for _ in range(blocks)]
    assert [site.channels for site in sites] == expected
    assert len(sites) == {"resnet18": 8, "resnet34": 16, "resnet101": 33}.get(backbone, 16)
    last_bn = "bn2" if backbone in BASIC else "bn3"
    assert all(site.path.endswith(f".{last_bn}.1") for site in sites)
    # The probe saw each block's output once, before the residual addition.
    assert all(len(site.module.shapes) == 1 and site.module.shapes[0][1] == site.channels for site in sites)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_stage_end_between_stages_and_head(backbone):
    channels = stage_channels(backbone)
    stage_end = probed(backbone, "stage_end")
    assert [s.channels for s in stage_end] == channels
    assert [s.path.split(".")[1] for s in stage_end] == [str(b - 1) for b in BLOCKS[backbone]]
    between = probed(backbone, "between_stages")
    assert [(s.stage, s.channels) for s in between] == list(zip(("layer1", "layer2", "layer3"), channels))
    (head,) = probed(backbone, "head")
    assert head.channels == channels[-1] and head.module.shapes == [(1, channels[-1], 2, 2)]


@pytest.mark.parametrize("backbone", sorted(TORCHVISION_PARAMS))
def test_pre_conv_one_module_before_every_convolution(backbone):
    if backbone == "mobilenet_v2":
        # stem; 17 blocks of which the first has no expansion conv (2 convs) and 16 have 3; final 1x1 conv
        expected = 1 + 2 + 16 * 3 + 1
    else:
        convs_per_block = 2 if backbone in BASIC else 3
        downsampling_shortcuts = 3 if backbone in BASIC else 4
        expected = 1 + sum(BLOCKS[backbone]) * convs_per_block + downsampling_shortcuts
    sites = probed(backbone, "pre_conv")
    assert len(sites) == expected
    model = build_model(backbone).model
    assert expected == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert sites[0].channels == 3 and sites[0].stage == "stem"
    for site in sites:
        assert site.path.endswith(".0")
        assert site.module.shapes[0][1] == site.channels


def test_pre_conv_sites_receive_their_convs_in_channels():
    model = build_model("resnet50").model
    convs = {path: m for path, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    sites = PLACEMENTS.get("pre_conv")["resnet"](model, Probe)
    assert {site.path[: -len(".0")]: site.channels for site in sites} == {
        path: conv.in_channels for path, conv in convs.items()
    }
    assert model.get_submodule("layer1.0.downsample.0.1") is convs["layer1.0.downsample.0"]


def test_replace_conv3x3_in_resnext50_passes_width_and_stride():
    sites = probed("resnext50_32x4d", "replace_conv3x3")
    widths = [128, 256, 512, 1024]
    assert len(sites) == 16
    assert [s.channels for s in sites] == [w for b, w in zip(BLOCKS["resnext50_32x4d"], widths) for _ in range(b)]
    strides = [dict(s.module.site).get("stride") for s in sites]
    assert strides == [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1]
    model = get_backbone("resnext50_32x4d").build()
    PLACEMENTS.get("replace_conv3x3")["resnet"](model, Probe)
    assert isinstance(model.layer1[0].bn2, nn.Identity)


def test_replace_conv3x3_refuses_basic_blocks():
    with pytest.raises(OptionError, match="replaces a Bottleneck's 3x3 conv; this network has BasicBlock"):
        probed("resnet18", "replace_conv3x3")


def test_mobilenet_block_and_expanded():
    block = probed("mobilenet_v2", "block")
    assert [s.channels for s in block] == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    assert [s.stage for s in block][:4] == ["seq1", "seq2", "seq2", "seq3"] and block[-1].stage == "seq7"
    expanded = probed("mobilenet_v2", "expanded")
    assert [s.channels for s in expanded] == [6 * c for c in [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160]]
    assert expanded[0].path == "features.2.conv.2"
    # the expanded site is after the stride-2 depthwise conv: 64 px -> 32 (stem) -> 16 in block 2
    assert expanded[0].module.shapes == [(1, 96, 16, 16)]
    (head,) = probed("mobilenet_v2", "head")
    assert head.channels == 1280


class StatefulRecorder(nn.Module):
    """A gate with `reset_state()`, counting resets and calls, to test the shared placement."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.calls = self.resets = 0

    def reset_state(self) -> None:
        self.resets += 1
        self.calls_at_reset = self.calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.scale[:, None, None]


def test_shared_per_stage_one_instance_per_stage_reset_before_each_stage():
    model = build_model("resnet50").model
    sites = PLACEMENTS.get("shared_per_stage")["resnet"](model, StatefulRecorder)
    assert len(sites) == 16
    modules = {id(s.module): s.module for s in sites}
    assert len(modules) == 4
    assert count(model) == TORCHVISION_PARAMS["resnet50"] + sum(stage_channels("resnet50"))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
        model(torch.zeros(1, 3, 32, 32))
    for module, blocks in zip(modules.values(), BLOCKS["resnet50"]):
        assert module.resets == 2 and module.calls == 2 * blocks and module.calls_at_reset == blocks


def test_shared_modules_are_listed_once():
    built = build_model("resnet18")
    built.model.eval()
    sites = PLACEMENTS.get("shared_per_stage")["resnet"](built.model, StatefulRecorder)
    built.sites = sites
    assert len(built.sites) == 8 and len({id(site.module) for site in built.sites}) == 4


def test_expanded_default_falls_back_to_block_outside_mobilenet():
    coordinate_like = dataclasses.replace(get_attention("se"), placement="expanded")
    assert resolve_placement("resnet50", coordinate_like) == "block"
    assert resolve_placement("mobilenet_v2", coordinate_like) == "expanded"
    with pytest.raises(OptionError, match="placement 'expanded' does not apply to backbone 'resnet50'"):
        check_pair("resnet50", "se", placement_name="expanded")


@pytest.mark.parametrize(
    ("backbone", "key", "kwargs", "message"),
    [
        ("resnet18", "se", {"placement_name": "replace_conv3x3"},
         "se in resnet18 at placement 'replace_conv3x3': placement 'replace_conv3x3' replaces a convolution, "
         "and 'se' is a gate"),
        ("mobilenet_v2", "se", {"placement_name": "between_stages"},
         "placement 'between_stages' does not apply to backbone 'mobilenet_v2'; it applies to: resnet101"),
        ("resnet18", "se", {"options": {"reduction": 128}},
         "cannot be built at layer1.0.bn2.1 (64 channels): attention 'se': reduction 128 leaves no hidden unit"),
    ],
)
def test_rejections_are_one_line_reasons(backbone, key, kwargs, message):
    with pytest.raises(OptionError) as error:
        check_pair(backbone, key, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_min_spatial_is_checked_against_the_smallest_site(monkeypatch):
    covariance_like = dataclasses.replace(get_attention("se"), min_spatial=4)
    monkeypatch.setitem(ATTENTION._entries, "se", covariance_like)
    with pytest.raises(OptionError, match=r"needs feature maps of at least 4x4, layer4.0.bn3.1 gets 2x2 at resolution 64"):
        check_pair("resnet50", "se", resolution=64)
    assert check_pair("resnet50", "se", resolution=128) == "block"


def test_probe_shapes_follow_the_resolution():
    sites = probe_sites("resnet50", "block", 96)
    assert sites[0].shape == (1, 256, 24, 24) and sites[-1].shape == (1, 2048, 3, 3)


def test_suite_rejects_a_pair_with_its_reason(project):
    data = {
        "grid": {
            "backbones": ["resnet18", "resnet50"],
            "attention": ["none", {"name": "se", "reduction": 128}],
            "batch_sizes": [1],
            "resolutions": [64],
        }
    }
    with pytest.raises(ConfigError) as error:
        parse_suite(data, "x.toml", project)
    assert str(error.value).startswith("x.toml: grid.attention: se in resnet18 at placement 'block': cannot be built at")


def test_suite_placement_override_is_checked_per_module(project):
    data = {
        "grid": {
            "backbones": ["resnet50"],
            "attention": [{"name": "se", "placement": "replace_conv3x3"}],
            "batch_sizes": [1],
            "resolutions": [64],
        }
    }
    with pytest.raises(ConfigError, match="grid.attention: placement 'replace_conv3x3' replaces a convolution"):
        parse_suite(data, "x.toml", project)
    data["grid"]["attention"] = [{"name": "se", "placement": "stage_end", "label": "se-stage-end"}]
    suite = parse_suite(data, "x.toml", project)
    built = build_model("resnet50", "se", {}, suite.grid.attention[0].placement)
    assert len(built.sites) == 4


# --- every registered module in every backbone, at its default placement ------------------------------

# The pairs that cannot run, and the reason each gives; every other default pair must build and run.
EXPECTED_REJECTIONS = {
    ("resnet18", "sk"): "replaces a Bottleneck's 3x3 conv; this network has BasicBlock blocks",
    ("resnet34", "sk"): "replaces a Bottleneck's 3x3 conv; this network has BasicBlock blocks",
    ("mobilenet_v2", "sk"): "placement 'replace_conv3x3' does not apply to backbone 'mobilenet_v2'",
    ("mobilenet_v2", "gsop"): "placement 'stage_end' does not apply to backbone 'mobilenet_v2'",
    ("mobilenet_v2", "bam"): "placement 'between_stages' does not apply to backbone 'mobilenet_v2'",
    ("mobilenet_v2", "dia"): "placement 'shared_per_stage' does not apply to backbone 'mobilenet_v2'",
    ("mobilenet_v2", "fca"): "24 channels do not split into 16 frequency groups",
}
PAIRS = [(b, k) for b in sorted(TORCHVISION_PARAMS) for k in ATTENTION.names()]


def resolution_for(key: str) -> int:
    """The smallest multiple of 32 px whose last stage still has the module's minimum map size (at least 2)."""
    return 32 * max(2, get_attention(key).min_spatial)


def test_expected_rejections_name_registered_modules():
    assert {key for _, key in EXPECTED_REJECTIONS} <= set(ATTENTION.names())


def analytic_added_params(backbone: str, built, key: str) -> int:
    """The parameters the registry's formula predicts, minus those of any convolution the module replaced."""
    spec = get_attention(key)
    unique = {id(site.module): site for site in built.sites}.values()
    added = sum(spec.param_count(site.channels) for site in unique)
    if not spec.gate:  # each Bottleneck's 3x3 conv and its BatchNorm made way for the module
        with torch.device("meta"):
            plain = build_model(backbone).model
        stages = (plain.layer1, plain.layer2, plain.layer3, plain.layer4)
        added -= sum(count(block.conv2) + count(block.bn2) for stage in stages for block in stage)
    return added


@pytest.mark.parametrize(("backbone", "key"), PAIRS, ids=[f"{b}-{k}" for b, k in PAIRS])
def test_every_default_pair_builds_or_is_rejected_with_its_reason(backbone, key):
    """check_pair builds the module for every site; the full model is counted on the meta device."""
    expected = EXPECTED_REJECTIONS.get((backbone, key))
    if expected:
        with pytest.raises(OptionError) as error:
            check_pair(backbone, key, resolution=resolution_for(key))
        assert expected in str(error.value) and "\n" not in str(error.value)
        return
    check_pair(backbone, key, resolution=resolution_for(key))
    with torch.device("meta"):
        built = build_model(backbone, key)
    assert built.sites
    assert count(built.model) == TORCHVISION_PARAMS[backbone] + analytic_added_params(backbone, built, key)


# A real forward pass of the whole model, for each block type: BasicBlock (resnet18), Bottleneck (resnet50),
# grouped Bottleneck (resnext50_32x4d) and InvertedResidual (mobilenet_v2). resnet34 and resnet101 repeat
# those blocks at other depths; the test above built and counted their models.
FORWARD_PAIRS = [
    (b, k) for b, k in PAIRS
    if b in ("resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2") and (b, k) not in EXPECTED_REJECTIONS
]


@pytest.mark.parametrize(("backbone", "key"), FORWARD_PAIRS, ids=[f"{b}-{k}" for b, k in FORWARD_PAIRS])
def test_default_pair_forward_pass(backbone, key):
    torch.manual_seed(0)
    built = build_model(backbone, key)
    built.model.eval()
    with torch.no_grad():
        size = resolution_for(key)
        out = built.model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


# --- paper reproduction ------------------------------------------------------------------------------

from attnbench.config import expand_grid, load_suite, load_project  # noqa: E402
from attnbench.report.paper import comparison, paper_reproduction, reproduction_table  # noqa: E402
from attnbench.report.published import PUBLISHED  # noqa: E402


def meta_params(backbone: str, key: str, options: dict) -> int:
    with torch.device("meta"):
        return count(build_model(backbone, key, options).model)


@pytest.mark.parametrize("entry", PUBLISHED, ids=[entry.model for entry in PUBLISHED])
def test_reference_configurations_reproduce_their_published_totals(entry):
    row = comparison(entry, meta_params(entry.backbone, entry.attention, dict(entry.options)))
    # Only totals whose difference the data explains may miss.
    assert row["reproduces"] == ("no" if entry.note else "yes"), row


def test_every_published_total_is_measured_by_the_paper_tables_suite():
    from pathlib import Path

    suite = load_suite("paper-tables", load_project(Path(__file__).parents[1] / "attnbench.toml"))
    cases = {(case.backbone, case.attention.label) for case in expand_grid(suite, "cpu")}
    for entry in PUBLISHED:
        assert (entry.backbone, comparison(entry, 0)["attention"]) in cases
    assert suite.metrics == ("complexity",) and suite.grid.batch_sizes == (1,) and suite.grid.resolutions == (224,)


def test_comparison_at_published_precision_and_units():
    eca = next(e for e in PUBLISHED if e.model.startswith("ECA-Net50"))
    assert comparison(eca, 25_557_032)["measured"] == "24.37 Mi"  # 1024-based: 25,557,032 / 2^20
    se = next(e for e in PUBLISHED if e.model == "SE-ResNet-50")
    assert comparison(se, 28_088_024)["reproduces"] == "yes"
    assert comparison(se, 28_071_976)["difference"] == "-0.02"  # the bias-free ablation configuration


def test_paper_section_renders_rows_and_explains_misses():
    cases = pd.DataFrame(
        [
            {"backbone": "resnet50", "attention": "se(bias=True)", "status": "ok", "params": 28_088_024},
            {"backbone": "resnext50_32x4d", "attention": "cbam", "status": "ok", "params": 27_561_496},
            {"backbone": "resnet18", "attention": "se", "status": "ok", "params": 11_778_592},
        ]
    )
    table, misses = reproduction_table(cases)
    assert list(table["model"]) == ["SE-ResNet-50", "ResNeXt-50 + CBAM"]
    assert [entry.model for entry in misses] == ["ResNeXt-50 + CBAM"]
    text = paper_reproduction(types.SimpleNamespace(cases=cases))
    assert "| SE-ResNet-50 | resnet50 | se(bias=True) | 28.09 M | 28.09 M | +0.00 | 28,088,024 | yes |" in text
    assert "Totals that do not reproduce:\n- ResNeXt-50 + CBAM" in text
    assert paper_reproduction(types.SimpleNamespace(cases=cases.iloc[2:])) is None


def test_zoo_specific_rules():
    assert resolve_placement("resnet50", get_attention("coord")) == "block"
    assert resolve_placement("mobilenet_v2", get_attention("coord")) == "expanded"
    with pytest.raises(OptionError, match="'dia' keeps state across blocks and needs a placement that resets it"):
        check_pair("resnet50", "dia", placement_name="block")
    with pytest.raises(OptionError, match="'sk' replaces a convolution, it cannot sit at placement 'block'"):
        check_pair("resnext50_32x4d", "sk", placement_name="block")
    with pytest.raises(OptionError, match="option 'stride' is set by the placement"):
        check_pair("resnext50_32x4d", "sk", {"stride": 2})
    with pytest.raises(OptionError, match="gsop in resnet50 at placement 'stage_end': needs feature maps of at least 3x3"):
        check_pair("resnet50", "gsop", resolution=64)
    with pytest.raises(OptionError, match="fca in resnet18 at placement 'pre_conv': cannot be built at conv1.0 \\(3 channels"):
        check_pair("resnet18", "fca", placement_name="pre_conv")


def test_entry_backbones_restrict_the_grid(project):
    data = {
        "grid": {
            "backbones": ["resnet18", "resnext50_32x4d"],
            "attention": ["none", {"name": "sk", "backbones": ["resnext50_32x4d"]}],
            "batch_sizes": [1],
            "resolutions": [64],
        }
    }
    suite = parse_suite(data, "x.toml", project)
    assert [(c.backbone, c.attention.key) for c in expand_grid(suite, "cpu")] == [
        ("resnet18", "none"), ("resnext50_32x4d", "none"), ("resnext50_32x4d", "sk")
    ]
    data["grid"]["attention"][1]["backbones"] = ["resnet50"]
    with pytest.raises(ConfigError, match="sk names backbone 'resnet50', which is not in the grid"):
        parse_suite(data, "x.toml", project)


def test_complexity_only_suite_runs_from_the_cli_and_reports(project_dir, monkeypatch):
    from attnbench.cli import main
    from attnbench.results import find_runs

    monkeypatch.chdir(project_dir)
    (project_dir / "suites" / "cx.toml").write_text(
        'metrics = ["complexity"]\n[grid]\nbackbones = ["resnet50"]\n'
        'attention = ["none", { name = "se", bias = true }]\nbatch_sizes = [1]\nresolutions = [32]\ndevice = "cpu"\n'
    )
    assert main(["run", "--suite", "cx"]) == 0
    assert main(["report", "results", "--out", "report.md"]) == 0
    report = (project_dir / "report.md").read_text()
    assert "| SE-ResNet-50 | resnet50 | se(bias=True) | 28.09 M | 28.09 M | +0.00 | 28,088,024 | yes |" in report
    assert len(find_runs(project_dir / "results")) == 1
