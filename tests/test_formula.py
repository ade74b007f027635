"""symgrad.formula: derivative formulas that read like the hand-written ones and evaluate in numpy.

Every formula here is checked the way a user would check it: the printed text is evaluated with numpy
(arrays bound to the names, `symgrad.formula.VOCABULARY` bound to numpy functions) and compared with the
gradient symgrad computes (`.backward()` or `autograd.grad`).
"""
import pathlib
import re
import sys

import numpy as np
import pytest
import sympy

import symgrad
from symgrad.formula import numpy_namespace

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from opcases import CASES, draw, quietly  # noqa: E402


def numpy_value(f, **extra):
    """eval(str(f)) with numpy, the formula's own inputs bound to their values."""
    values = {name: t.detach().numpy() for name, t in f.inputs.items()}
    values.update(extra)
    return np.broadcast_to(eval(str(f), numpy_namespace(**values)), f.shape)


def assert_round_trip(f, expected, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(numpy_value(f), np.asarray(expected), rtol=rtol, atol=atol, err_msg=str(f))


# -- the seed derivations (the acceptance of issue 5) ------------------------------------------------
def test_seed1_mean_of_square_is_three_halves_of_x_plus_two():
    x = symgrad.ones(2, 2, requires_grad=True)
    out = (3 * (x + 2) ** 2).mean()
    f = symgrad.formula(out, x)
    assert str(f) == "3*(x + 2)/2"
    expected = sympy.Rational(3, 2) * (sympy.Symbol("x") + 2)
    assert sympy.simplify(sympy.sympify(str(f)) - expected) == 0
    assert sympy.expand(f.sympy() - expected) == 0
    out.backward()
    assert_round_trip(f, x.grad.numpy())


def test_seed3_integer_weights_give_242_a():
    a = symgrad.tensor([1.0], requires_grad=True)
    d = 3 * (1 * a) + 4 * (2 * a)
    L = d ** 2
    assert str(symgrad.formula(L, a)) == "242*a"


def test_seed3_weights_held_in_integer_tensors_are_numbers():
    a = symgrad.tensor([1.0], requires_grad=True)
    w1, w2, w3, w4 = symgrad.tensor(1), symgrad.tensor(2), symgrad.tensor(3), symgrad.tensor(4)
    L = (w3 * (w1 * a) + w4 * (w2 * a)) ** 2
    f = symgrad.formula(L, a)
    assert str(f) == "242*a"
    L.backward()
    assert_round_trip(f, a.grad.numpy())


def two_layer(seed=0, n=16, d_in=12, h=8, d_out=4):
    symgrad.manual_seed(seed)
    x, y = symgrad.randn(n, d_in), symgrad.randn(n, d_out)
    w1 = symgrad.randn(d_in, h, requires_grad=True)
    w2 = symgrad.randn(h, d_out, requires_grad=True)
    return x, y, w1, w2


def test_two_layer_network_in_matrix_notation():
    x, y, w1, w2 = two_layer()
    loss = ((x @ w1).clamp(min=0) @ w2 - y).pow(2).sum()
    fs = symgrad.formula(loss, [w1, w2])
    assert list(fs) == ["w1", "w2"]
    assert str(fs["w1"]) == "x.T @ where(x @ w1 >= 0, 2*(maximum(x @ w1, 0) @ w2 - y) @ w2.T, 0)"
    assert str(fs["w2"]) == "(h := maximum(x @ w1, 0)).T @ (2*(h @ w2 - y))"
    assert fs["w2"].pretty() == "hᵀ @ (2⋅(h @ w2 - y))\n  where h = maximum(x @ w1, 0)"
    for f in fs.values():
        assert len(str(f)) <= 200
    loss.backward()
    assert_round_trip(fs["w1"], w1.grad.numpy())
    assert_round_trip(fs["w2"], w2.grad.numpy())


def test_two_layer_network_formulas_are_deterministic():
    texts = set()
    for _ in range(3):
        x, y, w1, w2 = two_layer()
        loss = ((x @ w1).clamp(min=0) @ w2 - y).pow(2).sum()
        texts.add(str(symgrad.formula(loss, [w1, w2])))
    assert len(texts) == 1


# -- every op of the op table: the printed formula, evaluated by numpy, is the gradient ---------------
LETTERS = "abcdefg"


def case_formulas(case):
    """(formulas keyed by input letter, gradients symgrad computes) for one case of tests/opcases.py."""
    arrays = draw(case, "float64")
    tensors = [symgrad.tensor(a, requires_grad=spec.differentiable) for spec, a in zip(case.inputs, arrays)]
    names = dict(zip(LETTERS, tensors))
    out = quietly(lambda: case.fn(symgrad, *tensors))
    grad_output = None
    if out.dim() > 0:
        grad_output = names["g"] = symgrad.tensor(np.random.default_rng(0).normal(size=tuple(out.shape)))
    wrt = [t for spec, t in zip(case.inputs, tensors) if spec.differentiable]
    formulas = symgrad.formula(out, wrt, names=names, grad_output=grad_output)
    return formulas, symgrad.autograd.grad(out, wrt, grad_output, retain_graph=True)


# NOTE: compared with symgrad's own gradient (what the formula describes), so a case's known gradient bug
# (opcases' grad_bug, checked against torch elsewhere) is no reason to skip it here
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_op_table_round_trip(case):
    formulas, grads = case_formulas(case)
    assert list(formulas) == [k for k, spec in zip(LETTERS, case.inputs) if spec.differentiable]
    for f, g in zip(formulas.values(), grads):
        text = str(f)
        assert "\n" not in text
        compile(text, "<formula>", "eval")   # one line of Python
        with np.errstate(all="ignore"):
            value = numpy_value(f)
        np.testing.assert_allclose(value, g.numpy(), rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=text)
        assert str(f) == text   # printing twice prints the same


# -- models: Linear + ReLU + Linear with MSELoss and CrossEntropyLoss -----------------------------------
@pytest.mark.parametrize("loss_name", ["MSELoss", "CrossEntropyLoss"])
def test_linear_relu_linear_model(loss_name):
    symgrad.manual_seed(0)
    model = symgrad.nn.Sequential(symgrad.nn.Linear(5, 4), symgrad.nn.ReLU(), symgrad.nn.Linear(4, 3))
    x = symgrad.randn(8, 5)
    target = symgrad.randn(8, 3) if loss_name == "MSELoss" else symgrad.tensor([0, 2, 1, 1, 0, 2, 2, 1])
    loss = getattr(symgrad.nn, loss_name)()(model(x), target)
    fs = symgrad.formula(loss, model.parameters())
    assert list(fs) == ["weight0", "bias0", "weight2", "bias2"]   # the module's parameter paths, as names
    assert set(fs["weight0"].inputs) >= {"x", "weight0", "bias0", "weight2", "bias2", "target"}
    loss.backward()
    for f, p in zip(fs.values(), model.parameters()):
        assert_round_trip(f, p.grad.numpy())
        np.testing.assert_allclose(f.evaluate().numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-6)
    if loss_name == "MSELoss":
        # the number comes out of the sum, as people write it
        assert str(fs["bias2"]) == "sum(maximum(x @ weight0.T + bias0, 0) @ weight2.T + bias2 - target, axis=0)/12"
    else:
        # the gradient of cross entropy is softmax(logits) - one_hot(target) (over the batch)
        assert "softmax(" in str(fs["weight2"]) and "target[:, None] == arange(3)" in str(fs["weight2"])
        assert "exp(" not in str(fs["weight2"]) and "-100" not in str(fs["weight2"])
        assert fs["weight2"].pretty().startswith("(sum(h1, axis=1, keepdims=True)⋅softmax(h2 @ weight2ᵀ + bias2, "
                                                 "axis=1) - h1)ᵀ @ h2\n")
        for f in fs.values():
            assert len(str(f)) <= 220


# -- random compositions ----------------------------------------------------------------------------
UNARY = [lambda a: a.exp(), lambda a: a.tanh(), lambda a: a.sin(), lambda a: a.sigmoid(), lambda a: a.relu(),
         lambda a: a.abs(), lambda a: (a * a + 1).sqrt(), lambda a: (a * a + 1).log(), lambda a: -a,
         lambda a: a * 3, lambda a: a ** 3, lambda a: a.softmax(-1), lambda a: a.sum(-1, keepdim=True),
         lambda a: a.mean(0), lambda a: a.clamp(min=-0.5, max=0.5), lambda a: a.t().t() * 2]
BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (b * b + 1),
          lambda a, b: symgrad.maximum(a, b), lambda a, b: symgrad.where(a > b, a, b * 2)]


