"""The package as a whole: what importing costs, and the examples in docstrings."""

import doctest
import subprocess
import sys

from waveunet import sizes


def test_size_arithmetic_examples_run():
    result = doctest.testmod(sizes, raise_on_error=False, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('waveunet')))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_importing_the_trainer_does_not_import_a_task():
    modules = imported_after("import waveunet.train")
    assert "waveunet.train.trainer" in modules
    assert not {m for m in modules if m.startswith(("waveunet.audio", "waveunet.image", "waveunet.separation"))}
    assert not {"waveunet.train.audio", "waveunet.train.image", "waveunet.data.cache", "waveunet.data.musdb18"} & modules


def test_importing_the_package_imports_almost_nothing():
    assert imported_after("import waveunet") == {"waveunet", "waveunet.errors"}


def test_ci_runs_the_readmes_test_command_with_the_onnx_extra():
    """CI (.ci/run) runs exactly the README's test command, which installs the onnx extra so that tests/test_onnx.py runs."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1 and f"```bash\n{ci[0]}\n```" in (root / "README.md").read_text()
    assert 'pip install -q -e ".[test,onnx]"' in ci[0]
