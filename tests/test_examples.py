"""The seed programs in examples/ run unchanged and print what torch prints for them."""
import pathlib
import re
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name, capsys):
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_seed1_mean_of_square(capsys):
    out = run_example("seed1_mean_of_square.py", capsys)
    assert out.startswith("tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)\n"
                          "tensor([[3., 3.],\n        [3., 3.]], grad_fn=<AddBackward0>)\n")
    assert re.search(r"<AddBackward0 object at 0x[0-9a-f]+>", out)
    assert "tensor(27., grad_fn=<MeanBackward0>)" in out
    assert out.endswith("tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])\n")


def test_seed2_loop_until_norm(capsys):
    out = run_example("seed2_loop_until_norm.py", capsys)
    assert "grad_fn=<MulBackward0>" in out
    assert re.search(r"x.grad == 2\*\*k \* v for k = \d+ : True", out)


def test_seed3_integer_weights(capsys):
    assert run_example("seed3_integer_weights.py", capsys) == "tensor([242.])\n"


def test_seed4_linear_regression(capsys):
    out = run_example("seed4_linear_regression.py", capsys)
    assert out == "tensor([2.0000], requires_grad=True)\ntensor([3.0000], requires_grad=True)\n"


def test_seed5_autograd_tools(capsys):
    out = run_example("seed5_autograd_tools.py", capsys).splitlines()
    assert out == ["tensor([2., 2., 2.])", "tensor([ 4.,  8., 12.])", "tensor([14., 18., 22.])",
                   "False None", "False"]


@pytest.mark.slow
def test_demo_runs(capsys):
    out = run_example("demo.py", capsys)
    assert "out = tensor(27., grad_fn=<MeanBackward0>)" in out
    assert re.search(r"symgrad [\d.]+ ms, numpy by hand [\d.]+ ms", out)


def test_two_layer_network_trains(capsys):
    out = run_example("two_layer_network.py", capsys)
    first, last = (float(m) for m in re.findall(r"loss ([0-9.e+-]+)", out))
    assert first > 1e6, "the seed starts from a loss around 1e7"
    assert last < 1e-3 * first
    assert re.search(r"tensor\([0-9.e+-]+, grad_fn=<SumBackward0>\)", out)


def test_sequential_adam_seed(capsys):
    out = run_example("sequential_adam.py", capsys)
    lines = out.splitlines()
    assert [int(line.split()[0]) for line in lines] == [99, 199, 299, 399, 499]
    losses = [float(line.split()[1]) for line in lines]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_formulas_example_and_its_generated_page(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["formulas.py"])
    out = run_example("formulas.py", capsys)
    assert "str(f)      3*(x + 2)/2" in out and "str(f)      242*a" in out
    assert "d/dw1: x.T @ where(x @ w1 >= 0, 2*(maximum(x @ w1, 0) @ w2 - y) @ w2.T, 0)" in out
    assert "d/dw2: (h := maximum(x @ w1, 0)).T @ (2*(h @ w2 - y))" in out
    assert "False" not in out   # every "numpy reproduces it" check holds
    # docs/formulas.md is this script's output, regenerated, never edited by hand
    page = EXAMPLES.parent / "docs" / "formulas.md"
    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, str(EXAMPLES / "formulas.py"), "--markdown", "/dev/stdout"],
                           capture_output=True, text=True, check=True).stdout
    assert page.read_text() == fresh, "docs/formulas.md is stale: python examples/formulas.py --markdown docs/formulas.md"


def test_compiled_step_replays_and_follows_the_scheduler(capsys):
    out = run_example("compiled_step.py", capsys)
    assert "compiled: 297 calls replayed as one native program" in out
    first, last = (float(m) for m in re.findall(r"loss ([0-9.e+-]+)", out))
    assert last < 1e-2 * first
    assert "learning rate now 1.25e-04" in out