def random_composition(seed):
    """A random expression of x (3, 4), w (4,) and v (1, 4), maybe through a matrix product."""
    rng = np.random.default_rng(seed)
    x = symgrad.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    w = symgrad.tensor(rng.normal(size=(4,)), requires_grad=True)
    v = symgrad.tensor(rng.normal(size=(1, 4)), requires_grad=True)
    m = symgrad.tensor(rng.normal(size=(4, 2)), requires_grad=True)
    values = [x, w, v]
    for _ in range(rng.integers(2, 6)):
        if rng.random() < 0.5:
            a = values[rng.integers(len(values))]
            values.append(UNARY[rng.integers(len(UNARY))](a))
        else:
            a, b = (values[k] for k in rng.integers(len(values), size=2))
            values.append(BINARY[rng.integers(len(BINARY))](a, b))
    out = values[-1]
    if out.dim() == 2 and out.shape[-1] == 4 and rng.random() < 0.5:
        out = out @ m
    return out.sum(), {"x": x, "w": w, "v": v, "m": m}


@pytest.mark.parametrize("seed", range(40))
def test_random_composition_round_trip(seed):
    out, names = random_composition(seed)
    fs = symgrad.formula(out, list(names.values()), names=names)
    grads = symgrad.autograd.grad(out, list(names.values()), retain_graph=True, allow_unused=True)
    for f, g in zip(fs.values(), grads):
        expected = np.zeros(f.shape) if g is None else g.numpy()
        with np.errstate(all="ignore"):
            assert_round_trip(f, expected, rtol=1e-7, atol=1e-9)


