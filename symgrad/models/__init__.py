"""symgrad.models: torchvision-style models (same structure, module names and state_dict keys).

>>> import symgrad
>>> model = symgrad.models.resnet18(num_classes=10)
>>> model.fc
Linear(in_features=512, out_features=10, bias=True)
"""
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50"]
