"""Derivative formulas you can read, check and paste: symgrad.formula on the seed programs and two models.

Run: python examples/formulas.py                            (prints the formulas)
     python examples/formulas.py --markdown docs/formulas.md  (writes the documentation page)

Each formula is checked the way a reader would check it: the printed text is evaluated with numpy, the
arrays bound to their names, and compared with the gradient symgrad computes.
"""
import argparse
import io

import numpy as np
import sympy

import symgrad as torch
from symgrad import nn

numpy_namespace = torch.formula.numpy_namespace


def reproduces(f, expected) -> bool:
    """Does eval(str(f)) with numpy give `expected`?"""
    values = {name: t.detach().numpy() for name, t in f.inputs.items()}
    got = np.broadcast_to(eval(str(f), numpy_namespace(**values)), f.shape)
    return bool(np.allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6))


def seed1(out):
    out.section("Seed 1: the mean of a square", """
        x = torch.ones(2, 2, requires_grad=True)
        out = (3 * (x + 2) ** 2).mean()
        f = torch.formula(out, x)""")
    x = torch.ones(2, 2, requires_grad=True)
    f = torch.formula((3 * (x + 2) ** 2).mean(), x)
    same = sympy.expand(sympy.sympify(str(f)) - sympy.Rational(3, 2) * (sympy.Symbol("x") + 2)) == 0
    out.result(f"""\
        str(f)      {f}
        f.latex()   {f.latex()}
        f.sympy()   {f.sympy()!r}   (SymPy agrees it is 3*(x + 2)/2: {same})
        f.evaluate()
        {_indent(repr(f.evaluate()), 8)}""")


def seed3(out):
    out.section("Seed 3: integer weights", """
        a = torch.tensor([1.0], requires_grad=True)
        w1, w2, w3, w4 = torch.tensor(1), torch.tensor(2), torch.tensor(3), torch.tensor(4)
        L = (w3 * (w1 * a) + w4 * (w2 * a)) ** 2
        f = torch.formula(L, a)""")
    a = torch.tensor([1.0], requires_grad=True)
    w1, w2, w3, w4 = torch.tensor(1), torch.tensor(2), torch.tensor(3), torch.tensor(4)
    L = (w3 * (w1 * a) + w4 * (w2 * a)) ** 2
    f = torch.formula(L, a)
    L.backward()
    out.result(f"""\
        str(f)      {f}
        a.grad      {a.grad}   numpy reproduces it: {reproduces(f, a.grad)}""")


def two_layer(out):
    out.section("The two-layer network (torch's tutorial, by hand)", """
        x, y = torch.randn(64, 1000), torch.randn(64, 10)
        w1 = torch.randn(1000, 100, requires_grad=True)
        w2 = torch.randn(100, 10, requires_grad=True)
        loss = ((x @ w1).clamp(min=0) @ w2 - y).pow(2).sum()
        fs = torch.formula(loss, [w1, w2])""")
    torch.manual_seed(0)
    x, y = torch.randn(64, 1000), torch.randn(64, 10)
    w1 = torch.randn(1000, 100, requires_grad=True)
    w2 = torch.randn(100, 10, requires_grad=True)
    loss = ((x @ w1).clamp(min=0) @ w2 - y).pow(2).sum()
    fs = torch.formula(loss, [w1, w2])
    loss.backward()
    matrix = fs["w2"].sympy()
    out.result(f"""\
        print(fs)
        {_indent(str(fs), 8)}
        print(fs.pretty())
        {_indent(fs.pretty(), 8)}
        numpy reproduces w1.grad: {reproduces(fs["w1"], w1.grad)}, w2.grad: {reproduces(fs["w2"], w2.grad)}
        print(fs["w2"].sympy())   # a SymPy matrix expression: {type(matrix).__name__} of shape {matrix.shape}
        {matrix}""")


def model(out, loss_name):
    out.section(f"Linear + ReLU + Linear with {loss_name}", f"""
        model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
        x = torch.randn(8, 5)
        target = {"torch.randn(8, 3)" if loss_name == "MSELoss" else "torch.tensor([0, 2, 1, 1, 0, 2, 2, 1])"}
        loss = nn.{loss_name}()(model(x), target)
        fs = torch.formula(loss, model.parameters())   # names: weight0, bias0, weight2, bias2""")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(8, 5)
    target = torch.randn(8, 3) if loss_name == "MSELoss" else torch.tensor([0, 2, 1, 1, 0, 2, 2, 1])
    loss = getattr(nn, loss_name)()(model(x), target)
    fs = torch.formula(loss, model.parameters())
    loss.backward()
    checks = ", ".join(f"{name}: {reproduces(f, p.grad)}" for (name, f), p in zip(fs.items(), model.parameters()))
    out.result(f"""\
        print(fs.pretty())
        {_indent(fs.pretty(), 8)}
        numpy reproduces the gradients: {checks}""")


def gallery(out):
    out.section("A few more", """
        x = torch.randn(3, 4, requires_grad=True)
        torch.formula(x.softmax(1)[:, 0].sum(), x)
        torch.formula(x.logsumexp(1).sum(), x)
        torch.formula((x.tanh() * x.sigmoid()).mean(), x)
        torch.formula(x.norm(), x)""")
    torch.manual_seed(0)
    x = torch.randn(3, 4, requires_grad=True)
    lines = []
    for out_ in (x.softmax(1)[:, 0].sum(), x.logsumexp(1).sum(), (x.tanh() * x.sigmoid()).mean(), x.norm()):
        f = torch.formula(out_, x)
        (g,) = torch.autograd.grad(out_, x, retain_graph=True)
        lines.append(f"{f}    (numpy reproduces it: {reproduces(f, g)})")
    out.result("\n".join(lines), dedent=False)


