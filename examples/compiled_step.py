"""A training step under symgrad.compile: after two traced calls each step is one native program.

The model, loss and optimizer are ordinary symgrad code; only the decorator is new. The learning-rate
scheduler keeps working because optimizers read their learning rate as a runtime value.

Run: python examples/compiled_step.py
"""
import time

import symgrad as torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(1000, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
loss_fn = torch.nn.MSELoss()
x, y = torch.randn(64, 1000), torch.randn(64, 10)


@torch.compile
def train_step(x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


start = time.perf_counter()
for epoch in range(300):
    loss = train_step(x, y)
    scheduler.step()
    if epoch in (0, 299):
        print(f"epoch {epoch}: loss {loss.item():.5f}")
elapsed = time.perf_counter() - start
print(f"{train_step.explain()}; {elapsed / 300 * 1e3:.2f} ms per step, compile included")
print(f"learning rate now {scheduler.get_last_lr()[0]:.2e}")
