"""The segmentation networks: a 2D U-Net (default) and FCN-8s (the seeds' model), in PyTorch.

Both take (N, 1, H, W) normalised CT slices with H, W multiples of 32 and return (N, C, H, W) logits.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """Ronneberger's U-Net with batch norm; `base` channels at full resolution, doubling per level."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5, base: int = 16, depth: int = 4):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_conv_block(in_channels, widths[0])])
        self.down.extend(_conv_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.up_blocks = nn.ModuleList(_conv_block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.up_blocks):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class FCN8s(nn.Module):
    """Long et al.'s FCN-8s on a VGG-style encoder, scaled by `base` (64 = original widths).

    Scores from pool3, pool4 and the deepest layer are fused by learned 2x upsampling, then
    upsampled 8x to the input size, as in the paper (no ImageNet weights: none can be fetched here).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 5, base: int = 16):
        super().__init__()
        w = [base, base * 2, base * 4, base * 8, base * 8]
        convs_per_stage = [2, 2, 3, 3, 3]
        stages, cin = [], in_channels
        for width, n in zip(w, convs_per_stage):
            layers = []
            for _ in range(n):
                layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                cin = width
            layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        fc = base * 16
        self.fc = nn.Sequential(
            nn.Conv2d(w[4], fc, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
            nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
        )
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(w[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(w[2], num_classes, 1)
        self.up2_a = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
        self.up2_b = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc(pools[4]))
        score = self.up2_a(score) + self.score_pool4(pools[3])
        score = self.up2_b(score) + self.score_pool3(pools[2])
        return F.interpolate(score, size=size, mode="bilinear", align_corners=False)


ARCHITECTURES = {"unet": UNet2D, "fcn8s": FCN8s}


def build_network(arch: str, num_classes: int = 5, **kwargs) -> nn.Module:
    try:
        cls = ARCHITECTURES[arch.lower()]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return cls(num_classes=num_classes, **kwargs)


def fused_for_inference(network: nn.Module) -> nn.Module:
    """A copy of `network` in eval mode with every BatchNorm2d folded into the Conv2d before it.

    The same function up to float rounding, with one pass over each feature map less; for
    inference only (the original, with its BatchNorm layers, is what training and saving use)."""
    import copy

    fused = copy.deepcopy(network).eval()
    for container in fused.modules():
        if not isinstance(container, nn.Sequential):
            continue
        layers = list(container)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation, conv.groups, bias=True).to(conv.weight.device)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
                folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
            container[i] = folded
            container[i + 1] = nn.Identity()
    return fused
