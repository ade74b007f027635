"""Seed 2: Python control flow on tensor values, then a vector-Jacobian product.

Run: python examples/seed2_loop_until_norm.py
"""
import symgrad as torch

x = torch.randn(3, requires_grad=True)
y = x * 2
doublings = 1
while y.data.norm() < 1000:
    y = y * 2
    doublings += 1
print(y)
gradients = torch.FloatTensor([0.1, 1.0, 0.0001])
y.backward(gradients)
print(x.grad)
print("x.grad == 2**k * v for k =", doublings, ":", bool((x.grad == 2 ** doublings * gradients).all()))
