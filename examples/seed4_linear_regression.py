"""Seed 4: linear regression by hand-written gradient descent on y = 2x + 3.

Run: python examples/seed4_linear_regression.py
"""
import symgrad as torch

torch.manual_seed(42)
x = torch.randn(120, 1)
y = 2 * x + 3
b = torch.randn(1, requires_grad=True)
w = torch.randn(1, requires_grad=True)
lr = 0.1
for epoch in range(200):
    loss = ((y - (b + w * x)) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        b -= lr * b.grad
        w -= lr * w.grad
    b.grad.zero_()
    w.grad.zero_()
print(w)
print(b)
