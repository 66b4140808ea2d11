"""Stylize on cuda through CUDA graphs (opt-in: stylize --cuda-graph): a generator's forward pass is
captured once per input shape and replayed as one graph launch, instead of some 70 kernel launches
and their Python work.

    runner = GraphRunner(model, capacity=4)
    y = runner(image)          # (3, H, W) float32 in [0, 255] -> the same, like transfer.stylize

How: the first image of a shape runs once on a non-blocking stream (kernels compile, conv offset
tables are built, the memory pool holds the blocks the pass needs), then the same pass is captured
on that stream (`cupy.cuda.Stream.begin_capture`, relaxed mode). Every array allocated during the
capture is kept alive with the graph, since the graph reads and writes those addresses; the input
is copied into the captured input array before each replay, and the output read from the
captured output. At most `capacity` shapes are kept (the least recently used graph goes first).
Only for TransformerNet: TextureNet draws its noise on the host, which a capture cannot contain.
"""
from collections import OrderedDict

import numpy as np

from .autograd import Tensor, no_grad
from .errors import UserError


class GraphRunner:
    def __init__(self, model, capacity=4):
        if model.device != "cuda":
            raise UserError(f"--cuda-graph: the model is on {model.device}; CUDA graphs need --device cuda")
        if model.kind != "johnson":
            raise UserError("--cuda-graph: texture networks draw their noise on the host, which a CUDA graph cannot "
                            "capture; leave --cuda-graph out for this model")
        import cupy
        self.cupy, self.model, self.capacity = cupy, model, capacity
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.graphs = OrderedDict()  # input shape -> (input array, output array, graph, kept arrays)

    def __call__(self, image):
        shape = tuple(image.shape)
        if shape in self.graphs:
            self.graphs.move_to_end(shape)
        else:
            self.graphs[shape] = self._capture(shape)
            while len(self.graphs) > self.capacity:
                self.graphs.popitem(last=False)
        x, y, graph, _ = self.graphs[shape]
        with self.stream:
            x.set(np.ascontiguousarray(image[None], np.float32), stream=self.stream)
            graph.launch(stream=self.stream)
            out = y.get(stream=self.stream)
        self.stream.synchronize()
        return out[0]

    def _forward(self, x):
        return self.model(Tensor(x, device="cuda")).data

    def _capture(self, shape):
        cupy = self.cupy
        pool = cupy.get_default_memory_pool()
        kept = []

        def malloc(size):  # every block of the capture stays with its graph
            memory = pool.malloc(size)
            kept.append(memory)
            return memory

        with no_grad(), self.stream:
            x = cupy.zeros((1,) + shape, np.float32)
            self._forward(x)  # warm-up: compiles, tables, pool blocks
            self.stream.synchronize()
            with cupy.cuda.using_allocator(malloc):
                self.stream.begin_capture()
                try:
                    y = self._forward(x)
                finally:
                    graph = self.stream.end_capture()
        return x, y, graph, kept
