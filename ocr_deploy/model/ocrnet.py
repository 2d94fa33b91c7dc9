"""OCRNet builder (Keras 3): backbone, soft object regions, spatial gather, object
attention, augmented representation, classifier and upsampling, as in OCRNET.md."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from ocr_deploy.contract.metadata import INPUT_NAME
from ocr_deploy.model.layers import ObjectAttention, SpatialGather


@dataclass(frozen=True)
class OCRNetConfig:
    """Sizes of an OCRNet. Defaults are the small demo model; see ``cityscapes()``."""

    num_classes: int = 5  # K
    input_height: int = 96
    input_width: int = 96
    backbone_width: int = 16  # w: the 1/4 branch has 2w channels, the 1/8 branch 4w
    mid_channels: int = 64  # M
    key_channels: int = 32  # D
    dropout: float = 0.05

    @classmethod
    def cityscapes(cls) -> OCRNetConfig:
        """Cityscapes scale: K=19, M=512, D=256, 512x1024 input, C=288 (HRNet-W18-like)."""
        return cls(num_classes=19, input_height=512, input_width=1024, backbone_width=48,
                   mid_channels=512, key_channels=256)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_relu(x, filters: int, kernel: int, name: str, strides: int = 1):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _residual_block(x, filters: int, name: str):
    y = _conv_bn_relu(x, filters, 3, f"{name}_a")
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_b_bn")(y)
    if x.shape[-1] != filters:
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([x, y]))


def _backbone(image, width: int):
    """A two-branch (1/4 and 1/8) residual backbone, HRNet-like in spirit, output at 1/4."""
    x = _conv_bn_relu(image, width, 3, "stem1", strides=2)
    x = _conv_bn_relu(x, 2 * width, 3, "stem2", strides=2)
    high = _residual_block(x, 2 * width, "high1")
    high = _residual_block(high, 2 * width, "high2")
    low = _conv_bn_relu(high, 4 * width, 3, "down", strides=2)
    low = _residual_block(low, 4 * width, "low1")
    low = _residual_block(low, 4 * width, "low2")
    low = keras.layers.UpSampling2D(2, interpolation="bilinear", name="low_up")(low)
    return keras.layers.Concatenate(name="feats")([high, low])


def build_ocrnet(config: OCRNetConfig = OCRNetConfig()) -> keras.Model:
    """Build an OCRNet with outputs ``[aux_logits (1/4 resolution), logits (full resolution)]``."""
    k, m, d = config.num_classes, config.mid_channels, config.key_channels
    image = keras.Input((config.input_height, config.input_width, 3), name=INPUT_NAME)
    feats = _backbone(image, config.backbone_width)

    # 2. soft object regions (auxiliary head)
    aux = _conv_bn_relu(feats, feats.shape[-1], 1, "aux_head")
    aux_logits = keras.layers.Conv2D(k, 1, name="aux_logits")(aux)
    # 3. pixel representations
    pixels = _conv_bn_relu(feats, m, 3, "conv3x3_ocr")
    # 4. spatial gather -> object region representations [B,K,1,M]
    regions = SpatialGather(name="spatial_gather")([pixels, aux_logits])
    # 5. object attention
    query = _conv_bn_relu(_conv_bn_relu(pixels, d, 1, "f_pixel1"), d, 1, "f_pixel2")
    key = _conv_bn_relu(_conv_bn_relu(regions, d, 1, "f_object1"), d, 1, "f_object2")
    value = _conv_bn_relu(regions, d, 1, "f_down")
    context = ObjectAttention(name="object_attention")([query, key, value])
    context = _conv_bn_relu(context, m, 1, "f_up")
    # 6. augmented representation
    augmented = keras.layers.Concatenate(name="ocr_concat")([context, pixels])
    augmented = _conv_bn_relu(augmented, m, 1, "ocr_bottleneck")
    augmented = keras.layers.Dropout(config.dropout, name="ocr_dropout")(augmented)
    # 7. classifier and upsampling (half-pixel centres, Keras' convention)
    logits = keras.layers.Conv2D(k, 1, name="cls")(augmented)
    logits = keras.layers.UpSampling2D(4, interpolation="bilinear", name="logits")(logits)
    return keras.Model(image, [aux_logits, logits], name="ocrnet")
