import subprocess
import sys
from pathlib import Path


def test_evaluation_imports_neither_django_nor_scipy():
    code = (
        "import sys, evaluation; "
        "print(sorted(m for m in ('django', 'scipy', 'torch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"
