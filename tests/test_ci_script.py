"""The CI script parses, and names the shared data and weights the way the README says."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"


def test_ci_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(CI)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_script_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    script = CI.read_text()
    assert "make test" in readme and "make test" in script
    for variable in ("BUSI_DIR", "VGG16_WEIGHTS"):
        assert variable in readme and variable in script
