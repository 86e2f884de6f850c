"""A production install (no `sandbox` extra) carries no fakes: the CLI and the definitions load without them."""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

SANDBOX_ONLY = ("faker", "trustme")
# Each sandbox-only package is made unimportable (None in sys.modules makes `import` raise ImportError).
BLOCK = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in SANDBOX_ONLY)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=300)


def test_the_cli_and_definitions_load_without_the_sandbox_extra():
    loaded = _python(
        "from click.testing import CliRunner\n"
        "import sync_pipelines.cli, sync_pipelines.definitions\n"
        "result = CliRunner().invoke(sync_pipelines.cli.main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('sync_pipelines.sandbox')))\n"
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
    # The block is real: the sandbox itself does need the extra.
    sandbox = _python("import sync_pipelines.sandbox\n")
    assert sandbox.returncode != 0 and "halted; None in sys.modules" in sandbox.stderr


def test_the_fakes_are_the_sandbox_extra_and_dev_installs_it():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    name = project["name"]

    def names(requirements: list[str]) -> set[str]:
        return {Requirement(requirement).name for requirement in requirements}

    assert not names(project["dependencies"]) & set(SANDBOX_ONLY)
    assert names(project["optional-dependencies"]["sandbox"]) >= set(SANDBOX_ONLY)
    assert f"{name}[sandbox]" in project["optional-dependencies"]["dev"]
