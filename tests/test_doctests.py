"""The runnable examples in the docstrings of codegen and of symgrad's core modules (nn, optim and
formula have their own: test_nn_doctests.py, test_formula.py). An example whose output is wrong fails
here instead of misleading a reader."""
import doctest
import importlib
import pkgutil

import pytest

import codegen
import symgrad

# NOTE: symgrad.formula is also the name of a function in symgrad's namespace; test_formula runs its examples
SKIPPED = {"symgrad.formula", "symgrad.nn", "symgrad.optim", "symgrad.models"}
MODULES = ["codegen", *(f"codegen.{m.name}" for m in pkgutil.iter_modules(codegen.__path__)),
           "symgrad", *(f"symgrad.{m.name}" for m in pkgutil.iter_modules(symgrad.__path__))]


@pytest.mark.parametrize("name", [n for n in MODULES if n not in SKIPPED])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
