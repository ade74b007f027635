"""Plan records on disk: a plan seen by an earlier process is rebuilt without SymPy or lowering."""
import numpy as np
import pytest

import symgrad
from symgrad import plan_cache, schedule


@pytest.fixture
def fresh_process(tmp_path, monkeypatch):
    """A cache directory of our own, and an empty in-memory plan cache (as in a new process)."""
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(schedule._ProgramCache, "plans", {})

    def restart():
        monkeypatch.setattr(schedule._ProgramCache, "plans", {})

    return restart


def _step(seed):
    rng = np.random.default_rng(seed)
    x = symgrad.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    w = symgrad.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    loss = (x.mm(w).clamp(min=0) ** 2).sum()
    loss.backward()
    return loss.item(), w.grad.numpy(), x.numpy(), w.detach().numpy()


def test_a_plan_from_a_record_computes_the_same_values(fresh_process):
    _step(0)
    fresh_process()
    loss, grad, x, w = _step(1)
    plans = list(schedule._ProgramCache.plans.values())
    assert plans and all(plan.program is None for plan in plans), "rebuilt from records, not from kernels"
    h = x @ w
    assert loss == pytest.approx((np.maximum(h, 0) ** 2).sum(), rel=1e-5)
    np.testing.assert_allclose(grad, x.T @ (2 * np.maximum(h, 0)), rtol=1e-5, atol=1e-6)


def test_inspect_builds_the_kernels_a_record_does_not_hold(fresh_process):
    x = symgrad.ones(3)
    (x * 2 + 1).sum().item()
    fresh_process()
    (x * 2 + 1).sum().item()  # from the record
    inspection = symgrad.inspect((x * 2 + 1).sum())
    assert inspection.kernels, "inspect needs kernel bodies: it plans again rather than use the record"


def test_records_are_keyed_by_the_code_that_makes_plans(fresh_process, monkeypatch):
    key = ((("SUM", (0,), (), "float32", (-1,)),), (((3,), "float32", (1,)),), (0,))
    plan_cache.store(key, {"ir": "old"})
    assert plan_cache.load(key) == {"ir": "old"}
    monkeypatch.setattr(plan_cache, "_code_fingerprint", lambda: "an edited scheduler")
    assert plan_cache.load(key) is None


def test_a_damaged_record_is_ignored(fresh_process, tmp_path):
    x = symgrad.ones(4)
    (x * 3).sum().item()
    for path in tmp_path.rglob("*.plan"):
        path.write_bytes(path.read_bytes()[:-5])  # truncated: fails its checksum
    fresh_process()
    assert (x * 3).sum().item() == 12.0
