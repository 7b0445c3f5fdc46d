#!/usr/bin/env python3
"""PyTorch reference for `bench/compare.sh`: the five seed models of SEEDS.md built with
torch.nn, timed on the same full training step as `Gan.Host bench`:
one discriminator update (real batch + detached fake batch) then one generator update through
the updated discriminator, Adam(2e-4, betas 0.5/0.999), BCE-with-logits losses, random data.

Usage: python3 bench/torch_reference.py MODEL [--batch B] [--steps N] [--threads T]
Prints: model=NAME batch=B median_ms=X min_ms=Y peak_rss_mb=Z
Run each model in its own process so that peak RSS is its own (compare.sh does)."""
import argparse, os, resource, statistics, time

def build(name, torch):
    nn = torch.nn

    def bn2d(c, momentum=0.1, eps=1e-5):
        return nn.BatchNorm2d(c, momentum=momentum, eps=eps)

    if name == "mlp":
        g = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 256), nn.ReLU(),
                          nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784), nn.Tanh(),
                          nn.Unflatten(1, (1, 28, 28)))
        d = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1))
        return g, d, 100, (1, 28, 28)
    if name == "dcgan28":
        k = dict(momentum=0.2)  # as ../shared/bench/torch_anchor.py (Keras momentum 0.8)
        g = nn.Sequential(nn.Linear(100, 128 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (128, 7, 7)),
                          nn.Upsample(scale_factor=2), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), bn2d(128, **k),
                          nn.Upsample(scale_factor=2), nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(), bn2d(64, **k),
                          nn.Conv2d(64, 1, 3, padding=1), nn.Tanh())
        d = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout(0.25),
                          nn.Conv2d(32, 64, 3, 2, 1), nn.ZeroPad2d((0, 1, 0, 1)), bn2d(64, **k), nn.LeakyReLU(0.2), nn.Dropout(0.25),
                          nn.Conv2d(64, 128, 3, 2, 1), bn2d(128, **k), nn.LeakyReLU(0.2), nn.Dropout(0.25),
                          nn.Conv2d(128, 256, 3, 1, 1), bn2d(256, **k), nn.LeakyReLU(0.2), nn.Dropout(0.25),
                          nn.Flatten(), nn.Linear(256 * 4 * 4, 1))
        return g, d, 100, (1, 28, 28)
    if name == "mbd28":
        class Mbd(nn.Module):
            def __init__(self, n_in, b, c):
                super().__init__()
                self.b, self.c = b, c
                self.lin = nn.Linear(n_in, b * c)

            def forward(self, x):
                m = self.lin(x).view(-1, self.b, self.c)
                o = torch.exp(-(m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)).sum(1) - 1
                return torch.cat([o, x], 1)

        g = nn.Sequential(nn.Linear(62, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                          nn.Linear(1024, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
                          nn.Unflatten(1, (128, 7, 7)), nn.ConvTranspose2d(128, 64, 4, 2, 1), bn2d(64), nn.ReLU(),
                          nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Sigmoid())
        d = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1), bn2d(128),
                          nn.LeakyReLU(0.2), nn.Flatten(), Mbd(128 * 7 * 7, 32, 32),
                          nn.Linear(128 * 7 * 7 + 32, 1024), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))
        return g, d, 62, (1, 28, 28)
    if name == "dcgan64":
        def up(i, o, s=2, p=1):
            return [nn.ConvTranspose2d(i, o, 4, s, p, bias=False), bn2d(o), nn.ReLU()]

        def down(i, o, norm=True):
            return [nn.Conv2d(i, o, 4, 2, 1, bias=False)] + ([bn2d(o)] if norm else []) + [nn.LeakyReLU(0.2)]

        g = nn.Sequential(nn.Unflatten(1, (100, 1, 1)), *up(100, 512, 1, 0), *up(512, 256), *up(256, 128),
                          *up(128, 64), nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
        d = nn.Sequential(*down(3, 64, False), *down(64, 128), *down(128, 256), *down(256, 512),
                          nn.Conv2d(512, 1, 4, 1, 0, bias=False), nn.Flatten())
        return g, d, 100, (3, 64, 64)
    if name == "valid64":
        k = dict()  # as ../shared/bench/torch_anchor.py: PyTorch's BatchNorm defaults
        g = nn.Sequential(nn.Linear(100, 3 * 3 * 512), nn.Unflatten(1, (512, 3, 3)), nn.LeakyReLU(0.2),
                          nn.ConvTranspose2d(512, 256, 3, 3), bn2d(256, **k), nn.ConvTranspose2d(256, 128, 5, 2),
                          bn2d(128, **k), nn.ConvTranspose2d(128, 3, 4, 3), nn.Tanh())
        d = nn.Sequential(nn.Conv2d(3, 64, 5, 3), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 5, 3), bn2d(128, **k),
                          nn.LeakyReLU(0.2), nn.Conv2d(128, 256, 5, 3), bn2d(256, **k), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.Linear(256, 1))
        return g, d, 100, (3, 64, 64)
    raise SystemExit(f"unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g, d, zdim, shape = build(a.model, torch)
    batch = a.batch or (256 if a.model == "mlp" else 64)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, *shape) * 2 - 1
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def step():
        fake = g(torch.randn(batch, zdim))
        opt_d.zero_grad()
        loss_d = F.binary_cross_entropy_with_logits(d(real), ones) + \
            F.binary_cross_entropy_with_logits(d(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        F.binary_cross_entropy_with_logits(d(fake), ones).backward()
        opt_g.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model={a.model} batch={batch} median_ms={statistics.median(times):.1f} "
          f"min_ms={min(times):.1f} peak_rss_mb={rss:.0f}", flush=True)


if __name__ == "__main__":
    main()
