"""Small deterministic PyTorch architectures used to build the sample ONNX models.

Every net is plain ``torch.nn`` (no torchvision), narrow (8-48 channels) and
takes a small input, so its ONNX export stays well under 1 MB.  ``build(name)``
returns a seeded model in eval mode together with its input shape.  BatchNorm
layers get non-trivial random statistics so channel-importance scores are not
ties.  ``resnet50`` is a full-size ResNet-50, only exported on demand.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

SEED = 0
SMALL_INPUT = (1, 3, 32, 32)
UNET_INPUT = (1, 3, 64, 64)
RESNET50_INPUT = (1, 3, 224, 224)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """Return ``[Conv2d(no bias), BatchNorm2d]`` with 'same' padding."""
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout)]


def conv_bn_act(
    cin: int, cout: int, k: int = 3, stride: int = 1, act: nn.Module | None = None
) -> nn.Sequential:
    """Conv -> BN -> activation (ReLU unless ``act`` is given)."""
    return nn.Sequential(*conv_bn(cin, cout, k, stride), act or nn.ReLU())


# --------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """ResNet basic block with an optional 1x1 stride-2 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual add then ReLU."""
        return self.relu(self.body(x) + self.shortcut(x))


class ResNetSmall(nn.Module):
    """Stem + 3 stages of 2 BasicBlocks (16/32/48 ch) + GAP + Linear(10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, 16)
        blocks: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (48, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout)]
            cin = cout
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image."""
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


# ---------------------------------------------------------------- MobileNetV2
class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block, adding the input when shapes match."""
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetV2Small(nn.Module):
    """Tiny MobileNetV2 with an expand-ratio-1 block and two residual blocks."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, 16, 3, 2, nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 8, 1, 1),
            InvertedResidual(8, 16, 2, 3),
            InvertedResidual(16, 16, 1, 3),
            InvertedResidual(16, 24, 2, 2),
            InvertedResidual(24, 24, 1, 2),
        )
        self.head = conv_bn_act(24, 48, 1, 1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(48, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image."""
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------- SE-Net
class SqueezeExcite(nn.Module):
    """GAP -> 1x1 reduce -> ReLU -> 1x1 expand -> Sigmoid -> scale input."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-wise re-weighting."""
        return x * self.gate(x)


class SEResidual(nn.Module):
    """Residual block ``relu(x + se(bn(conv(x))))``."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*conv_bn(channels, channels, 3))
        self.se = SqueezeExcite(channels, reduced)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """SE branch added to the identity."""
        return self.relu(x + self.se(self.conv(x)))


class SENet(nn.Module):
    """Conv+SE blocks, an SE block inside a residual block, Linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 16),
            conv_bn_act(16, 32, 3, 2),
            SqueezeExcite(32, 8),
            SEResidual(32, 8),
            conv_bn_act(32, 48, 3, 2),
            SqueezeExcite(48, 12),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image."""
        x = self.pool(self.features(x))
        return self.fc(torch.flatten(x, 1))


# ------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv; output concatenated to the input."""

    def __init__(self, cin: int, growth: int, bottleneck: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, bottleneck, 1, bias=False),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(),
            nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate new features along channels (BN follows the Concat)."""
        return torch.cat([x, self.body(x)], 1)


class DenseNetSmall(nn.Module):
    """Dense block (16->48) -> transition (->24, AvgPool) -> dense block (->40)."""

    def __init__(self, num_classes: int = 10, growth: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(*(DenseLayer(16 + i * growth, growth) for i in range(4)))
        self.transition = nn.Sequential(
            nn.BatchNorm2d(48),
            nn.ReLU(),
            nn.Conv2d(48, 24, 1, bias=False),
            nn.AvgPool2d(2),
        )
        self.block2 = nn.Sequential(*(DenseLayer(24 + i * growth, growth) for i in range(2)))
        self.norm = nn.Sequential(nn.BatchNorm2d(40), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(40, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image."""
        x = self.block2(self.transition(self.block1(self.stem(x))))
        x = self.pool(self.norm(x))
        return self.fc(torch.flatten(x, 1))


