"""The runnable examples in the docstrings of symgrad.nn, symgrad.optim and symgrad.serialization."""
import doctest
import importlib

import pytest

MODULES = [
    "symgrad.nn", "symgrad.nn.module", "symgrad.nn.parameter", "symgrad.nn.linear", "symgrad.nn.activation",
    "symgrad.nn.container", "symgrad.nn.dropout", "symgrad.nn.sparse", "symgrad.nn.normalization",
    "symgrad.nn.loss", "symgrad.nn.functional", "symgrad.nn.init", "symgrad.nn.utils",
    "symgrad.optim", "symgrad.optim.optimizer", "symgrad.optim.sgd", "symgrad.optim.adam", "symgrad.optim.rmsprop",
    "symgrad.optim.adagrad", "symgrad.optim.lr_scheduler", "symgrad.serialization",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or name == "symgrad.nn.parameter"