def test_docstring_examples_run():
    import doctest

    module = sys.modules["symgrad.formula"]   # `symgrad.formula` itself is the function
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 20


# -- inspect -----------------------------------------------------------------------------------------
def test_inspect_a_tensor_shows_its_forward_and_backward_programs():
    symgrad.manual_seed(0)
    x, target = symgrad.randn(8, 5), symgrad.randn(8, 3)
    w = symgrad.randn(5, 3, requires_grad=True)
    loss = ((x @ w).tanh() - target).pow(2).mean()
    inspection = symgrad.inspect(loss)
    assert [p.label for p in inspection.programs] == ["forward", "backward"]
    forward, backward = inspection["forward"], inspection["backward"]
    assert forward.formulas()[0].endswith("= x @ w")
    assert "loss = " in str(forward)
    # dw = x.T @ (d loss / d (x @ w)): the product reads x transposed, the elementwise kernel has tanh's
    # derivative, every buffer named after the tensor it holds
    assert backward.formulas()[-1].startswith("w.grad = x.T @ t")
    assert any("1 - tanh(" in line and "target[i]" in line for line in backward.formulas())
    assert w.grad is None and not loss._node.realized    # nothing ran, nothing accumulated
    for program in inspection.programs:
        functions = re.findall(r'^define [^\n]*@"(\w+)"', program.ir, re.MULTILINE)
        assert functions[-1] == "program" and len(functions) == len(program.kernels) + 1
        listing = program.listing()
        for k, kernel in enumerate(program.kernels):   # each kernel's formula beside its IR
            formula_at = listing.index(f"-- kernel {k}: ")
            assert listing.index(f'@"{functions[k]}"', formula_at) < listing.index("-- ", formula_at + 3)
        assert "program:" in program.assembly() and program.assembly() in listing
    # a gradient that does not require grad: only the program computing it
    (g,) = symgrad.autograd.grad(loss, w)
    only = symgrad.inspect(g, names={"weights": w})
    assert [p.label for p in only.programs] == ["forward"] and "weights" in str(only)
    g.numpy()
    with pytest.raises(ValueError, match="already computed"):
        symgrad.inspect(g)


def test_inspect_a_function_records_the_programs_it_runs():
    symgrad.manual_seed(0)
    model = symgrad.nn.Sequential(symgrad.nn.Linear(5, 4), symgrad.nn.ReLU(), symgrad.nn.Linear(4, 3))
    optimizer = symgrad.optim.SGD(model.parameters(), lr=0.1)
    x, target = symgrad.randn(8, 5), symgrad.randn(8, 3)

    def step(inputs, expected):
        optimizer.zero_grad()
        loss = symgrad.nn.MSELoss()(model(inputs), expected)
        loss.backward()
        optimizer.step()
        return loss

    before = model[0].weight.detach().numpy().copy()
    inspection = symgrad.inspect(step, x, target)
    labels = [p.label for p in inspection.programs]
    assert labels == ["loss.backward()", "after the call: its result and pending updates"]
    backward, update = inspection.programs
    text = str(backward)
    # the forward and backward of the step, named after the model's parameters (by path), the
    # function's arguments (inputs) and variables (loss), and the gradients (weight0.grad)
    assert "t8 = inputs @ weight0.T" in text and "loss = " in text
    assert "weight0.grad = " in text and text.split("weight0.grad = ")[1].startswith("t")
    assert "bias2.grad[i] = " in text
    # SGD's update, deferred by symgrad to the next program: computed at the end of the call
    assert "weight0[i] = s0*weight0.grad[i] + weight0[i]" in str(update)
    assert update.scalars == {"s0": -0.1}
    # the call really ran: the parameters moved
    assert not np.allclose(model[0].weight.detach().numpy(), before)


