"""Your side of the story: a torchvision model, briefly trained on your image folder, exported to float ONNX
with ``torch.onnx.export``. nft-deploy plays no part here; it takes over from the .onnx file.

    python train_and_export.py IMAGES_DIR MODEL.onnx      (NFT_EXAMPLE_QUICK=1: fewer steps)

The preprocessing is the one ``--image-size 64 --normalize 0.5,0.25`` repeats at evaluation time: pixels /
255, then (x - 0.5) / 0.25 on every channel. Change one, change both.
"""

import os
import sys
import time

import torch

from nft_deploy.compat import import_torchvision

# `import torchvision` works wherever torch and torchvision are a matching build; import_torchvision() also
# covers a CPU torch next to a CUDA torchvision (it returns the same module).
torchvision = import_torchvision()
from torchvision import transforms  # noqa: E402  (after the import above)

MEAN, STD = 0.5, 0.25
EPOCHS = 4 if os.environ.get("NFT_EXAMPLE_QUICK") else 6


def loader(folder: str, shuffle: bool) -> torch.utils.data.DataLoader:
    prep = transforms.Compose([transforms.ToTensor(), transforms.Normalize([MEAN] * 3, [STD] * 3)])
    data = torchvision.datasets.ImageFolder(folder, transform=prep)
    return torch.utils.data.DataLoader(data, batch_size=16, shuffle=shuffle)


def accuracy(net: torch.nn.Module, batches) -> float:
    net.eval()
    with torch.no_grad():
        hits = [(net(x).argmax(1) == y).float() for x, y in batches]
    return torch.cat(hits).mean().item()


def main(images: str, onnx_path: str) -> None:
    torch.manual_seed(0)
    train, test = loader(f"{images}/train", True), loader(f"{images}/test", False)
    net = torchvision.models.resnet18(num_classes=len(train.dataset.classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        net.train()
        for x, y in train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    print(f"trained resnet18 for {EPOCHS} epochs in {time.perf_counter() - start:.0f} s: float test accuracy "
          f"{accuracy(net, test):.3f} on {len(test.dataset)} images ({len(train.dataset.classes)} classes)")
    sample = torch.zeros(1, 3, 64, 64)
    prog = torch.onnx.export(net.eval(), (sample,), dynamo=True, verbose=False,
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    prog.save(onnx_path)
    print(f"wrote {onnx_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
