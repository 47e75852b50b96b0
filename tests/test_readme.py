"""The README's two commands exist, do what it says, and CI runs the test one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def make_target(name: str) -> str:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(rf"^{name}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)


def test_quick_start_has_exactly_two_make_commands():
    assert quick_start_commands() == ["make smoke", "make test"]


def test_smoke_target_runs_smoke_suite_then_report():
    recipe = make_target("smoke")
    assert "attnbench run --suite smoke" in recipe
    assert recipe.index("run --suite smoke") < recipe.index("attnbench report results/")


def test_targets_create_their_own_environment():
    makefile = (ROOT / "Makefile").read_text()
    assert "-m venv" in makefile
    for target in ("smoke", "test"):
        assert re.search(rf"^{target}: \$\(STAMP\)", makefile, re.M)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "set -e" in ci


def test_ci_recipes_find_the_run_directory_and_hide_no_failure():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Latency gate in CI", 1)[1].split("### pytest-benchmark", 1)[0]
    recipes = re.findall(r"```(?:yaml|bash)\n(.*?)```", section, re.S)
    shell = next(recipe for recipe in recipes if "set -euo pipefail" in recipe)
    actions = next(recipe for recipe in recipes if "runs-on:" in recipe)
    for recipe in (shell, actions):
        assert "attnbench latest results/ci --suite gpu-latency" in recipe
        assert "ls -d" not in recipe and "|| true" not in recipe
