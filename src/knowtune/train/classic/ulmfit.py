"""`ulmfit`: Howard & Ruder's (2018) fine-tuning of a language model for a task: gradual unfreezing (the top
layer group in the first epoch, one more each epoch), discriminative learning rates (each group's rate the one
above divided by --ulmfit-factor, 2.6) and the slanted triangular schedule. The schedules themselves, with
their unit test, are in `train/ulmfit.py`."""

import math

from knowtune.train.classic.base import Recipe
from knowtune.train.optim import decay_groups
from knowtune.train.ulmfit import GradualUnfreezing, group_rates, layer_groups, slanted_triangular


class ULMFiT(Recipe):
    name = "ulmfit"
    help = "gradual unfreezing (one more layer group from the top each epoch), discriminative rates (/2.6 per group), slanted triangular schedule"

    def setup(self, model, s):
        per_group = s.ulmfit_blocks_per_group or math.ceil(len(model.get_decoder().layers) / max(1, s.epochs - 1))
        self.groups = layer_groups(model, per_group)
        names = {id(p): n for n, p in model.named_parameters()}
        rates = group_rates(s.learning_rate, len(self.groups), s.ulmfit_factor)
        param_groups = []
        for params, lr in zip(self.groups, rates):  # every group is in the optimiser, frozen or not (yet)
            param_groups += decay_groups([(names[id(p)], p) for p in params], s.weight_decay, lr=lr)
        GradualUnfreezing(self.groups).apply(0)
        return model, param_groups

    def callbacks(self, model) -> list:
        return [GradualUnfreezing(self.groups)]

    def scheduler(self, optimizer, total_steps: int, s):
        from torch.optim.lr_scheduler import LambdaLR

        return LambdaLR(optimizer, lambda step: slanted_triangular(step, total_steps))
