"""symgrad.save / symgrad.load: the .npz format round-trips tensors, modules' and optimizers' state,
and never executes code from a file."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import symgrad


def _round_trip(obj, path=None):
    if path is not None:
        symgrad.save(obj, path)
        return symgrad.load(path)
    buffer = io.BytesIO()
    symgrad.save(obj, buffer)
    buffer.seek(0)
    return symgrad.load(buffer)


@pytest.mark.parametrize("value", [
    symgrad.tensor([[1.5, -2.0], [0.0, 3.25]]),
    symgrad.tensor([1, 2, 3]),
    symgrad.tensor([True, False]),
    symgrad.tensor(2.5, dtype=symgrad.float64),
    symgrad.zeros(0, 3),
])
def test_tensors_round_trip_with_dtype_and_shape(value):
    loaded = _round_trip(value)
    assert loaded.dtype is value.dtype and loaded.shape == value.shape
    np.testing.assert_array_equal(loaded.numpy(), value.numpy())


def test_nested_containers_and_python_values_round_trip():
    obj = {"a": [1, 2.5, "three", None, True], "b": (symgrad.ones(2), {"c": float("inf")}), 3: "int key",
           "array": np.arange(4)}
    loaded = _round_trip(obj)
    assert loaded["a"] == [1, 2.5, "three", None, True]
    assert isinstance(loaded["b"], tuple) and loaded["b"][1] == {"c": float("inf")}
    assert loaded[3] == "int key"
    np.testing.assert_array_equal(loaded["array"], np.arange(4))
    assert loaded["b"][0].tolist() == [1.0, 1.0]


def test_model_and_optimizer_checkpoint_round_trip(tmp_path):
    symgrad.manual_seed(0)
    model = symgrad.nn.Sequential(symgrad.nn.Linear(3, 4), symgrad.nn.ReLU(), symgrad.nn.Linear(4, 1))
    optimizer = symgrad.optim.Adam(model.parameters(), lr=0.01)
    x, y = symgrad.randn(5, 3), symgrad.randn(5, 1)
    for _ in range(3):
        optimizer.zero_grad()
        symgrad.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    path = tmp_path / "checkpoint.pt"
    loaded = _round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, path)
    assert path.exists() and not (tmp_path / "checkpoint.pt.npz").exists()
    assert list(loaded["model"]) == list(model.state_dict())
    clone = symgrad.nn.Sequential(symgrad.nn.Linear(3, 4), symgrad.nn.ReLU(), symgrad.nn.Linear(4, 1))
    clone.load_state_dict(loaded["model"])
    clone_opt = symgrad.optim.Adam(clone.parameters(), lr=0.5)
    clone_opt.load_state_dict(loaded["optimizer"])
    assert clone_opt.param_groups[0]["lr"] == 0.01 and clone_opt.state[clone[0].weight]["step"] == 3.0
    for opt, net in ((optimizer, model), (clone_opt, clone)):
        opt.zero_grad()
        symgrad.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_parameters_keep_their_type_and_shared_tensors_stay_shared():
    p = symgrad.nn.Parameter(symgrad.ones(2))
    loaded = _round_trip([p, p, p.detach()])
    assert isinstance(loaded[0], symgrad.nn.Parameter) and loaded[0].requires_grad
    assert loaded[0] is loaded[1]
    assert not loaded[2].requires_grad


def test_unsupported_objects_are_refused():
    with pytest.raises(TypeError, match="cannot store objects of type object"):
        symgrad.save({"x": object()}, io.BytesIO())


def test_files_with_pickles_or_without_a_manifest_are_refused():
    pickled = io.BytesIO()
    np.savez(pickled, __symgrad__=np.frombuffer(json.dumps(
        {"format": "symgrad-npz", "version": 1, "object": {"ndarray": "a0"}}).encode(), np.uint8),
        a0=np.array([object()], dtype=object))
    pickled.seek(0)
    with pytest.raises(ValueError, match="allow_pickle"):
        symgrad.load(pickled)
    plain = io.BytesIO()
    np.savez(plain, x=np.ones(2))
    plain.seek(0)
    with pytest.raises(RuntimeError, match="no __symgrad__ manifest"):
        symgrad.load(plain)


def test_the_file_is_a_zip_of_npy_arrays_and_a_json_manifest():
    buffer = io.BytesIO()
    symgrad.save({"w": symgrad.ones(2)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert sorted(archive.namelist()) == ["__symgrad__.npy", "a0.npy"]
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as arrays:
        manifest = json.loads(arrays["__symgrad__"].tobytes())
    assert manifest == {"format": "symgrad-npz", "version": 1, "object": {
        "dict": [["w", {"tensor": "a0", "requires_grad": False, "parameter": False}]], "ordered": False}}