def test_inspect_a_function_counts_repeated_programs_and_computes_its_result():
    x = symgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)

    def train():
        for _ in range(4):
            x.grad = None
            (x * x).sum().backward()
            with symgrad.no_grad():
                x.sub_(0.1 * x.grad)
        return (x * 2).sum()

    inspection = symgrad.inspect(train)
    runs = {p.label: p.runs for p in inspection.programs}
    assert sum(runs.values()) >= 4 and max(runs.values()) >= 2     # one program, run again and again
    assert inspection.programs[-1].label == "after the call: its result and pending updates"
    assert any(line.endswith("2*x[i]") for line in inspection.programs[-1].formulas())
    np.testing.assert_allclose(x.detach().numpy(), np.array([1.0, 2.0, 3.0]) * 0.8 ** 4, rtol=1e-6)


# -- to_dot ------------------------------------------------------------------------------------------
def test_to_dot_draws_forward_and_backward_graphs():
    x = symgrad.tensor([[1.0, 2.0]], requires_grad=True)
    w = symgrad.tensor([[1.0], [2.0]], requires_grad=True)
    out = (x @ w).tanh().sum()
    text = symgrad.to_dot(out)
    assert text.startswith("digraph symgrad {\n") and text.endswith("}\n")
    assert text.count("{") == text.count("}")
    forward, backward = text.split("subgraph cluster_backward")
    for name in ("SumBackward0", "TanhBackward0", "MmBackward0"):
        assert f'label="{name}"' in forward
    assert 'label="x (1, 2)"' in forward and 'label="w (2, 1)"' in forward
    # every recorded edge is drawn: sum <- tanh <- mm <- (x, w)
    assert len([line for line in forward.splitlines() if "->" in line]) == 4
    assert 'label="MATMUL (2, 1)"' in backward and 'label="d/dw"' in backward and 'label="d/dx"' in backward
    assert symgrad.to_dot(out) == text   # deterministic


FAKE_DOT = """\
import sys
# a stand-in for Graphviz's dot: checks its arguments and wraps the DOT text it reads in an SVG
if sys.argv[1:] != ["-Tsvg"]:
    sys.exit(f"expected -Tsvg, got {sys.argv[1:]}")
text = sys.stdin.read()
if "FAIL" in text:
    sys.exit("syntax error in line 1 near 'FAIL'")
sys.stdout.write('<svg xmlns="http://www.w3.org/2000/svg"><!--\\n' + text + '--></svg>\\n')
"""


def fake_dot_on_path(directory, monkeypatch):
    program = directory / "dot"
    program.write_text(f"#!{sys.executable}\n{FAKE_DOT}")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))


def test_to_dot_renders_svg_through_the_dot_program(tmp_path, monkeypatch):
    fake_dot_on_path(tmp_path, monkeypatch)
    x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    out = (x * x).sum()
    target = tmp_path / "graph.svg"
    text = symgrad.to_dot(out, svg=str(target))
    assert text == symgrad.to_dot(out)   # the DOT text, as without svg=
    svg = target.read_text()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg">') and svg.rstrip().endswith("</svg>")
    assert text in svg   # dot was given exactly the DOT text, on its standard input
    from symgrad.formula import render_svg

    assert render_svg("digraph { a -> b }") == '<svg xmlns="http://www.w3.org/2000/svg"><!--\ndigraph { a -> b }--></svg>\n'
    with pytest.raises(RuntimeError, match="dot failed .*syntax error in line 1 near 'FAIL'"):
        render_svg("digraph { FAIL }", str(tmp_path / "broken.svg"))
    assert not (tmp_path / "broken.svg").exists()


def test_to_dot_without_the_dot_program_warns_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty directory: no dot anywhere
    x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    target = tmp_path / "graph.svg"
    with pytest.warns(RuntimeWarning, match="Graphviz's `dot` program is not installed"):
        text = symgrad.to_dot((x * x).sum(), svg=str(target))
    assert text.startswith("digraph symgrad {") and not target.exists()
    from symgrad.formula import render_svg

    assert render_svg("digraph { a -> b }") is None


