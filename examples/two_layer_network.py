"""The two-layer network written by hand, as in torch's tutorial: matrix products, clamp, manual SGD.

Run: python examples/two_layer_network.py
"""
import symgrad as torch

torch.manual_seed(0)
N, D_in, H, D_out = 64, 1000, 100, 10
x = torch.randn(N, D_in)
y = torch.randn(N, D_out)
w1 = torch.randn(D_in, H, requires_grad=True)
w2 = torch.randn(H, D_out, requires_grad=True)
learning_rate = 1e-6
for epoch in range(1000):
    y_pred = x.mm(w1).clamp(min=0).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    if epoch == 0:
        first = loss.item()
        print(f"epoch {epoch}: loss {first:.1f}")
    loss.backward()
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad
        w1.grad.zero_()
        w2.grad.zero_()
print(f"epoch {epoch}: loss {loss.item():.4f} ({loss.item() / first:.2e} of the first)")
print(repr(loss))
