"""The CI script parses, and names the shared data and weights the way the README says."""

import re
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


def _run_steps(tmp_path, steps: str) -> subprocess.CompletedProcess:
    """Run ``steps`` (bash) after .ci/run's step helpers (timed, behind, joined), as CI's own lines run."""
    script = CI.read_text()
    start, end = script.index("timings=()"), script.index("timed install")
    harness = tmp_path / "harness.sh"
    harness.write_text("set -euo pipefail\n" + script[start:end] + steps)
    return subprocess.run(["bash", str(harness)], capture_output=True, text=True)


def test_ci_script_times_each_step_and_reports_them_even_when_one_fails(tmp_path):
    """The step timer of .ci/run, run on stand-in steps: times printed as each ends, and all at exit."""
    script = CI.read_text()
    result = _run_steps(tmp_path, "timed first true\ntimed second false\ntimed never true\n")
    assert result.returncode == 1  # the failing step stops the script, as in CI
    assert "ci: first took" in result.stdout and "(exit 0)" in result.stdout
    assert "ci: second took" in result.stdout and "(exit 1)" in result.stdout
    assert "never" not in result.stdout
    summary = result.stdout[result.stdout.index("ci: step times"):]
    assert "first" in summary and "second" in summary and "total" in summary
    assert "timed install make install\n" in script and "timed tests make test " in script
    assert "behind book _build/ci-book.log make book\n" in script and "joined book\n" in script


def test_ci_script_runs_a_step_behind_another_and_reports_both_whichever_fails(tmp_path):
    """A step run in the background (the book, beside the tests): its output printed once it has
    ended, its time recorded, and its failure, or the foreground step's, failing the script."""
    for behind, front, expected in (("false", "true", 1), ("true", "false", 1), ("true", "true", 0)):
        result = _run_steps(tmp_path, f"behind slow {tmp_path}/slow.log bash -c 'sleep 1; echo from-slow; {behind}'\n"
                                      f"status=0\ntimed fast {front} || status=$?\njoined slow\nexit $status\n")
        assert result.returncode == expected, (behind, front, result.stdout)
        out = result.stdout
        assert out.index("ci: fast took") < out.index("from-slow") < out.index("ci: slow took")
        summary = out[out.index("ci: step times"):]
        assert "fast" in summary and "slow" in summary and "total" in summary
        assert re.search(rf"slow \d+ s \(exit {0 if behind == 'true' else 1}\)", summary), summary


def test_a_step_behind_is_timed_to_its_own_end_not_to_the_wait(tmp_path):
    """The book ending before the tests: its time is its own, not the tests' that were waited for."""
    result = _run_steps(tmp_path, f"behind short {tmp_path}/short.log sleep 1\ntimed long sleep 4\njoined short\n")
    assert result.returncode == 0, result.stderr
    taken = {name: int(s) for name, s in re.findall(r"ci: (\w+) took (\d+) s", result.stdout)}
    assert taken["long"] >= 4 and taken["short"] <= 2, result.stdout
