"""`symgrad.tensor` the module, for code that needs its private helpers (`symgrad.tensor` the package
attribute is the `tensor()` function, which shadows the module of the same name)."""
import importlib

_t = importlib.import_module("symgrad.tensor")