def test_to_dot_of_a_tensor_without_history():
    text = symgrad.to_dot(symgrad.ones(2))
    assert "cluster_backward" not in text and text.endswith("}\n")


def test_deep_chain_is_walked_without_recursion_limits_and_stays_fast():
    # SymPy functions of functions ask assumptions exponentially in the nesting; the builder cuts them
    x = symgrad.tensor([0.5, 0.2], requires_grad=True)
    y = x
    for _ in range(60):
        y = y.tanh()
    f = symgrad.formula(y.sum(), x)
    (g,) = symgrad.autograd.grad(y.sum(), x)
    assert_round_trip(f, g.numpy())


def chain(x, depth):
    """`depth` elementwise steps of x, a few kinds in turn (a value used twice makes the pending graph
    grow fast, so it is computed midway: the formula must still be written in x)."""
    steps = [lambda a: a.tanh(), lambda a: a * 1.01 + 0.1, lambda a: a.sin() * a, lambda a: a.sigmoid(),
             lambda a: (a * a + 1).log()]
    y = x
    for k in range(depth):
        y = steps[k % len(steps)](y)
    return y


def assert_valid_one_line_python(text, max_nesting=120):
    from symgrad.formula import _nesting

    assert "\n" not in text and "\x00" not in text
    assert _nesting(text) <= max_nesting   # Python's parser stops at 200 nested brackets
    compile(text, "<formula>", "eval")


def tanh_chain(x, depth):
    for _ in range(depth):
        x = x.tanh()
    return x


@pytest.mark.parametrize("depth, make", [(200, chain), (500, tanh_chain)], ids=["mixed-200", "tanh-500"])
def test_deep_chains_print_bounded_nesting_and_round_trip(depth, make):
    torch = pytest.importorskip("torch")   # the oracle (symgrad itself would compile a 500-deep kernel)
    values = [0.5, -0.2, 1.5]
    x = symgrad.tensor(values, dtype=symgrad.float64, requires_grad=True)
    out = make(x, depth).sum()
    x_torch = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(make(x_torch, depth).sum(), x_torch)
    # no recursion that grows with the graph's depth: a few hundred frames are enough for 500 steps
    base = len(__import__("inspect").stack())
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(base + 400)
    try:
        f = symgrad.formula(out, x)
        text, pretty, latex = str(f), f.pretty(), f.latex()
    finally:
        sys.setrecursionlimit(limit)
    assert_valid_one_line_python(text)
    assert set(f.inputs) == {"x"}       # in terms of x, not of values computed on the way
    assert "array(" not in text
    assert_round_trip(f, expected.numpy(), rtol=1e-9, atol=1e-12)
    names = [name for name, _ in f.where()]
    assert len(names) >= depth // 10          # the chain's values are named once each, not repeated
    assert pretty.count("\n  where ") == len(names) and latex.count(" = ") >= len(names)
    assert len(text) < 60 * depth


def test_short_formulas_define_names_where_first_used_and_deep_ones_up_front():
    from symgrad.formula import MAX_NESTING, _nesting, _one_line, _token

    x = symgrad.tensor([0.5, -0.2], requires_grad=True)
    text = str(symgrad.formula(tanh_chain(x, 12).sum(), x))
    assert not text.endswith(")[-1]") and text.startswith("(1 - (h := tanh(tanh(x)))**2)*")
    # a definition is written where Python first reads its name, bare as a whole call argument
    assert _one_line(f"g({_token(1)}) + {_token(0)}", ["exp(x)", f"tanh({_token(0)})"], ["h", "h1"]) == \
        "g(h1 := tanh(h := exp(x))) + h"
    # each definition first read inside the next: written inline they would nest 100 deep, so they
    # come first, in order, in a tuple whose last item is the formula
    depth = 100
    definitions = ["tanh(x)"] + [f"tanh({_token(k)})" for k in range(depth - 1)]
    text = _one_line(f"2*{_token(depth - 1)}", definitions, [f"h{k}" for k in range(depth)])
    assert text.startswith("(h0 := tanh(x), h1 := tanh(h0), h2 := tanh(h1), ") and text.endswith(", 2*h99)[-1]")
    assert _nesting(text) <= MAX_NESTING
    expected = 0.5
    for _ in range(depth):
        expected = np.tanh(expected)
    assert eval(text, numpy_namespace(x=0.5)) == pytest.approx(2 * expected)


