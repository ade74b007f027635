"""Seed 1: the gradient of a mean of squares, with torch's printed text.

Run: python examples/seed1_mean_of_square.py
"""
import symgrad as torch

x = torch.ones(2, 2, requires_grad=True)
print(x)
y = x + 2
print(y)
print(y.grad_fn)
z = y * y * 3
out = z.mean()
print(z, out)
out.backward()
print(x.grad)
