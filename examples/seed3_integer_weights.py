"""Seed 3: integer weights promote to float; the gradient flows only to the float leaf.

Run: python examples/seed3_integer_weights.py
"""
import symgrad as torch

a = torch.ones(1, requires_grad=True)
w1, w2, w3, w4 = torch.tensor(1), torch.tensor(2), torch.tensor(3), torch.tensor(4)
d = w3 * (w1 * a) + w4 * (w2 * a)
L = d ** 2
L.backward()
print(a.grad)
