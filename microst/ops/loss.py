"""The reductions of the perceptual losses: gram, mse_loss, tv_loss."""
from .base import Op, check_rank


class Gram(Op):
    """G = F F^T / (C H W) per image, F the (C, H*W) feature matrix: (N, C, H, W) -> (N, C, C)."""
    name = "gram"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        n, c, h, w = x.shape
        self.f, self.x_shape, self.scale = x.reshape(n, c, h * w), x.shape, x.dtype.type(1.0 / (c * h * w))
        return self.xp.matmul(self.f, self.f.transpose(0, 2, 1)) * self.scale

    def backward(self, dy):  # dF = (dG + dG^T) F / (C H W)
        dsym = dy + dy.transpose(0, 2, 1)
        return ((self.xp.matmul(dsym, self.f) * self.scale).reshape(self.x_shape),)


class MseLoss(Op):
    name = "mse_loss"

    def forward(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"mse_loss: input {tuple(a.shape)} and target {tuple(b.shape)} differ in shape")
        self.diff = a - b
        return self.xp.asarray((self.diff * self.diff).mean())

    def backward(self, dy):
        g = self.diff * (dy * (2.0 / self.diff.size)).astype(self.diff.dtype)
        return (g if self.needs_grad[0] else None), (-g if self.needs_grad[1] else None)


class TvLoss(Op):
    """mean over (n, c, i, j) of (x[i+1, j] - x[i, j])^2  +  mean of (x[i, j+1] - x[i, j])^2."""
    name = "tv_loss"

    def forward(self, x):
        check_rank(self.name, "input", x, 4)
        if min(x.shape[2:]) < 2:
            raise ValueError(f"tv_loss: needs H, W >= 2, got input {tuple(x.shape)}")
        self.dh = x[:, :, 1:, :] - x[:, :, :-1, :]
        self.dw = x[:, :, :, 1:] - x[:, :, :, :-1]
        self.x_shape = x.shape
        return self.xp.asarray((self.dh * self.dh).mean() + (self.dw * self.dw).mean())

    def backward(self, dy):
        gh = self.dh * (dy * (2.0 / self.dh.size)).astype(self.dh.dtype)
        gw = self.dw * (dy * (2.0 / self.dw.size)).astype(self.dw.dtype)
        dx = self.xp.zeros(self.x_shape, gh.dtype)
        dx[:, :, 1:, :] += gh
        dx[:, :, :-1, :] -= gh
        dx[:, :, :, 1:] += gw
        dx[:, :, :, :-1] -= gw
        return (dx,)
