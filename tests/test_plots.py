"""Figures readable on their own: labelled ticks, no label over another, every setting named, lines that
coincide said to."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from attnbench.report import tables
from attnbench.report.plots import (
    Styles, _versus_batch, batch_axis, coinciding, cost_plot, flops_plot, value_axis,
)
from attnbench.report.view import RunView
from attnbench.results import read_run

SMOKE = Path(__file__).parent / "data" / "results" / "20260105T100000-a1b2c3"


def labelled_ticks(figure: Figure, axis) -> list[str]:
    """Tick labels drawn within the axis's range."""
    figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text() and low <= t.get_position()[
        1 if axis.axis_name == "y" else 0] <= high]


@pytest.mark.parametrize(("values", "scale", "least"), [([8.9, 27.0], "linear", 4), ([21.0, 3000.0], "log", 5)])
def test_value_axis_labels_enough_ticks(values: list[float], scale: str, least: int):
    figure = Figure()
    axes = figure.subplots()
    axes.plot([1, 2], values)
    value_axis(axes, "y", values)
    assert axes.get_yscale() == scale
    labels = labelled_ticks(figure, axes.yaxis)
    assert len(labels) >= least, labels
    assert all("e" not in label and "$" not in label for label in labels)  # plain numbers: 20, 50, 100
    if scale == "log":
        assert {"50", "100", "200", "500", "1000"} <= set(labels)


def test_batch_axis_ticks_every_batch_size():
    figure = Figure()
    axes = figure.subplots()
    axes.plot([1, 8, 32, 128], [1, 2, 3, 4])
    batch_axis(axes, [1, 8, 32, 128])
    assert axes.get_xscale() == "log"
    assert labelled_ticks(figure, axes.xaxis) == ["1", "8", "32", "128"]


def test_coinciding_lines_are_drawn_once_and_named_together():
    base = pd.Series([12.5, 45.0], index=[1, 4])
    clusters = coinciding({"none": base, "se": base * 1.006, "cbam": base * 1.1, "eca": base * 0.995})
    assert clusters == [["none", "se", "eca"], ["cbam"]]
    table = pd.DataFrame({"attention": ["none", "none", "se", "se", "cbam", "cbam"], "batch_size": [1, 4] * 3,
                          "peak_mem_mib": [12.5, 45.0, 12.6, 45.3, 13.9, 50.0]})
    figure = Figure()
    axes = figure.subplots()
    _versus_batch(axes, table, "peak_mem_mib", None, Styles(table["attention"]))
    assert axes.get_legend_handles_labels()[1] == ["none, se (within 1%)", "cbam"]


def test_lines_of_the_batch_figure_stand_a_little_apart_so_their_intervals_show():
    table = pd.DataFrame({"attention": ["none", "none", "cbam", "cbam"], "batch_size": [1, 2] * 2,
                          "latency_ms_median": [10.0, 20.0, 13.0, 26.0], "low": [9.0, 19.0, 12.0, 25.0],
                          "high": [11.0, 21.0, 14.0, 27.0]})
    figure = Figure()
    axes = figure.subplots()
    _versus_batch(axes, table, "latency_ms_median", ("low", "high"), Styles(table["attention"]))
    none, cbam = (container.lines[0].get_xdata() for container in axes.containers)
    assert list(none) < [1, 2] < list(cbam) and all(abs(x / b - 1) < 0.02 for x, b in zip([*none, *cbam], [1, 2] * 2))
    assert labelled_ticks(figure, axes.xaxis) == ["1", "2"]  # the ticks still give the batch sizes


@pytest.fixture(scope="module")
def run() -> RunView:
    return RunView(read_run(SMOKE))


def test_cost_plot_names_its_setting_and_what_did_not_finish(run: RunView):
    key, group = next(iter(tables.groups(run.overhead)))
    figure = cost_plot(run, key, group)
    axes = figure.axes[0]
    assert axes.get_title() == "What each module costs: resnet18 at 64 px, float32, eval, cpu"
    assert [t.get_text() for t in axes.get_yticklabels()] == ["eca\n(b=4: oom)", "se", "cbam\n(b=4: error)"]
    assert axes.get_legend_handles_labels()[1][:1] == ["batch 1"] and "batch 4" in axes.get_legend().texts[1].get_text()
    assert "latency of one forward over none (%)" in axes.get_xlabel()


def test_flops_plot_has_one_panel_per_setting_and_no_text_on_the_points(run: RunView):
    figure = flops_plot(run)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    # resnet18 at batch 1, where all three modules finished (eca and cbam did not at batch 4)
    assert [axes.get_title() for axes in panels] == ["resnet18 at 64 px, float32, eval, cpu, batch 1",
                                                     "resnet50 at 64 px, float32, eval, cpu, batch 4"]
    assert all(not axes.texts for axes in panels)  # modules are told apart by the legend, never by labels
    assert [t.get_text() for t in figure.legends[0].texts] == ["se", "cbam", "eca", "latency % = FLOPs %"]
