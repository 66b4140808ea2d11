"""stylize --cuda-graph: one CUDA graph per input shape replays the forward pass (microst/graphs.py).
The replay is compared with a plain forward pass on cuda (gpu marker); what it refuses is checked
everywhere."""
import numpy as np
import pytest

import microst
from microst.errors import UserError
from microst.models.johnson import TransformerNet
from microst.models.ulyanov import TextureNet


def test_a_graph_needs_cuda_and_a_transformer_net():
    from microst.graphs import GraphRunner
    with pytest.raises(UserError, match="CUDA graphs need --device cuda"):
        GraphRunner(TransformerNet(width=0.25).eval())


def test_a_graph_does_not_tile():
    from microst.jobs import Stylizer
    with pytest.raises(UserError, match="leave out --tile"):
        Stylizer(TransformerNet(width=0.25).eval(), tile=64, cuda_graph=True)


@pytest.mark.gpu
def test_graph_replays_equal_the_plain_forward_and_are_kept_per_shape():
    from microst.graphs import GraphRunner
    from microst.transfer import stylize
    microst.manual_seed(0)
    model = TransformerNet(width=0.5).eval().to("cuda")
    runner = GraphRunner(model, capacity=2)
    rng = np.random.default_rng(0)
    for shape in [(3, 40, 56), (3, 64, 48), (3, 40, 56), (3, 33, 47)]:
        image = rng.uniform(0, 255, shape).astype(np.float32)
        np.testing.assert_allclose(runner(image), stylize(model, image, "cuda"), rtol=1e-4, atol=1e-3)
    assert list(runner.graphs) == [(3, 40, 56), (3, 33, 47)]  # capacity 2, least recently used gone
    with pytest.raises(UserError, match="texture networks"):
        GraphRunner(TextureNet().eval().to("cuda"))