def deep_chain(out):
    out.section("A chain 300 steps deep", """
        x = torch.tensor([0.5, -0.2, 1.5], requires_grad=True)
        y = x
        for _ in range(300):
            y = y.tanh()
        f = torch.formula(y.sum(), x)""")
    x = torch.tensor([0.5, -0.2, 1.5], requires_grad=True)
    y = x
    for _ in range(300):
        y = y.tanh()
    f = torch.formula(y.sum(), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    text = str(f)
    depth = max(_nesting_depths(text))
    out.result(f"""\
        str(f)[:160]   {text[:160]}...
        str(f)[-80:]   ...{text[-80:]}
        {len(text)} characters, brackets nested {depth} deep at most, {len(f.where())} names
        numpy reproduces it: {reproduces(f, g)}""")


def _nesting_depths(text):
    level = 0
    for char in text:
        level += char in "([{"
        level -= char in ")]}"
        yield level


def _indent(text, spaces):
    return text.replace("\n", "\n" + " " * spaces)


class Printer:
    """Sections as plain text, or as a Markdown page."""

    def __init__(self, markdown: bool):
        self.markdown = markdown
        self.buffer = io.StringIO()

    def section(self, title, code):
        code = _dedent(code)
        if self.markdown:
            self.buffer.write(f"\n## {title}\n\n```python\n{code}\n```\n\n")
        else:
            self.buffer.write(f"\n== {title}\n{code}\n\n")

    def result(self, text, dedent=True):
        text = _dedent(text) if dedent else text
        self.buffer.write(f"```\n{text}\n```\n" if self.markdown else text + "\n")


def _dedent(text):
    import textwrap

    return textwrap.dedent(text).strip("\n")


HEADER = """\
# Derivative formulas

<!-- Generated by `python examples/formulas.py --markdown docs/formulas.md`; do not edit by hand. -->

`symgrad.formula(output, wrt, names=None, grad_output=None)` writes d(output)/d(wrt) the way a person
would: `str(f)` is one line of Python over your tensors' names that numpy evaluates to the gradient
(bind the names to arrays and the vocabulary `symgrad.formula.VOCABULARY` to numpy:
`eval(str(f), symgrad.formula.numpy_namespace(x=x_array, ...))`). `f.pretty()` is the Unicode form,
`f.latex()` LaTeX, `f.sympy()` a SymPy expression, `f.evaluate()` the gradient computed from the printed text.

* Names: `names={"x": x}`, else the caller's variable names where unambiguous (a module variable names its
  parameters by path: `0.weight` -> `weight0`), else `x0, x1, ...`. Intermediate values are written in
  terms of the inputs; a subexpression printed more than once is named once when that shortens the text:
  `(h := maximum(x @ w1, 0))` in `str(f)` (Python's assignment expression, so the line still evaluates),
  `where h = maximum(x @ w1, 0)` in `f.pretty()`.
* Matrix parts in matrix notation (`@`, `.T`); elementwise parts simplified by SymPy (constants folded,
  `x*1`, `x+0`, double negation and chains of scalar factors collapsed, size-guarded); gradients of
  broadcast inputs summed back with `sum(..., axis=..., keepdims=...)`, with the factors that are the same
  along the summed axes outside (`2*b*sum(x**2, axis=0)`); `exp(y)/sum(exp(y), axis=k, keepdims=True)`
  written `softmax(y, axis=k)`.
* Deep graphs (hundreds of steps) stay one valid line: when definitions written at first use would nest
  too deep for Python's parser, they come first, in order: `(h := ..., h1 := ..., formula)[-1]`.
* Vocabulary: `exp log sqrt tanh sin cos abs sign erf isnan maximum minimum where sum max min prod reshape
  transpose broadcast_to take_along_axis pad arange array zeros trunc inf nan pi`, all numpy's, plus `erf`
  (scipy.special.erf), `softmax(x, axis=)`, `scatter_add(base, index, src, axis=)`, `assemble(shape,
  regions, *parts)` and `window(x, shape, maps)` where numpy has no expression. Comparisons print as `>`,
  `>=`, `==`, combined with `&`, `|`, `~`.
* `f.sympy()`: elementwise formulas as ordinary SymPy; formulas with `@` or `.T` as SymPy matrix
  expressions (MatrixSymbol, MatMul, Transpose, HadamardProduct, elementwise functions as
  ElementwiseApplyFunction): `f.sympy().subs(f.sympy_values()).doit()` computes the gradient.
  `f.sympy(cse=True)` gives the named subexpressions as definitions, like `sympy.cse`.
* `symgrad.to_dot(tensor)` gives Graphviz DOT text of the forward and backward graphs (`svg="g.svg"`
  draws it with Graphviz's `dot` when installed).
* `symgrad.inspect(tensor)` shows the compiled programs computing a tensor, forward and backward;
  `symgrad.inspect(fn, *args)` runs `fn` and shows every program it runs (a training step: forward and
  backward, then the optimizer's update), each labelled with the line that ran it: each kernel's formula
  over your tensors' names (`str()`), its LLVM IR and the assembly (`listing()`).
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", metavar="PATH", help="write the documentation page to PATH")
    args = parser.parse_args()
    out = Printer(markdown=bool(args.markdown))
    seed1(out)
    seed3(out)
    two_layer(out)
    model(out, "MSELoss")
    model(out, "CrossEntropyLoss")
    gallery(out)
    deep_chain(out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(HEADER + out.buffer.getvalue())
    else:
        print(out.buffer.getvalue().strip("\n"))


if __name__ == "__main__":
    main()
