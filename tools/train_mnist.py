#!/usr/bin/env python3
"""Train the two MNIST networks used by the encrypted-inference benchmarks and export them to ONNX.

How to run (2-core machine: keep CPU 0 free, one torch thread):

    pip install -r tools/requirements.txt
    taskset -c 1 python3 tools/train_mnist.py --out data/

Options: --mnist DIR (default /work/shared/data/mnist, or $MNIST_DIR), --models small,large,
--epochs N (overrides the per-model default), --seed S, --lr, --weight-decay, --label-smoothing,
--batch-size, --shift PX, --threads, --val N (hold the last N training images out as a
validation set; for tuning only: the committed models are trained on all 60,000 training images
with the default --val 0).

Input data: the official MNIST IDX files (gzipped `*-ubyte.gz` or plain `*-ubyte`). If the folder
has SHA256SUMS (for the .gz files) or SHA256SUMS.uncompressed (for the plain files), every file
used is checked against it and the script stops on a mismatch. Only the 60k training set is used
for training; the 10k test set is only used for the final accuracy / pre-activation report.

What it produces, in --out:
  mnist_small.onnx  Conv2d(1->5, 3x3, stride 2, no pad, bias) -> ReLU -> Flatten(845)
                    -> Linear(845->100) -> ReLU -> Linear(100->10)
  mnist_large.onnx  same conv -> ReLU -> Flatten(845) -> Linear(845->300) -> ReLU
                    -> Linear(300->100) -> ReLU -> Linear(100->10)
  mnist/            the MNIST test set (t10k images + labels, gzipped IDX, byte-identical copies
                    of the source files) and a README.md with their origin and sha256
  models.json       per model: file, architecture, plaintext test accuracy (PyTorch and
                    onnxruntime), max |pre-activation| per linear layer (conv and each Linear,
                    before ReLU) over the test set, recipe, seeds, training time

ONNX graphs: opset 13, input `input` float32 [1,1,28,28], output `logits` float32 [1,10]
(static batch size 1); ops are only Conv, Relu, Flatten, Gemm. Input is pixel/255.0 with NO
mean/std normalisation; output is raw logits (no softmax).

Recipe (defaults): AdamW (betas 0.9/0.999), decoupled weight decay 0.02, batch size 128,
one-cycle LR schedule peaking at 2e-3 (15% warm-up, cosine anneal), cross-entropy with label
smoothing 0.1. Augmentation: random integer shifts of up to +-2 pixels in x and y (zero fill),
drawn per sample per batch. Epochs: small 30, large 40. The final-epoch weights are exported (no
model selection on the test set; the recipe was tuned with --val 5000, i.e. on a held-out part of
the training set). Label smoothing and weight decay are there to keep pre-activations small for
the encrypted evaluation: label smoothing bounds the logits (|logit| about 5 instead of about 45
without it) and with them the scale of the whole network, at no cost in accuracy.

Seeds: --seed (default 20240601) seeds python `random`, numpy and torch; model `small` uses
seed+0 and model `large` seed+1 for weight init, shuffling and augmentation. Deterministic
algorithms are enabled and one thread is used, so a rerun on the same software versions
reproduces the same weights.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_MNIST = os.environ.get("MNIST_DIR", "/work/shared/data/mnist")
DEFAULT_SEED = 20240601
DEFAULT_EPOCHS = {"small": 30, "large": 40}
ARCH = {
    "small": "Conv2d(1->5,k=3x3,s=2,p=0,bias)-ReLU-Flatten(5x13x13=845)-Linear(845->100)-ReLU-Linear(100->10)",
    "large": "Conv2d(1->5,k=3x3,s=2,p=0,bias)-ReLU-Flatten(5x13x13=845)-Linear(845->300)-ReLU-Linear(300->100)-ReLU-Linear(100->10)",
}
HIDDEN = {"small": [100], "large": [300, 100]}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# ----------------------------------------------------------------------------- data

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sums(path):
    sums = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    sums[parts[-1].lstrip("*")] = parts[0].lower()
    return sums


def locate(mnist_dir, base):
    """Return (path, is_gzip, sha256) for one IDX file, verifying it against the sums files."""
    sums = {**read_sums(os.path.join(mnist_dir, "SHA256SUMS.uncompressed")),
            **read_sums(os.path.join(mnist_dir, "SHA256SUMS"))}
    for name, gz in ((base + ".gz", True), (base, False)):
        path = os.path.join(mnist_dir, name)
        if os.path.exists(path):
            digest = sha256_file(path)
            if name in sums:
                if sums[name] != digest:
                    sys.exit(f"sha256 mismatch for {path}: {digest} != {sums[name]}")
                print(f"  {name}: sha256 OK")
            else:
                print(f"  {name}: no sha256 listed, not verified")
            return path, gz, digest
    sys.exit(f"missing {base}(.gz) in {mnist_dir}")


def read_idx(path, gz):
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims).copy()


def load_mnist(mnist_dir):
    print(f"MNIST from {mnist_dir}")
    out, meta = {}, {}
    for key, base in FILES.items():
        path, gz, digest = locate(mnist_dir, base)
        out[key] = read_idx(path, gz)
        meta[key] = (path, gz, digest)
    assert out["train_images"].shape == (60000, 28, 28) and out["train_labels"].shape == (60000,)
    assert out["test_images"].shape == (10000, 28, 28) and out["test_labels"].shape == (10000,)
    return out, meta


def to_input(images_u8):
    """uint8 [N,28,28] -> float32 [N,1,28,28] = pixel/255 (no mean/std normalisation)."""
    return torch.from_numpy(images_u8.astype(np.float32) / 255.0).unsqueeze(1)


# ----------------------------------------------------------------------------- model

class Net(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        layers = [nn.Conv2d(1, 5, kernel_size=3, stride=2, padding=0, bias=True), nn.ReLU(),
                  nn.Flatten()]
        width = 5 * 13 * 13
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 10))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)

    def linear_layers(self):
        return [m for m in self.body if isinstance(m, (nn.Conv2d, nn.Linear))]


def random_shift(x, max_shift, gen):
    """Shift each image by an independent integer (dy, dx) in [-max_shift, max_shift], zero fill."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(28).view(1, 28))  # [n,28]
    cols = (dx.view(n, 1) + torch.arange(28).view(1, 28))
    idx_n = torch.arange(n).view(n, 1, 1)
    return padded[idx_n, 0, rows.view(n, 28, 1), cols.view(n, 1, 28)].unsqueeze(1)


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    maxabs = [0.0] * len(model.linear_layers())
    for i in range(0, x.shape[0], batch):
        h = x[i:i + batch]
        k = 0
        for m in model.body:
            h = m(h)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                maxabs[k] = max(maxabs[k], h.abs().max().item())
                k += 1
        correct += (h.argmax(1) == y[i:i + batch]).sum().item()
    return correct / x.shape[0], maxabs


