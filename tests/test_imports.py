"""Import discipline, checked in a fresh interpreter: the CLI and the runtime never pull in torch."""

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import adegan, adegan.cli, adegan.runtime.score, adegan.runtime.images, adegan.runtime.files
import adegan.training.config
heavy = sorted(m for m in ("torch", "onnx", "tensorrt", "matplotlib", "cv2") if m in sys.modules)
print(",".join(heavy))
"""


def test_cli_and_runtime_import_no_heavy_library():
    output = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "", f"imported at start-up: {output.stdout}"


def test_the_command_line_starts_without_numpy():
    """`adegan --help` and option parsing import only the standard library, typer and adegan's
    own choice tuples (the bundle contract, the config), so they answer at once."""
    script = "import sys, adegan.cli; print('numpy' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_runtime_never_imports_training_or_export():
    from pathlib import Path

    runtime = Path(__file__).resolve().parents[1] / "adegan" / "runtime"
    for source in runtime.glob("*.py"):
        text = source.read_text()
        assert "adegan.training" not in text and "adegan.export" not in text, source
        assert "import torch" not in text, source


def test_help_runs_without_torch_installed_in_the_path():
    blocker = "import sys; sys.modules['torch'] = None; sys.argv = ['adegan', '--help']\nfrom adegan.cli import app\napp()"
    output = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True)
    assert output.returncode == 0 and "train" in output.stdout


def test_missing_opencv_names_the_extra_to_install():
    script = ("import sys; sys.modules['cv2'] = None\n"
              "from adegan.runtime.images import decode_image\n"
              "try:\n    decode_image(b'abc')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert output.stdout.startswith("MissingDependencyError") and "adegan[cpu]" in output.stdout


def test_the_package_opens_no_network_listener():
    """adegan serves nothing: no sockets, HTTP servers or RPC in the package. Should one ever be
    added, it must bind to 127.0.0.1 by default (docs/reliability.md) and this test must change."""
    import re

    package = Path(__file__).resolve().parents[1] / "adegan"
    pattern = re.compile(r"^\s*(import|from)\s+(socket|socketserver|http\.server|xmlrpc\.server|asyncio|"
                         r"uvicorn|flask|fastapi|aiohttp|grpc|zmq)\b|\.bind\(|\.listen\(|start_server\(", re.M)
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []
