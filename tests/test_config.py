from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.config import (
    expand_grid,
    filter_suite,
    find_config,
    load_project,
    load_suite,
    parse_suite,
)
from attnbench.errors import ConfigError, UnknownNameError
from tests.conftest import write


def suite_from(text: str, project, tmp_path: Path):
    return load_suite(str(write(tmp_path / "s.toml", text)), project)


GRID = """
[grid]
backbones = ["resnet18"]
attention = {attention}
batch_sizes = [1, 2]
resolutions = [32, 64]
"""


def test_project_defaults_and_lookup_from_subfolder(project_dir: Path, monkeypatch):
    sub = project_dir / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert find_config() == project_dir / "attnbench.toml"
    project = load_project()
    assert project.results_dir == project_dir / "results"
    assert project.threads == 1
    assert project.device == "auto"
    assert project.timing.min_repeats == 10


def test_project_without_config_uses_cwd(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = load_project()
    assert project.results_dir == tmp_path / "results" and project.source is None


def test_suite_by_name_and_by_path(project, project_dir: Path):
    by_name = load_suite("tiny", project)
    by_path = load_suite(str(project_dir / "suites" / "tiny.toml"), project)
    assert by_name == by_path
    assert by_name.metrics == ("complexity", "latency")
    assert by_name.timing.max_seconds == 0.05
    assert by_name.timing.max_repeats == 5


def test_labels_default_and_explicit(project, tmp_path):
    suite = suite_from(
        GRID.format(
            attention='["none", "se", { name = "se", bias = true }, '
            '{ name = "se", label = "se-r8", reduction = 8 }, { name = "se", reduction = 16 }]'
        ).replace('"se", {', '{', 1),
        project,
        tmp_path,
    )
    labels = [entry.label for entry in suite.grid.attention]
    assert labels == ["none", "se(bias=True)", "se-r8", "se"]
    assert suite.grid.attention[1].options == (("bias", True),)


def test_star_expands_to_every_registered_module_that_runs_in_the_grid(project, tmp_path):
    from attnbench.backbones import check_pair
    from attnbench.errors import OptionError
    from attnbench.modules import ATTENTION

    def runs(key: str) -> bool:
        try:
            check_pair("resnet18", key, resolution=32)
        except OptionError:
            return False
        return True

    suite = suite_from(GRID.format(attention='["none", "se", "*"]'), project, tmp_path)
    keys = [entry.key for entry in suite.grid.attention]
    assert keys[0] == "none" and sorted(keys[1:]) == sorted(key for key in ATTENTION.names() if runs(key))


def test_grid_expansion_is_the_cartesian_product(project, tmp_path):
    suite = suite_from(GRID.format(attention='["none", "se"]'), project, tmp_path)
    cases = expand_grid(suite, "cpu")
    assert len(cases) == 1 * 2 * 2 * 2
    assert len({case.case_id for case in cases}) == len(cases)
    assert [c.attention.label for c in cases[:4]] == ["none"] * 4
    again = expand_grid(suite_from(GRID.format(attention='["none", "se"]'), project, tmp_path), "cpu")
    assert [c.case_id for c in again] == [c.case_id for c in cases]


def test_filter_suite(project):
    suite = load_suite("tiny", project)
    narrowed = filter_suite(suite, attention=["se"], device="cpu")
    assert [e.label for e in narrowed.grid.attention] == ["se"]
    with pytest.raises(ConfigError, match="--attention 'cbam' is not in suite 'tiny'"):
        filter_suite(suite, attention=["cbam"])
    with pytest.raises(ConfigError, match=r"--attention 'sse' is not in suite 'tiny'; did you mean 'se'\? accepted: none, se"):
        filter_suite(suite, attention=["sse"])
    with pytest.raises(ConfigError, match="--backbone"):
        filter_suite(suite, backbones=["resnet50"])


BAD_SUITES = [
    ("name = 'x'\n[grid\n", "malformed TOML"),
    (GRID.format(attention='["none", "see"]'), "unknown attention 'see': did you mean 'se'"),
    (GRID.format(attention='["none"]').replace("resnet18", "resnet19"), "unknown backbone 'resnet19'"),
    (GRID.format(attention='[]'), "grid.attention: must not be empty"),
    (GRID.format(attention='["none"]').replace("[1, 2]", "[]"), "grid.batch_sizes: must not be empty"),
    (GRID.format(attention='["none"]').replace("[1, 2]", "[0]"), "grid.batch_sizes: values must be >= 1"),
    (GRID.format(attention='["none"]').replace("[1, 2]", '["1"]'), "grid.batch_sizes: expected int"),
    (GRID.format(attention='["none"]').replace("[32, 64]", "[8]"), "8 is too small for resnet18"),
    (GRID.format(attention='["none"]') + "bogus = 1\n", "grid.bogus: unknown key"),
    ("metrics = ['latncy']\n" + GRID.format(attention='["none"]'), "unknown metric 'latncy'"),
    (GRID.format(attention='[{ name = "se", reduce = 8 }]'), "has no option 'reduce'"),
    (GRID.format(attention='[{ label = "x" }]'), "needs a string 'name'"),
    (GRID.format(attention='["se", { name = "se" }]'), "label 'se' appears twice"),
    (GRID.format(attention='["none"]') + "[timing]\nmin_repeats = 5\nmax_repeats = 2\n", "max_repeats"),
    ("description = 'no grid'\n", "grid: required key is missing"),
    (GRID.format(attention='["none"]') + 'device = "tpu"\n', "'tpu' is not accepted; accepted: auto, cpu, cuda"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SUITES)
def test_bad_suites_name_file_key_and_accepted(project, tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        suite_from(text, project, tmp_path)
    assert message in str(caught.value)
    assert str(tmp_path / "s.toml") in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_suite_name_suggests(project):
    with pytest.raises(UnknownNameError, match="unknown suite 'tin': did you mean 'tiny'"):
        load_suite("tin", project)


def test_missing_suite_path(project):
    with pytest.raises(ConfigError, match="not found"):
        load_suite("nowhere/x.toml", project)


def test_bad_project_config(tmp_path):
    path = write(tmp_path / "attnbench.toml", "threads = 0\n")
    with pytest.raises(ConfigError, match="threads: must be between 1 and 1024, got 0"):
        load_project(path)
    # torch's thread pool segfaults on such a count; refused before it gets there
    with pytest.raises(ConfigError, match="threads: must be between 1 and 1024, got 100000"):
        load_project(write(tmp_path / "attnbench.toml", "threads = 100000\n"))


@pytest.mark.parametrize(("cores", "expected"), [({0}, 1), ({0, 1}, 1), (set(range(16)), 15)])
def test_threads_auto_leaves_one_core_to_the_rest_of_the_machine(tmp_path, monkeypatch, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores)
    assert load_project(write(tmp_path / "attnbench.toml", 'threads = "auto"\n')).threads == expected
    assert load_project(write(tmp_path / "attnbench.toml", 'results_dir = "r"\n')).threads == expected  # the default


@pytest.mark.parametrize("value", ['"many"', "1.5", "true"])
def test_threads_that_are_neither_a_count_nor_auto(tmp_path, value):
    with pytest.raises(ConfigError, match=r'threads: expected an integer >= 1 or "auto"'):
        load_project(write(tmp_path / "attnbench.toml", f"threads = {value}\n"))


def test_fingerprint_changes_with_content(project):
    data = {"grid": {"backbones": ["resnet18"], "attention": ["none"], "batch_sizes": [1], "resolutions": [32]}}
    first = parse_suite(data, "x.toml", project)
    assert parse_suite(data, "x.toml", project).fingerprint == first.fingerprint
    assert parse_suite({**data, "description": "changed"}, "x.toml", project).fingerprint != first.fingerprint


def test_star_keeps_each_module_for_the_backbones_it_runs_in(project, tmp_path):
    text = GRID.format(attention='["none", "*"]').replace('["resnet18"]', '["resnet18", "resnext50_32x4d"]')
    suite = suite_from(text, project, tmp_path)
    entries = {entry.key: entry for entry in suite.grid.attention}
    # SK replaces a Bottleneck's 3x3 conv: it runs in ResNeXt-50 only; SE runs in both.
    assert entries["sk"].backbones == ("resnext50_32x4d",)
    assert entries["se"].backbones == ()
    cases = expand_grid(suite, "cpu")
    assert {(c.backbone, c.attention.key) for c in cases if c.attention.key == "sk"} == {("resnext50_32x4d", "sk")}


def test_backbone_slice_keeps_entries_within_the_grid_so_resume_parses_it(project, tmp_path):
    text = GRID.format(attention='["none", { name = "sk", backbones = ["resnext50_32x4d"] }, "se"]')
    suite = suite_from(text.replace('["resnet18"]', '["resnet18", "resnext50_32x4d"]'), project, tmp_path)
    sliced = filter_suite(suite, backbones=["resnet18"])
    assert [entry.label for entry in sliced.grid.attention] == ["none", "se"]  # sk runs in no kept backbone
    assert parse_suite(sliced.raw, "meta.json", project).grid == sliced.grid
    with pytest.raises(ConfigError, match="^--attention 'sk' runs in none of --backbone resnet18; it runs in: resnext50"):
        filter_suite(suite, backbones=["resnet18"], attention=["sk"])
