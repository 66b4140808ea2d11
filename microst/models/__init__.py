"""The networks: VGG-16 (the loss network) and the two generators, and build_generator(config), which
rebuilds a generator from the config a checkpoint stores. The factory lives here, above both
generators, so that generator.py (what they share) imports neither of them."""
from .vgg16 import VGG16Features
from .johnson import TransformerNet
from .ulyanov import TextureNet

GENERATORS = {TransformerNet.kind: TransformerNet, TextureNet.kind: TextureNet}


def build_generator(config):
    """A generator from its config dict (as stored in a checkpoint: "model" names the class)."""
    config = dict(config)
    kind = config.pop("model", None)
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](**config)
