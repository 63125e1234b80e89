"""The local model: a small residual CNN for CPU inference with a class-activation-map head.

Input (N, 1, 224, 224) from `bot.ml.preprocess`. Two stride-2 stem convolutions bring it to
56 x 56; three stages (32, 64, 128 channels, stride 2 between them, with 1, 1 and 2 residual
blocks of two 3x3 convolutions) reach 14 x 14; a 1x1 convolution widens to 256 channels; the
head is a 1x1 convolution to a single pneumonia score map, the class activation map (CAM). Its
global average is the logit, so the CAM comes for free and `logit == cam.mean()` exactly.
"""

from __future__ import annotations

from bot.training import require_torch

torch = require_torch()
nn = torch.nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


class CxrNet(nn.Module):
    """forward(x) -> (logit (N,), cam (N, 14, 14)) for pneumonia."""

    def __init__(
        self, width: int = 32, blocks: tuple[int, ...] = (1, 1, 2), dropout: float = 0.2
    ) -> None:
        super().__init__()
        channels = [width * 2**i for i in range(len(blocks))]
        layers: list[nn.Module] = [
            conv_bn_relu(1, width // 2, 2),
            conv_bn_relu(width // 2, width, 2),
        ]
        for i, (c, n) in enumerate(zip(channels, blocks, strict=True)):
            if i:
                layers.append(conv_bn_relu(channels[i - 1], c, 2))
            layers += [Residual(c) for _ in range(n)]
        layers.append(conv_bn_relu(channels[-1], 2 * channels[-1], kernel=1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(2 * channels[-1], 1, 1)  # the CAM
        self.config = {"width": width, "blocks": list(blocks), "dropout": dropout}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():  # residual branches start as identity
            if isinstance(module, Residual):
                nn.init.zeros_(module.bn2.weight)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        cam = self.head(self.dropout(self.features(x)))[:, 0]
        return cam.mean(dim=(1, 2)), cam


TTA_ZOOMS = (1.0, 1.08, 0.94)  # test-time views: as is, zoomed in 8%, zoomed out 6%


class ExportNet(nn.Module):
    """What gets exported: forward(x) -> (logit (N,), cam (N, 14, 14), embedding (N, E)).

    `logit` averages the views in `zooms` (test-time augmentation inside the graph, so the
    bot makes one call); `cam` and `embedding` come from the image as is. `embedding` is the
    last feature map average-pooled to 2 x 2 (4 x 256 values): what the learned guard
    compares with the training films."""

    def __init__(self, net: CxrNet, zooms: tuple[float, ...] = (1.0,), size: int = 224) -> None:
        super().__init__()
        self.net = net
        self.zooms = tuple(zooms)
        grids = []
        for zoom in self.zooms:  # sampling grids as constants (ONNX opset 17 has no affine_grid)
            theta = torch.tensor([[[1 / zoom, 0.0, 0.0], [0.0, 1 / zoom, 0.0]]])
            grids.append(nn.functional.affine_grid(theta, [1, 1, size, size], align_corners=False))
        self.register_buffer("grids", torch.cat(grids), persistent=False)

    def _view(self, x, i: int):
        grid = self.grids[i : i + 1].expand(x.shape[0], -1, -1, -1)
        return nn.functional.grid_sample(
            x, grid, mode="bilinear", padding_mode="border", align_corners=False
        )

    def forward(self, x):
        features = self.net.features(x)
        cam = self.net.head(features)[:, 0]
        embedding = nn.functional.adaptive_avg_pool2d(features, 2).flatten(1)
        logits = [cam.mean(dim=(1, 2))]
        for i, zoom in enumerate(self.zooms):
            if zoom != 1.0:
                logits.append(self.net(self._view(x, i))[0])
        logit = torch.stack(logits, 0).mean(0)
        return logit, cam, embedding
