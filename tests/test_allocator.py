"""Training keeps freed memory in the process: steps that allocate and free the same blocks stop
page-faulting (each check runs in a fresh interpreter, since malloc settings are process-wide)."""

import os
import subprocess
import sys

import pytest

from adegan.training.allocator import glibc

# Three 20 MB blocks allocated, written and freed ten times, as a training step's activations are:
# glibc's default returns the top of its heap to the kernel after each round.
FAULTS = """
import resource, sys
import numpy as np
from adegan.training.allocator import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else False
def step():
    blocks = [np.ones(5 << 20, np.float32) for _ in range(3)]
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, **environment) -> tuple[str, int]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    output = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                            env={**env, **environment}).stdout.split()
    return output[0], int(output[1])


@pytest.mark.skipif(not glibc(), reason="the settings exist in GNU libc only")
def test_freed_blocks_are_reused_without_page_faults():
    _, default_faults = faults("default")
    tuned, tuned_faults = faults("tuned")
    assert tuned == "True" and default_faults > 5000  # 60 MB a round, 4 kB pages: faulted again each round
    assert tuned_faults < default_faults / 20


@pytest.mark.skipif(not glibc(), reason="the settings exist in GNU libc only")
def test_a_users_own_malloc_settings_are_kept():
    tuned, _ = faults("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert tuned == "False"


def test_training_sets_it_before_anything_else(monkeypatch, tmp_path):
    from adegan.training import trainer

    calls = []

    def setup(device):
        calls.append("setup")
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append("malloc"))
    monkeypatch.setattr(trainer.distributed, "setup", setup)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.train(trainer.ModelConfig(), trainer.TrainConfig(source="x"), tmp_path / "run")
    assert calls == ["malloc", "setup"]