def test_a_value_computed_midway_is_written_from_its_recorded_history():
    # y * y doubles the pending graph's size estimate each step: symgrad computes it midway (and drops
    # the graph), autograd keeps the steps, and the formula is written in x from them
    x = symgrad.tensor([0.3, -0.4], dtype=symgrad.float64, requires_grad=True)
    y = x
    for _ in range(14):
        y = y * y * 0.5 + x
    from symgrad.graph import postorder

    computed = [n for n in postorder([y._node]) if n.op == "BUFFER" and n is not x._node]
    assert computed   # values computed on the way: y's pending graph starts from them, not from x
    f = symgrad.formula(y.sum(), x)
    (g,) = symgrad.autograd.grad(y.sum(), x)
    assert set(f.inputs) == {"x"} and "array(" not in str(f)
    assert_round_trip(f, g.numpy(), rtol=1e-6, atol=1e-9)


def test_names_caller_variables_explicit_names_and_fallbacks():
    weights = symgrad.tensor([1.0, 2.0], requires_grad=True)
    assert str(symgrad.formula((weights * weights).sum(), weights)) == "2*weights"
    assert str(symgrad.formula((weights * weights).sum(), weights, names={"v": weights})) == "2*v"
    alias = weights   # noqa: F841 - two names for one tensor: neither is used
    assert str(symgrad.formula((weights * weights).sum(), weights)) == "2*x0"
    with pytest.raises(ValueError, match="cannot name"):
        symgrad.formula(weights.sum(), weights, names={"exp": weights})


def test_simplification_folds_constants_identities_and_scalar_chains():
    x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    assert str(symgrad.formula((-(-x) * 1 + 0).sum(), x)) == "broadcast_to(1, (2,))"
    assert str(symgrad.formula((2 * (3 * (x * 4)) / 8).sum(), x)) == "broadcast_to(3, (2,))"
    assert str(symgrad.formula(((x * 2) ** 2).sum(), x)) == "8*x"


def test_broadcast_gradients_are_sums_over_axes():
    x = symgrad.tensor(np.ones((3, 4)), requires_grad=True)
    b = symgrad.tensor(np.arange(4.0), requires_grad=True)
    f = symgrad.formula(((x * b) ** 2).sum(), b)
    assert str(f) == "2*b*sum(x**2, axis=0)"   # b is the same along axis 0: it comes out of the sum
    assert_round_trip(f, symgrad.autograd.grad(((x * b) ** 2).sum(), b)[0].numpy())


def test_softmax_is_recognized_and_numbers_leave_sums():
    x = symgrad.tensor(np.random.default_rng(1).normal(size=(3, 4)), requires_grad=True)
    cases = {
        # d/dx logsumexp(x) is softmax(x): the max subtracted for stability (and its inf guard) is gone
        "softmax(x, axis=1)": x.logsumexp(1).sum(),
        # d/dx log_softmax(x)[:, 1] = onehot - softmax
        "(h := pad(broadcast_to(1, (3, 1)), ((0, 0), (1, 2)))) - sum(h, axis=1, keepdims=True)*softmax(x, axis=1)":
            x.log_softmax(1)[:, 1].sum(),
        # s * (g - sum(g * s)): sum(g*exp(y))/sum(exp(y)) is sum(g*softmax(y))
        "((h := pad(broadcast_to(1, (3, 1)), ((0, 0), (0, 3)))) - sum(h*(h1 := softmax(x, axis=1)), axis=1, "
        "keepdims=True))*h1": x.softmax(1)[:, 0].sum(),
        "(-sum(x*(h := softmax(x, axis=0)), axis=0, keepdims=True) + x + 1)*h": (x.softmax(0) * x).sum(),
    }
    for text, out in cases.items():
        f = symgrad.formula(out, x)
        assert str(f) == text
        assert_round_trip(f, symgrad.autograd.grad(out, x)[0].numpy(), rtol=1e-9, atol=1e-12)
    # numbers and values broadcast along the summed axis come out of a sum; others stay in
    b = symgrad.tensor(np.arange(4.0), requires_grad=True)
    c = symgrad.tensor(np.arange(3.0).reshape(3, 1))
    out = (c * x * b * -3).sum()
    f = symgrad.formula(out, b)
    assert str(f) == "-3*sum(c*x, axis=0)"
    assert_round_trip(f, symgrad.autograd.grad(out, b)[0].numpy(), rtol=1e-9, atol=1e-12)


