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
