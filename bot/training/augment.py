"""Training-time augmentation on batches of prepared images (torch, in 0..1, before
`standardize`): a random affine (zoom, aspect, rotation, shift), gamma, windowing, and
optionally a tone curve, blur, unsharp masking, an erased patch and noise. Every random number comes from the generator passed in, so runs are reproducible."""

from __future__ import annotations

import math

from bot.training import require_torch

torch = require_torch()
F = torch.nn.functional


def _uniform(n: int, low: float, high: float, gen) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


@torch.no_grad()
def augment(
    x: torch.Tensor,
    gen: torch.Generator,
    *,
    rotate_deg: float = 8.0,
    zoom: float = 0.15,
    shift: float = 0.06,
    gamma: float = 0.4,
    blur_p: float = 0.3,
    noise: float = 0.03,
    erase_p: float = 0.0,
    sharpen_p: float = 0.0,
    curve: float = 0.0,
) -> torch.Tensor:
    """x: (N, 1, H, W) in 0..1 -> augmented, still in 0..1."""
    n = x.shape[0]
    angle = _uniform(n, -1, 1, gen) * math.radians(rotate_deg)
    scale = torch.exp(_uniform(n, -math.log1p(zoom), math.log1p(zoom), gen))
    aspect = torch.exp(_uniform(n, -0.1, 0.1, gen))
    sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos / sx, -sin / sx, _uniform(n, -2 * shift, 2 * shift, gen)], 1),
            torch.stack([sin / sy, cos / sy, _uniform(n, -2 * shift, 2 * shift, gen)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    g = torch.exp(_uniform(n, -gamma, gamma, gen)).view(n, 1, 1, 1)
    x = x.clamp(0, 1) ** g
    low = _uniform(n, 0.0, 0.08, gen).view(n, 1, 1, 1)
    high = _uniform(n, 0.88, 1.0, gen).view(n, 1, 1, 1)
    x = ((x - low) / (high - low)).clamp(0, 1)

    if curve:  # an S- or inverse-S-shaped tone curve, as film processing differs by machine
        k = _uniform(n, -curve, curve, gen).view(n, 1, 1, 1)
        s_curve = 0.5 - 0.5 * torch.cos(math.pi * x)
        x = (x + k * (s_curve - x)).clamp(0, 1)

    blurred = torch.rand(n, generator=gen) < blur_p
    if blurred.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (k[:, None] * k[None, :]).view(1, 1, 3, 3)
        x[blurred] = F.conv2d(F.pad(x[blurred], (1, 1, 1, 1), mode="replicate"), kernel)
    sharpened = torch.rand(n, generator=gen) < sharpen_p
    if sharpened.any():  # unsharp masking, as some exports apply
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
        kernel = (k[:, None] * k[None, :]).view(1, 1, 5, 5)
        soft = F.conv2d(F.pad(x[sharpened], (2, 2, 2, 2), mode="replicate"), kernel)
        amount = _uniform(int(sharpened.sum()), 0.5, 1.5, gen).view(-1, 1, 1, 1)
        x[sharpened] = (x[sharpened] + amount * (x[sharpened] - soft)).clamp(0, 1)
    for i in torch.nonzero(torch.rand(n, generator=gen) < erase_p).flatten().tolist():
        # one patch of the film replaced by its mean: no single spot carries the verdict
        h, w = x.shape[-2:]
        eh, ew = (int(v) for v in torch.randint(h // 10, h // 4, (2,), generator=gen))
        top = int(torch.randint(0, h - eh, (1,), generator=gen))
        left = int(torch.randint(0, w - ew, (1,), generator=gen))
        x[i, :, top : top + eh, left : left + ew] = x[i].mean()
    sigma = _uniform(n, 0, noise, gen).view(n, 1, 1, 1)
    x = x + torch.randn(x.shape, generator=gen) * sigma
    return x.clamp(0, 1)


STRONG = {
    "rotate_deg": 12.0,
    "zoom": 0.25,
    "shift": 0.1,
    "gamma": 0.7,
    "blur_p": 0.4,
    "noise": 0.05,
    "erase_p": 0.4,
    "sharpen_p": 0.3,
    "curve": 0.6,
}
"""Strong photometric and geometric augmentation (`TrainConfig.augmentation = "strong"`)."""
