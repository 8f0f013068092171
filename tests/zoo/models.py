"""The zoo: public architectures with random weights (no downloads) and small hand-written modules for
patterns the libraries lack. Each entry builds a tiny instance (small input, small config) and a sample.

``build(need)`` gets ``need(library)`` (the library module or a skip) and returns ``(module, sample)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IMAGE = (2, 3, 32, 32)


@dataclass(frozen=True)
class Zoo:
    name: str
    library: str
    covers: str
    build: Callable
    tokens: bool = False
    """Integer token ids as input (the evaluator feeds float32 today)."""
    outputs: int = 1


def _image(*shape):
    return torch.randn(*(shape or IMAGE))


def _tv(name, **kw):
    def build(need):
        return getattr(need("torchvision").models, name)(weights=None, num_classes=10, **kw), _image()
    return build


def _timm(name, size=32, **kw):
    def build(need):
        return need("timm").create_model(name, pretrained=False, num_classes=10, **kw), _image(2, 3, size, size)
    return build


def _mixer(need):
    mixer = need("timm").models.mlp_mixer.MlpMixer
    model = mixer(num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=32)
    with torch.no_grad():  # timm zero-initializes the head: every logit would be 0 and compare trivially
        nn.init.normal_(model.head.weight, std=0.1)
    return model, _image()


def _tv_vit(need):
    vit = need("torchvision").models.VisionTransformer
    return vit(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10), _image()


def _tv_convnext(need):
    cn = need("torchvision").models.convnext
    cfg = [cn.CNBlockConfig(16, 32, 1), cn.CNBlockConfig(32, None, 1)]
    return cn.ConvNeXt(cfg, num_classes=10), _image()


class Logits(nn.Module):
    """A transformers model called with one input (``input_ids`` or ``pixel_values``), returning its logits."""

    def __init__(self, model, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        return self.model(**{self.key: x}).logits


def _bert(need):
    tr = need("transformers")
    cfg = tr.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=4)
    return Logits(tr.BertForSequenceClassification(cfg), "input_ids"), torch.randint(0, 64, (2, 12))


def _gpt2(need):
    tr = need("transformers")
    cfg = tr.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32, num_labels=4,
                        bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return Logits(tr.GPT2ForSequenceClassification(cfg), "input_ids"), torch.randint(1, 64, (2, 12))


def _hf_vit(need):
    tr = need("transformers")
    cfg = tr.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=10)
    return Logits(tr.ViTForImageClassification(cfg), "pixel_values"), _image()


class UNet(nn.Module):
    """Two-level U-Net: strided-conv encoder, ConvTranspose decoder with a skip concatenation."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        a = self.enc1(x)
        return self.head(self.dec(torch.cat([self.up(self.enc2(a)), a], 1)))


class Recurrent(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = kind(6, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


class EinsumNet(nn.Module):
    """A linear layer written as ``einsum`` with a constant weight, then LayerNorm and GELU."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 24) * 0.2)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(nn.functional.gelu(self.norm(torch.einsum("bi,oi->bo", x, self.w))))


class TwoHeads(nn.Module):
    """A shared trunk with two outputs (class logits and an auxiliary regression)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls, self.aux = nn.Linear(8, 10), nn.Linear(8, 2)

    def forward(self, x):
        h = self.trunk(x)
        return self.cls(h), self.aux(h)


def _hand(cls, *args, sample=None):
    return lambda need: (cls(*args), sample() if sample else _image())


ZOO = [
    Zoo("resnet18", "torchvision", "1x1 shortcuts, batch norm", _tv("resnet18")),
    Zoo("mobilenet_v2", "torchvision", "depthwise convolutions, inverted residuals", _tv("mobilenet_v2")),
    Zoo("mobilenet_v3_small", "torchvision", "squeeze-excitation, hardswish", _tv("mobilenet_v3_small")),
    Zoo("shufflenet_v2_x0_5", "torchvision", "grouped/depthwise convs, channel shuffle", _tv("shufflenet_v2_x0_5")),
    Zoo("squeezenet1_1", "torchvision", "fire modules, 1x1 expand convs", _tv("squeezenet1_1")),
    Zoo("regnet_x_400mf", "torchvision", "grouped convolutions", _tv("regnet_x_400mf")),
    Zoo("efficientnet_b0", "torchvision", "squeeze-excitation, depthwise, SiLU", _tv("efficientnet_b0")),
    Zoo("convnext_mini", "torchvision", "depthwise 7x7, LayerNorm, GELU, Linear on 4-D", _tv_convnext),
    Zoo("vit_mini", "torchvision", "nn.MultiheadAttention, class token", _tv_vit),
    Zoo("resnet10t", "timm", "deep stem, 1x1 shortcuts", _timm("resnet10t")),
    Zoo("lcnet_050", "timm", "depthwise, squeeze-excitation, hardswish", _timm("lcnet_050")),
    Zoo("regnetx_002", "timm", "grouped convolutions", _timm("regnetx_002")),
    Zoo("ghostnet_050", "timm", "ghost modules (cheap depthwise), SE", _timm("ghostnet_050")),
    Zoo("convnext_atto", "timm", "depthwise 7x7, LayerNorm, GELU", _timm("convnext_atto")),
    Zoo("vit_tiny_mini", "timm", "attention: qkv Linear (mapped), q@k, attn@v (digital)",
        _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)),
    Zoo("mixer_mini", "timm", "token-mixing Linear on 3-D activations",
        _mixer),
    Zoo("vit_hf_mini", "transformers", "HF attention, LayerNorm, GELU", _hf_vit),
    Zoo("bert_mini", "transformers", "integer token ids, embeddings, attention", _bert, tokens=True),
    Zoo("gpt2_mini", "transformers", "token ids, causal attention, Conv1D (addmm) weights", _gpt2, tokens=True),
    Zoo("unet_mini", "hand-written", "ConvTranspose decoder, skip concat", _hand(UNet)),
    Zoo("lstm_classifier", "hand-written", "LSTM: W and R on crossbars", _hand(Recurrent, nn.LSTM,
                                                                             sample=lambda: torch.randn(2, 7, 6))),
    Zoo("gru_classifier", "hand-written", "GRU: W and R on crossbars", _hand(Recurrent, nn.GRU,
                                                                          sample=lambda: torch.randn(2, 7, 6))),
    Zoo("einsum_layernorm", "hand-written", "Einsum with a constant weight, LayerNorm, GELU",
        _hand(EinsumNet, sample=lambda: torch.randn(2, 24))),
    Zoo("two_heads", "hand-written", "two outputs", _hand(TwoHeads), outputs=2),
]