def test_pretty_latex_sympy():
    x = symgrad.tensor(np.ones((4, 3)))
    w = symgrad.tensor(np.ones((3, 2)), requires_grad=True)
    g = symgrad.tensor(np.ones((4, 2)))
    f = symgrad.formula(x @ w, w, grad_output=g)
    assert str(f) == "x.T @ g"
    assert f.pretty() == "xᵀ @ g"
    assert f.latex() == r"x^{\mathsf{T}} g"
    X, G = sympy.MatrixSymbol("x", 4, 3), sympy.MatrixSymbol("g", 4, 2)
    assert f.sympy() == sympy.MatMul(sympy.Transpose(X), G)


# -- f.sympy(): SymPy matrix expressions where a formula has matrix products -------------------------
def numpy_of_matrix_expression(e, values):
    """A SymPy matrix expression computed with numpy, each class by its SymPy meaning (a test oracle
    for f.sympy(), much faster than SymPy's own .doit() on float matrices)."""
    from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

    if e in values:
        return np.asarray(values[e], dtype=float)
    if isinstance(e, sympy.OneMatrix):
        return np.ones(e.shape)
    if isinstance(e, sympy.MatrixBase):
        return np.array(e.tolist(), dtype=float)
    if isinstance(e, ElementwiseApplyFunction):
        function = sympy.lambdify(e.function.variables, e.function.expr, "numpy")
        return np.vectorize(function, otypes=[float])(numpy_of_matrix_expression(e.expr, values))
    if not isinstance(e, sympy.MatrixExpr):
        return float(e.xreplace({k: v for k, v in values.items() if not isinstance(k, sympy.MatrixSymbol)}))
    args = [numpy_of_matrix_expression(a, values) for a in e.args]
    if isinstance(e, sympy.MatMul):
        out = args[0]
        for a in args[1:]:
            out = out @ a if np.ndim(out) == 2 and np.ndim(a) == 2 else out * a
        return out
    if isinstance(e, sympy.MatAdd):
        return sum(args)
    if isinstance(e, sympy.HadamardProduct):
        return np.prod(args, axis=0)
    if isinstance(e, sympy.HadamardPower):
        return args[0] ** args[1]
    if isinstance(e, sympy.Transpose):
        return args[0].T
    raise NotImplementedError(type(e).__name__)


def sympy_value(f, oracle="numpy"):
    e = f.sympy()
    values = f.sympy_values()
    if oracle == "sympy":   # SymPy computes it itself
        result = e.xreplace(values).doit()
        result = result.as_explicit() if hasattr(result, "as_explicit") else result
        return np.array(sympy.Matrix(result).evalf().tolist(), dtype=float).reshape(f.shape)
    return np.reshape(numpy_of_matrix_expression(e, {k: np.array(v.tolist(), dtype=float)
                                                     if isinstance(v, sympy.MatrixBase) else v
                                                     for k, v in values.items()}), f.shape)


def test_sympy_of_the_two_layer_network_is_a_matrix_expression():
    symgrad.manual_seed(0)
    x, y = symgrad.randn(4, 3, dtype=symgrad.float64), symgrad.randn(4, 2, dtype=symgrad.float64)
    w1 = symgrad.randn(3, 5, dtype=symgrad.float64, requires_grad=True)
    w2 = symgrad.randn(5, 2, dtype=symgrad.float64, requires_grad=True)
    loss = ((x @ w1).clamp(min=0) @ w2 - y).pow(2).sum()
    fs = symgrad.formula(loss, [w1, w2])
    loss.backward()
    X, W1, W2, Y = (sympy.MatrixSymbol(n, *t.shape) for n, t in [("x", x), ("w1", w1), ("w2", w2), ("y", y)])
    for name, grad in (("w1", w1.grad), ("w2", w2.grad)):
        e = fs[name].sympy()
        assert isinstance(e, sympy.MatrixExpr) and e.shape == tuple(grad.shape)
        assert e.free_symbols == {X, W1, W2, Y}           # the inputs, nothing opaque
        assert e.has(sympy.MatMul(X, W1))                 # x @ w1, as a matrix expression
        assert e.has(W2.T) == (name == "w1")
        # relu is max(t, 0) of every entry; ordinary SymPy inside
        relu = [a for a in e.atoms(sympy.Lambda) if a.expr.has(sympy.Max)]
        assert relu and relu[0].expr == sympy.Max(relu[0].variables[0], 0)
        np.testing.assert_allclose(sympy_value(fs[name], oracle="sympy"), grad.numpy(), rtol=1e-9)
        np.testing.assert_allclose(sympy_value(fs[name]), grad.numpy(), rtol=1e-9)
    # x.T @ where(x @ w1 >= 0, ...): the product is the last thing done, where() an indicator product
    e1 = fs["w1"].sympy()
    assert isinstance(e1, sympy.MatMul) and e1.args[0] == X.T and isinstance(e1.args[1], sympy.HadamardProduct)
    e2 = fs["w2"].sympy()
    assert isinstance(e2, sympy.MatMul) and isinstance(e2.args[0], sympy.Transpose)