def train(name, data, args, seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    x_all, y_all = to_input(data["train_images"]), torch.from_numpy(data["train_labels"].astype(np.int64))
    if args.val > 0:
        x_tr, y_tr = x_all[:-args.val], y_all[:-args.val]
        x_va, y_va = x_all[-args.val:], y_all[-args.val:]
    else:
        x_tr, y_tr, x_va, y_va = x_all, y_all, None, None

    model = Net(HIDDEN[name])
    epochs = args.epochs if args.epochs else DEFAULT_EPOCHS[name]
    steps_per_epoch = (x_tr.shape[0] + args.batch_size - 1) // args.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15,
                                                anneal_strategy="cos")
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(x_tr.shape[0], generator=gen)
        tot, correct, n = 0.0, 0, 0
        for i in range(0, x_tr.shape[0], args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb = random_shift(x_tr[idx], args.shift, gen)
            yb = y_tr[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * yb.shape[0]
            correct += (out.argmax(1) == yb).sum().item()
            n += yb.shape[0]
        msg = f"[{name}] epoch {ep + 1:3d}/{epochs} loss {tot / n:.4f} train-acc(aug) {100 * correct / n:.2f}%"
        if x_va is not None:
            va, _ = evaluate(model, x_va, y_va)
            msg += f" val-acc {100 * va:.2f}%"
        print(msg + f" ({time.time() - t0:.0f}s)", flush=True)
    return model, epochs, time.time() - t0


# ----------------------------------------------------------------------------- export / check

def export_onnx(model, path):
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=13,
                  do_constant_folding=True)
    try:
        torch.onnx.export(model, dummy, path, dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo argument
        torch.onnx.export(model, dummy, path, **kwargs)


def check_onnx(path, x, y):
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = [n.op_type for n in m.graph.node]
    try:
        import onnxruntime as ort
    except ImportError:
        print(f"  onnxruntime not available; {path} passed onnx.checker, ops {ops}")
        return None, ops
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    correct = 0
    for i in range(xn.shape[0]):
        logits = sess.run(["logits"], {"input": xn[i:i + 1]})[0]
        correct += int(np.argmax(logits[0]) == int(y[i]))
    return correct / xn.shape[0], ops


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/")
    ap.add_argument("--mnist", default=DEFAULT_MNIST)
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--epochs", type=int, default=0, help="0 = per-model default (small 30, large 40)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.02)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--shift", type=int, default=2, help="max random shift in pixels (0 = none)")
    ap.add_argument("--val", type=int, default=0, help="hold out the last N training images (tuning)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, base seed {args.seed}")

    data, meta = load_mnist(args.mnist)
    os.makedirs(args.out, exist_ok=True)
    x_te = to_input(data["test_images"])
    y_te = torch.from_numpy(data["test_labels"].astype(np.int64))

    # Ship the test set (byte-identical gzipped IDX) next to the models.
    mdir = os.path.join(args.out, "mnist")
    os.makedirs(mdir, exist_ok=True)
    shipped = {}
    for key in ("test_images", "test_labels"):
        src, gz, _ = meta[key]
        dst = os.path.join(mdir, FILES[key] + ".gz")
        if gz:
            shutil.copyfile(src, dst)
        else:
            with open(src, "rb") as fi, gzip.GzipFile(dst, "wb", mtime=0) as fo:
                shutil.copyfileobj(fi, fo)
        raw = gzip.open(dst, "rb").read()
        shipped[FILES[key] + ".gz"] = (sha256_file(dst), hashlib.sha256(raw).hexdigest())
    with open(os.path.join(mdir, "README.md"), "w") as f:
        f.write("# MNIST test set\n\n"
                "The 10,000-image MNIST test set (LeCun, Cortes, Burges: THE MNIST DATABASE of\n"
                "handwritten digits), as the official gzipped IDX files, byte-identical copies\n"
                "of the originals. Used to check the models in `data/*.onnx` (see\n"
                "`tools/train_mnist.py`, which wrote this folder). Pixels are uint8; the models\n"
                "take pixel/255.0 with no further normalisation. The training set is not\n"
                "included.\n\n"
                "| file | sha256 (gzipped) | sha256 (uncompressed) |\n| --- | --- | --- |\n")
        for name, (g, u) in shipped.items():
            f.write(f"| `{name}` | `{g}` | `{u}` |\n")
        f.write("\nCheck with `sha256sum t10k-*.gz` or `zcat FILE | sha256sum`.\n")

    models_json_path = os.path.join(args.out, "models.json")
    summary = {}
    if os.path.exists(models_json_path):
        with open(models_json_path) as f:
            summary = json.load(f)

    for k, name in enumerate(args.models.split(",")):
        seed = args.seed + (0 if name == "small" else 1)
        model, epochs, secs = train(name, data, args, seed)
        acc, maxabs = evaluate(model, x_te, y_te)
        fname = f"mnist_{name}.onnx"
        path = os.path.join(args.out, fname)
        export_onnx(model, path)
        ort_acc, ops = check_onnx(path, x_te, y_te)
        layer_names = [f"{type(m).__name__.lower()}{i}" for i, m in enumerate(model.linear_layers())]
        wmax = {ln: float(m.weight.detach().abs().max()) for ln, m in zip(layer_names, model.linear_layers())}
        print(f"[{name}] test acc (torch) {100 * acc:.2f}%  (onnxruntime) "
              f"{'n/a' if ort_acc is None else f'{100 * ort_acc:.2f}%'}  train time {secs:.0f}s")
        print(f"[{name}] max |pre-activation| per layer: "
              + ", ".join(f"{ln} {v:.2f}" for ln, v in zip(layer_names, maxabs)))
        print(f"[{name}] onnx ops: {ops}; size {os.path.getsize(path)} bytes")
        summary[name] = {
            "file": fname,
            "architecture": ARCH[name],
            "input": "float32 [1,1,28,28] named 'input', pixel/255.0, no mean/std normalisation",
            "output": "float32 [1,10] named 'logits' (no softmax)",
            "onnx_opset": 13,
            "onnx_ops": ops,
            "test_accuracy": round(100 * acc, 2),
            "test_accuracy_onnxruntime": None if ort_acc is None else round(100 * ort_acc, 2),
            "test_set": "MNIST t10k, 10,000 images (data/mnist/)",
            "max_abs_preactivation": {ln: round(v, 4) for ln, v in zip(layer_names, maxabs)},
            "max_abs_preactivation_note": "max over all 10,000 test images and all units of the "
                                          "layer output before ReLU (conv2d0 = conv output, last layer = logits)",
            "max_abs_weight": {ln: round(v, 4) for ln, v in wmax.items()},
            "recipe": (f"AdamW lr {args.lr} one-cycle (15% warm-up, cosine anneal), weight decay "
                       f"{args.weight_decay}, batch {args.batch_size}, {epochs} epochs, cross-entropy "
                       f"(label smoothing {args.label_smoothing}), "
                       f"random shifts of up to +-{args.shift} px, trained on "
                       f"{60000 - args.val} MNIST training images, final-epoch weights"),
            "seed": seed,
            "base_seed": args.seed,
            "train_seconds": round(secs, 1),
            "torch_version": torch.__version__,
        }
        with open(models_json_path, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    print(f"wrote {models_json_path}")


if __name__ == "__main__":
    main()
