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