@pytest.mark.parametrize("loss_name", ["MSELoss", "CrossEntropyLoss"])
def test_sympy_of_a_model_computes_its_gradients(loss_name):
    symgrad.manual_seed(0)
    model = symgrad.nn.Sequential(symgrad.nn.Linear(3, 4), symgrad.nn.ReLU(), symgrad.nn.Linear(4, 3)).double()
    x = symgrad.randn(5, 3, dtype=symgrad.float64)
    target = symgrad.randn(5, 3, dtype=symgrad.float64) if loss_name == "MSELoss" else symgrad.tensor([0, 2, 1, 1, 0])
    loss = getattr(symgrad.nn, loss_name)()(model(x), target)
    fs = symgrad.formula(loss, model.parameters())
    loss.backward()
    for f, p in zip(fs.values(), model.parameters()):
        e = f.sympy()
        assert isinstance(e, sympy.MatrixExpr)
        assert {s.name for s in e.free_symbols} <= {"x", "target", "weight0", "bias0", "weight2", "bias2"}
        np.testing.assert_allclose(sympy_value(f), p.grad.numpy().reshape(f.shape), rtol=1e-9, atol=1e-12)
    if loss_name == "MSELoss":   # the bias gradient of the last layer: a column sum, a row vector
        assert fs["bias2"].sympy().shape == (1, 3)


def test_sympy_of_op_table_cases_with_matrix_products():
    checked = []
    for case in CASES:
        formulas, grads = case_formulas(case)
        for f, g in zip(formulas.values(), grads):
            if not any(p.kind in ("matmul", "T") for p in f.parts.values()) or len(f.shape) > 2:
                continue
            e = f.sympy()
            if not isinstance(e, sympy.MatrixExpr) or any(s.name not in f.inputs for s in e.free_symbols):
                continue
            for oracle in ("sympy", "numpy"):   # SymPy's own .subs(...).doit(), and the numpy reading
                np.testing.assert_allclose(sympy_value(f, oracle), g.numpy().reshape(f.shape), rtol=1e-7,
                                           atol=1e-9, err_msg=f"{case.id} ({oracle}): {f}")
            checked.append(case.id)
    assert len(set(checked)) >= 5, checked


def test_sympy_of_elementwise_formulas_is_ordinary_sympy_and_deep_ones_come_as_definitions():
    x = symgrad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    e = symgrad.formula((x.exp() * x).sum(), x).sympy()
    X = sympy.Symbol("x")
    assert not isinstance(e, sympy.MatrixExpr) and sympy.simplify(e - (X + 1) * sympy.exp(X)) == 0
    y = x
    for _ in range(400):
        y = y.tanh()
    f = symgrad.formula(y.sum(), x)
    with pytest.raises(ValueError, match="cse=True"):
        f.sympy()
    definitions, e = f.sympy(cse=True)
    assert [str(name) for name, _ in definitions] == [name for name, _ in f.where()]
    assert definitions[0][1] == sympy.tanh(sympy.tanh(X))


def test_non_scalar_output_needs_grad_output_as_backward_does():
    x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        symgrad.formula(x * 2, x)


def test_unused_parameter_has_zero_formula():
    x = symgrad.tensor([1.0, 2.0], requires_grad=True)
    z = symgrad.tensor([1.0], requires_grad=True)
    fs = symgrad.formula(x.sum(), [x, z])
    assert str(fs["z"]) == "0"


def test_seed3_with_a_ones_leaf_keeps_a_in_the_formula():
    # ones(..., requires_grad=True) is a stored variable, not the constant 1 that x * 1 folds away
    a = symgrad.ones(1, requires_grad=True)
    w1, w2, w3, w4 = symgrad.tensor(1), symgrad.tensor(2), symgrad.tensor(3), symgrad.tensor(4)
    loss = (w3 * (w1 * a) + w4 * (w2 * a)) ** 2
    assert str(symgrad.formula(loss, a)) == "242*a"
