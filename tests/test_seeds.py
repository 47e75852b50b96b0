"""Fixed random draws: the same weights and inputs in every run, the caller's generator untouched."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch

from attnbench.backbones import build_backbone, build_model
from attnbench.config import CaseSpec, TimingSpec, attention_entry
from attnbench.measure.module_latency import TensorSpec
from attnbench.measure.prepared import prepare_case
from attnbench.seeds import random_input, seeded, stable_seed

CPU = torch.device("cpu")
WEIGHTS_SUM = "float(sum(p.detach().double().sum() for p in build_model('resnet18', 'eca').model.parameters()))"


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_model_built_twice_has_the_same_weights():
    assert same_state(build_model("resnet18", "cbam").model, build_model("resnet18", "cbam").model)
    assert same_state(build_backbone("resnet18"), build_backbone("resnet18"))


def test_a_module_and_none_share_the_backbone_weights_without_a_common_base():
    plain, gated = build_model("resnet18").model, build_model("resnet18", "se").model
    assert torch.equal(plain.conv1.weight, gated.conv1.weight)
    assert torch.equal(plain.layer4[1].conv2.weight, gated.layer4[1].conv2.weight)


def test_building_leaves_the_callers_generator_where_it_was():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_model("resnet18", "eca")
    assert torch.equal(torch.rand(3), expected)


def test_the_weights_do_not_depend_on_the_process():
    """Python salts its own hash() per process; the seeds must not come from it."""
    script = f"from attnbench.backbones import build_model; print({WEIGHTS_SUM})"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout) == eval(WEIGHTS_SUM)


def test_the_cases_of_a_group_get_the_same_input():
    timing = TimingSpec()
    prepared = [
        prepare_case(CaseSpec("resnet18", attention_entry(key), 2, 32, "float32", "eval", "cpu"),
                     build_model("resnet18", key), CPU, timing, time.perf_counter)
        for key in ("none", "se")
    ]
    assert torch.equal(prepared[0].inputs[0], prepared[1].inputs[0])
    other = random_input((1, 3, 32, 32), CPU, torch.float32)
    assert not torch.equal(other, prepared[0].inputs[0][:1])


def test_module_inputs_are_seeded_by_shape_and_keep_their_layout():
    spec = TensorSpec((2, 8, 5, 5), torch.float32, channels_last=True)
    first, second = spec.make(CPU, requires_grad=False), spec.make(CPU, requires_grad=False)
    assert torch.equal(first, second)
    assert first.is_contiguous(memory_format=torch.channels_last)


def test_seeds_differ_by_what_is_drawn():
    assert stable_seed("resnet18") != stable_seed("resnet50")
    with seeded("resnet18", "se"):
        a = torch.rand(4)
    with seeded("resnet18", "eca"):
        b = torch.rand(4)
    with seeded("resnet18", "se"):
        c = torch.rand(4)
    assert torch.equal(a, c) and not torch.equal(a, b)
