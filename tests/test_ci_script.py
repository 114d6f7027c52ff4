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


def test_ci_script_times_each_step_and_reports_them_even_when_one_fails(tmp_path):
    """The step timer of .ci/run, run on stand-in steps: times printed as each ends, and all at exit."""
    script = CI.read_text()
    start, end = script.index("timings=()"), script.index("timed install")
    harness = tmp_path / "harness.sh"
    harness.write_text("set -euo pipefail\n" + script[start:end] + "timed first true\ntimed second false\n"
                       "timed never true\n")
    result = subprocess.run(["bash", str(harness)], capture_output=True, text=True)
    assert result.returncode == 1  # the failing step stops the script, as in CI
    assert "ci: first took" in result.stdout and "(exit 0)" in result.stdout
    assert "ci: second took" in result.stdout and "(exit 1)" in result.stdout
    assert "never" not in result.stdout
    summary = result.stdout[result.stdout.index("ci: step times"):]
    assert "first" in summary and "second" in summary and "total" in summary
    for step, target in (("install", "install"), ("tests", "test"), ("book", "book")):
        assert f"timed {step} make {target}\n" in script
