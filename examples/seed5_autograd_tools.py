"""Seed 5: retain_grad on intermediates, accumulation over two backward calls, detach, no_grad.

Run: python examples/seed5_autograd_tools.py
"""
import symgrad as torch

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
h = x * x
h.retain_grad()
out = (h * 2).sum()
out.backward()
print(h.grad)          # d out / d h = 2
print(x.grad)          # 4x

(x * 10).sum().backward()
print(x.grad)          # accumulated: 4x + 10

frozen = h.detach()
print(frozen.requires_grad, frozen.grad_fn)
with torch.no_grad():
    print((x * 2).requires_grad)
