#!/usr/bin/env python3
"""PyTorch reference training of the colour seeds S3 (dcgan64) and S5 (valid64) on the emoji set,
with Gan.Host's recipe: batch 64, Adam(2e-4, betas 0.5/0.999) for both networks, non-saturating
BCE, one D update (real batch and detached fake batch, each through D on its own as BatchNorm sees
them) then one G update through the updated D on the same fake batch. dcgan64: learning rates
halved at epochs 10, 20 and 25, weights N(0, 0.02), BatchNorm scale N(1, 0.02); valid64:
PyTorch's default initialisation and Keras's BatchNorm (momentum 0.99, eps 1e-3), as the zoo.
It reads the training images Gan.Host prepared (`train --dataset emoji` once), so both train on
the same pixels; it writes a 4x4 grid of fixed noise per epoch (G in eval mode, as `train`'s
grids) and a loss.csv of epoch means, to compare learning with `train --model M --dataset emoji`
(docs/quality.md). Not a test: a documented command. Needs Debian's python3-torch and
python3-pil (run it with /usr/bin/python3).

Usage: python3 bench/torch_train_reference.py OUT [--model dcgan64] [--epochs 30] [--threads 1]
           [--seed 0] [--data ~/.cache/gan-functional/emoji/emoji-train-idx4-ubyte]
"""
import argparse, os, struct, time


def read_idx(path, np):
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic[:2] != b"\x00\x00" or magic[2] != 0x08:
            raise SystemExit(f"{path}: not an unsigned-byte IDX file")
        dims = struct.unpack(">" + "I" * magic[3], f.read(4 * magic[3]))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", choices=["dcgan64", "valid64"], default="dcgan64")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=os.path.expanduser("~/.cache/gan-functional/emoji/emoji-train-idx4-ubyte"))
    a = ap.parse_args()
    import numpy as np
    import torch
    from PIL import Image
    nn = torch.nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)

    x = torch.from_numpy(read_idx(a.data, np).astype(np.float32)).sub_(127.5).div_(127.5)
    n = x.shape[0]

    if a.model == "dcgan64":
        def up(i, o, s, p):
            return nn.ConvTranspose2d(i, o, 4, s, p, bias=False)

        def down(i, o, s, p):
            return nn.Conv2d(i, o, 4, s, p, bias=False)

        g = nn.Sequential(up(100, 512, 1, 0), nn.BatchNorm2d(512), nn.ReLU(),
                          up(512, 256, 2, 1), nn.BatchNorm2d(256), nn.ReLU(),
                          up(256, 128, 2, 1), nn.BatchNorm2d(128), nn.ReLU(),
                          up(128, 64, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                          up(64, 3, 2, 1), nn.Tanh())
        d = nn.Sequential(down(3, 64, 2, 1), nn.LeakyReLU(0.2),
                          down(64, 128, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                          down(128, 256, 2, 1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
                          down(256, 512, 2, 1), nn.BatchNorm2d(512), nn.LeakyReLU(0.2),
                          down(512, 1, 1, 0), nn.Flatten())
        for m in list(g.modules()) + list(d.modules()):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        decay = (10, 20, 25)
    else:
        def bn(c):
            return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)  # Keras's 0.99

        g = nn.Sequential(nn.Linear(100, 3 * 3 * 512), nn.Unflatten(1, (512, 3, 3)), nn.LeakyReLU(0.2),
                          nn.ConvTranspose2d(512, 256, 3, 3), bn(256), nn.ConvTranspose2d(256, 128, 5, 2),
                          bn(128), nn.ConvTranspose2d(128, 3, 4, 3), nn.Tanh())
        d = nn.Sequential(nn.Conv2d(3, 64, 5, 3), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 5, 3), bn(128),
                          nn.LeakyReLU(0.2), nn.Conv2d(128, 256, 5, 3), bn(256), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.Linear(256, 1))
        decay = ()
    og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    zshape = (100, 1, 1) if a.model == "dcgan64" else (100,)
    fixed = torch.randn(16, *zshape)
    log = open(os.path.join(a.out, "loss.csv"), "w")
    log.write("epoch,Real_P,Fake_P,Gen_loss,Dis_loss,seconds\n")
    for epoch in range(1, a.epochs + 1):
        lr = 2e-4 * 0.5 ** sum(epoch > e for e in decay)
        for o in (og, od):
            for pg in o.param_groups:
                pg["lr"] = lr
        perm = torch.randperm(n)
        sums = np.zeros(4)
        steps = 0
        t0 = time.time()
        for b in range(0, n, 64):
            real = x[perm[b:b + 64]]
            m = real.shape[0]
            fake = g(torch.randn(m, *zshape))
            od.zero_grad()
            lr_real, lr_fake = d(real), d(fake.detach())
            ld = bce(lr_real, torch.ones_like(lr_real)) + bce(lr_fake, torch.zeros_like(lr_fake))
            ld.backward()
            od.step()
            og.zero_grad()
            out = d(fake)
            lg = bce(out, torch.ones_like(out))
            lg.backward()
            og.step()
            sums += [torch.sigmoid(lr_real).mean().item(), torch.sigmoid(lr_fake).mean().item(), lg.item(), ld.item()]
            steps += 1
        s = sums / steps
        log.write(f"{epoch},{s[0]:.6f},{s[1]:.6f},{s[2]:.6f},{s[3]:.6f},{time.time() - t0:.1f}\n")
        log.flush()
        print(f"epoch {epoch}/{a.epochs}: D(x) {s[0]:.3f} D(G(z)) {s[1]:.3f} G {s[2]:.3f} D {s[3]:.3f} ({time.time() - t0:.0f} s)", flush=True)
        g.eval()
        with torch.no_grad():
            im = ((g(fixed) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        g.train()
        grid = np.full((4 * 66 + 2, 4 * 66 + 2, 3), 0, np.uint8)
        for i in range(16):
            r, c = divmod(i, 4)
            grid[2 + r * 66:2 + r * 66 + 64, 2 + c * 66:2 + c * 66 + 64] = im[i].transpose(1, 2, 0)
        Image.fromarray(grid).save(os.path.join(a.out, f"epoch-{epoch:04d}.png"))
        torch.save({"g": g.state_dict(), "d": d.state_dict()}, os.path.join(a.out, "last.pt"))


if __name__ == "__main__":
    main()
