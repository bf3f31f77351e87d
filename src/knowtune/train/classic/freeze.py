"""`freeze`: only the top k transformer blocks, the final norm and the head train."""

from knowtune.train.classic.base import Recipe, freeze_all_but, head_modules


class Freeze(Recipe):
    name = "freeze"
    help = "the top --unfreeze-top transformer blocks, the final norm and the head train; the rest stays frozen"

    def setup(self, model, s):
        decoder = model.get_decoder()
        top = list(decoder.layers)[-s.unfreeze_top:]
        above = [decoder.norm] + head_modules(model)
        if not head_modules(model):  # a causal LM: its output projection (often tied to the embeddings: left frozen)
            out = model.get_output_embeddings()
            if out is not None and out.weight is not model.get_input_embeddings().weight:
                above.append(out)
        return model, freeze_all_but(model, top + above, s)
