"""The thread policy (promptregister/threads.py): no more PyTorch threads than free cores, and onnxruntime
threads that do not spin. The speed it buys is measured by bench/contention.py, not here."""

from __future__ import annotations

import subprocess
import sys
import time

import onnxruntime
import pytest
import torch

from promptregister import threads
from promptregister.threads import ThreadBudget, others_busy_cores, threads_for

BUSY_LOOP = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n"


def spinning_entry(options) -> object:
    try:
        return options.get_session_config_entry(threads.ONNX_SPINNING_ENTRY)
    except Exception:  # onnxruntime raises for an entry that was never set
        return None


def test_onnx_sessions_do_not_spin_unless_the_policy_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.POLICY_VARIABLE, raising=False)
    assert spinning_entry(threads.onnx_session_options(onnxruntime)) == "0"
    monkeypatch.setenv(threads.POLICY_VARIABLE, "off")
    assert spinning_entry(threads.onnx_session_options(onnxruntime)) is None


def test_others_busy_cores_subtracts_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    # over 2 s of wall time the machine was 75 % busy on 4 cores (3 cores); this process used 2 CPU seconds
    assert others_busy_cores((0, 0, 10.0, 100.0), (750, 1000, 12.0, 102.0)) == pytest.approx(2.0)
    assert others_busy_cores((0, 0, 10.0, 100.0), (100, 1000, 12.0, 102.0)) == 0.0  # never negative
    assert others_busy_cores((5, 5, 1.0, 1.0), (5, 5, 1.0, 1.0)) == 0.0  # no time passed


@pytest.mark.parametrize("free, most, expected", [(2.0, 2, 2), (1.6, 2, 2), (1.4, 2, 1), (0.2, 2, 1),
                                                    (7.9, 4, 4), (-1.0, 8, 1)])
def test_a_core_counts_when_at_least_half_of_it_is_free(free: float, most: int, expected: int) -> None:
    assert threads_for(free, most) == expected


@pytest.mark.skipif(not threads.PROC_STAT.exists(), reason="the budget reads /proc/stat (Linux only)")
def test_the_budget_drops_to_one_thread_when_every_core_is_taken_and_restores_afterwards() -> None:
    before = torch.get_num_threads()
    budget = ThreadBudget(interval_s=0.0)
    assert budget.enabled and budget.threads == before
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(budget.usable)]
    try:
        time.sleep(0.5)
        budget.adapt()  # starts a measurement interval that has the loops running throughout
        time.sleep(1.0)
        assert budget.adapt() == 1
        assert torch.get_num_threads() == 1
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
        budget.restore()
    assert torch.get_num_threads() == before


def test_policy_off_leaves_the_thread_count_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.POLICY_VARIABLE, "off")
    budget = ThreadBudget(interval_s=0.0)
    assert not budget.enabled
    assert budget.adapt() == torch.get_num_threads()


def test_onnx_sessions_take_no_more_threads_than_omp_num_threads_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime ignores OMP_NUM_THREADS, which is how a batch worker gets its share of the cores."""
    monkeypatch.delenv(threads.POLICY_VARIABLE, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.onnx_session_options(onnxruntime).intra_op_num_threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.onnx_session_options(onnxruntime).intra_op_num_threads == 0  # onnxruntime's own choice
