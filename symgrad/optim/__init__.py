"""symgrad.optim: torch.optim's optimizers and learning-rate schedulers.

>>> import symgrad
>>> model = symgrad.nn.Linear(3, 1)
>>> opt = symgrad.optim.Adam(model.parameters(), lr=1e-2)
>>> loss = model(symgrad.ones(4, 3)).pow(2).mean()
>>> opt.zero_grad(); loss.backward(); opt.step()
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
