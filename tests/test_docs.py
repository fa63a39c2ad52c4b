"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    quickstart, tests = blocks[0].strip(), blocks[1].strip()
    assert "adegan train samples/fashion-mnist/train" in quickstart and "adegan evaluate" in quickstart
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_sample_data_is_bundled_with_its_licence():
    samples = ROOT / "samples" / "fashion-mnist"
    assert "MIT" in (samples / "LICENSE").read_text()
    assert len(list((samples / "train" / "good").glob("*.png"))) == 2000
    assert len(list((samples / "test" / "good").glob("*.png"))) == 300
    assert len(list((samples / "test" / "trouser").glob("*.png"))) == 300
