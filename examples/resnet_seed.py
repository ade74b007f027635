"""The autograd tutorial's seed program on symgrad: ResNet-18 on one 64x64 image, backward of
`(prediction - labels).sum()`, and an SGD step with momentum. Only the model's import changed.

Run: python examples/resnet_seed.py
"""
import time

import symgrad

start = time.perf_counter()
model = symgrad.models.resnet18()
data = symgrad.rand(1, 3, 64, 64)
labels = symgrad.rand(1, 1000)

prediction = model(data)  # forward pass
loss = (prediction - labels).sum()
loss.backward()  # backward pass

optim = symgrad.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
print(optim)
optim.step()  # gradient descent

print(f"loss {loss.item():.4f}; prediction {tuple(prediction.shape)} by {prediction.grad_fn.name()}")
print(f"conv1.weight.grad {tuple(model.conv1.weight.grad.shape)}, "
      f"bn1.running_mean[:3] {model.bn1.running_mean[:3].tolist()}")
print(f"first step, compiles included: {time.perf_counter() - start:.1f} s")
