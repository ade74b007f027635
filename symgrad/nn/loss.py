"""Loss modules: MSELoss, L1Loss, SmoothL1Loss, HuberLoss, CrossEntropyLoss, NLLLoss, BCELoss,
BCEWithLogitsLoss. Each calls its symgrad.nn.functional counterpart.

>>> import symgrad
>>> loss = symgrad.nn.CrossEntropyLoss(label_smoothing=0.1)
>>> loss(symgrad.zeros(2, 3), symgrad.tensor([0, 2])).item() == float(symgrad.log(symgrad.tensor(3.0)))
True
"""
from __future__ import annotations

from . import functional as F
from .functional import _reduction
from .module import Module


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(reduction, size_average, reduce)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean (sum, or each) squared error.

    >>> import symgrad
    >>> symgrad.nn.MSELoss(reduction="sum")(symgrad.ones(3), symgrad.zeros(3))
    tensor(3.)
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean (sum, or each) absolute error.

    >>> import symgrad
    >>> symgrad.nn.L1Loss()(symgrad.tensor([1.0, -3.0]), symgrad.zeros(2))
    tensor(2.)
    """

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Squared below `beta`, absolute above.

    >>> import symgrad
    >>> symgrad.nn.SmoothL1Loss()(symgrad.tensor([0.5, 3.0]), symgrad.zeros(2))
    tensor(1.3125)
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Squared below `delta`, delta times absolute above.

    >>> import symgrad
    >>> symgrad.nn.HuberLoss(delta=2.0)(symgrad.tensor([3.0]), symgrad.zeros(1))
    tensor(4.)
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of class indices, given log-probabilities.

    >>> import symgrad
    >>> symgrad.nn.NLLLoss()(symgrad.tensor([[-0.5, -1.0]]), symgrad.tensor([1]))
    tensor(1.)
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices or class probabilities.

    >>> import symgrad
    >>> symgrad.nn.CrossEntropyLoss()(symgrad.zeros(1, 4), symgrad.tensor([2])).item() > 1.386
    True
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities.

    >>> import symgrad
    >>> symgrad.nn.BCELoss()(symgrad.tensor([0.5]), symgrad.tensor([0.0]))
    tensor(0.6931)
    """

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits, stable for any logit.

    >>> import symgrad
    >>> symgrad.nn.BCEWithLogitsLoss()(symgrad.tensor([1000.0]), symgrad.tensor([1.0]))
    tensor(0.)
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                  reduction=self.reduction)