# -------------------------------------------------------------------- ResNeXt
class ResNeXtBlock(nn.Module):
    """Bottleneck 1x1 -> grouped 3x3 (groups=4) -> 1x1 with residual Add."""

    def __init__(self, cin: int, width: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1),
            nn.ReLU(),
            *conv_bn(width, width, 3, stride, groups=4),
            nn.ReLU(),
            *conv_bn(width, cout, 1),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual add then ReLU."""
        return self.relu(self.body(x) + self.shortcut(x))


class ResNeXtSmall(nn.Module):
    """Three ResNeXt bottlenecks (32 -> 48 channels) and a Linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, 32)
        self.blocks = nn.Sequential(
            ResNeXtBlock(32, 32, 32),
            ResNeXtBlock(32, 32, 48, 2),
            ResNeXtBlock(48, 48, 48),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image."""
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


# ------------------------------------------------------------------- CSP/YOLO
def yolo_conv(cin: int, cout: int, k: int = 1, stride: int = 1) -> nn.Sequential:
    """YOLO ``Conv``: Conv -> BN -> SiLU."""
    return conv_bn_act(cin, cout, k, stride, nn.SiLU())


class YoloBottleneck(nn.Module):
    """Two 3x3 convs with an optional residual Add."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv = nn.Sequential(yolo_conv(c, c, 3), yolo_conv(c, c, 3))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply both convs, adding the input if ``shortcut``."""
        y = self.cv(x)
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8 C2f: 1x1 conv, split in halves, bottleneck chain, cat all, 1x1 conv."""

    def __init__(
        self, cin: int, cout: int, n: int, shortcut: bool, use_split: bool = False
    ) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = yolo_conv(cin, 2 * self.c)
        self.m = nn.ModuleList(YoloBottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = yolo_conv((2 + n) * self.c, cout)
        self.use_split = use_split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Split (chunk or split), chain bottlenecks, concat every output."""
        y = self.cv1(x)
        parts = list(torch.split(y, [self.c, self.c], 1) if self.use_split else y.chunk(2, 1))
        for m in self.m:
            parts.append(m(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): 1x1 conv, 3 chained MaxPools, cat, 1x1 conv."""

    def __init__(self, cin: int, cout: int, hidden: int) -> None:
        super().__init__()
        self.cv1 = yolo_conv(cin, hidden)
        self.m = nn.MaxPool2d(5, 1, 2)
        self.cv2 = yolo_conv(4 * hidden, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concat the input of and the three chained pools."""
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], 1))


class CSPYoloSmall(nn.Module):
    """YOLOv8-like backbone + SPPF + decoupled box/cls head (output 1x12x4x4)."""

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            yolo_conv(3, 16, 3, 2),
            yolo_conv(16, 24, 3, 2),
            C2f(24, 24, n=2, shortcut=True),
            yolo_conv(24, 32, 3, 2),
            C2f(32, 32, n=1, shortcut=False, use_split=True),
            SPPF(32, 32, hidden=12),
        )
        self.box = nn.Sequential(yolo_conv(32, 16, 3), nn.Conv2d(16, 4, 1))
        self.cls = nn.Sequential(yolo_conv(32, 16, 3), nn.Conv2d(16, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return concatenated box (4) and class (8) maps."""
        x = self.backbone(x)
        return torch.cat([self.box(x), self.cls(x)], 1)


# ---------------------------------------------------------------------- U-Net
def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two conv3x3-BN-ReLU layers."""
    return nn.Sequential(conv_bn_act(cin, cout), conv_bn_act(cout, cout))


class UNetSmall(nn.Module):
    """2-level U-Net: ConvTranspose and nearest-Upsample decoders, skip concats."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.enc1 = double_conv(3, 8)
        self.enc2 = double_conv(8, 16)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(16, 32)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = double_conv(32, 16)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_act(16, 8, 1))
        self.dec2 = double_conv(16, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a 1x3x64x64 image into 2 classes."""
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d1 = self.dec1(torch.cat([self.up1(b), e2], 1))
        d2 = self.dec2(torch.cat([self.up2(d1), e1], 1))
        return self.head(d2)


# ---------------------------------------------------------- Flatten classifier
class ClassifierFlatten(nn.Module):
    """CNN to 16x4x4 features -> flatten -> Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 8),
            nn.MaxPool2d(2),
            conv_bn_act(8, 16),
            nn.MaxPool2d(2),
            conv_bn_act(16, 16),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x32x32 image; Flatten feeds a Gemm with 16 positions/channel."""
        return self.classifier(torch.flatten(self.features(x), 1))


# ------------------------------------------------------------------ ResNet-50
class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1, 3x3 stride, 1x1 x4) with projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1),
            nn.ReLU(),
            *conv_bn(width, width, 3, stride),
            nn.ReLU(),
            *conv_bn(width, cout, 1),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual add then ReLU."""
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    """Full-size ResNet-50 ([3, 4, 6, 3] bottlenecks, 1000 classes)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers: list[nn.Module] = []
        cin = 64
        for i, (width, depth) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(Bottleneck(cin, width, stride))
                cin = width * 4
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a 1x3x224x224 image."""
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


# ------------------------------------------------------------------- registry
SMALL_NETS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet_small": (ResNetSmall, SMALL_INPUT),
    "mobilenetv2_small": (MobileNetV2Small, SMALL_INPUT),
    "se_net": (SENet, SMALL_INPUT),
    "densenet_small": (DenseNetSmall, SMALL_INPUT),
    "resnext_small": (ResNeXtSmall, SMALL_INPUT),
    "csp_yolo_small": (CSPYoloSmall, SMALL_INPUT),
    "unet_small": (UNetSmall, UNET_INPUT),
    "classifier_flatten": (ClassifierFlatten, SMALL_INPUT),
}
ALL_NETS = {**SMALL_NETS, "resnet50": (ResNet50, RESNET50_INPUT)}


def randomize_batchnorm(model: nn.Module, seed: int = SEED) -> None:
    """Give every BatchNorm non-trivial running stats and affine params."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def build(name: str, seed: int = SEED) -> tuple[nn.Module, tuple[int, ...]]:
    """Build net ``name`` deterministically in eval mode; return it and its input shape."""
    factory, shape = ALL_NETS[name]
    torch.manual_seed(seed)
    model = factory()
    randomize_batchnorm(model, seed)
    return model.eval(), shape


def example_input(shape: tuple[int, ...], seed: int = SEED) -> torch.Tensor:
    """Deterministic standard-normal input of ``shape``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
