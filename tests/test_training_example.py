"""docs/training.md: its code block runs, the loss goes down, and torch trained from the
same initial weights gives the same losses step by step (float32 tolerance)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "training.md"


@pytest.fixture(scope="module")
def example():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    namespace = {"__name__": "training_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_loss_goes_down(example):
    losses = example["train_numpy"]()
    assert len(losses) == 10
    assert losses[-1] < 0.6 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_losses_match_torch_step_by_step(example):
    pytest.importorskip("torch")
    ours = example["train_numpy"]()
    theirs = example["train_torch"]()
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-7)


def test_doc_shows_the_losses_it_prints(example):
    shown = re.search(r"convreg: ([0-9. ]+)", DOC.read_text()).group(1).split()
    ours = example["train_numpy"]()
    assert [f"{v:.5f}" for v in ours] == shown
