#!/usr/bin/python3
"""The scaling model of docs/distributed.md: predicted efficiency of data-parallel training with
libcfnet_mpi for the paper's networks, ring all-reduce, at 10 and 100 Gbit/s.

Model (no overlap of communication with computation: the hook runs after the whole backward, and
synchronised batch norm waits inside the forward and backward):
  step time      T(p) = Tc + Tgrad(p) + Tbn(p)
  gradients      Tgrad = 2 (p - 1) alpha + 2 (p - 1) / p * S / Beff     (ring all-reduce)
  batch norm     Tbn   = k * ceil(log2 p) * (alpha + m / Beff)          (recursive doubling, small)
  efficiency     E(p) = Tc / T(p)
with S = 4 (P + 1) bytes (float gradients and the loss), k small all-reduces per step of m bytes
(2 per batch-norm layer in the forward, C doubles each; 1 in the backward, 2C doubles), Tc the
measured single-core compute time of one step at a local batch of 50 (docs/performance.md), weak
scaling (50 samples per rank, global batch 50 p), latency alpha 25 us at 10 Gbit/s (TCP over
Ethernet) and 2 us at 100 Gbit/s (InfiniBand/RoCE verbs), achieved bandwidth Beff 80 % of the
link rate.
"""
import math

NETS = {
    # name: (parameters, compute ms per step at batch 50 on one core, batch-norm layers, C)
    "yeast CFNet (2x64x64)": (321622, 664.3, 8, 32),
    "rot-MNIST CFNet (1x28x28)": (14575, 28.55, 0, 15),
}
LINKS = {"10 Gbit/s": (10e9, 25e-6), "100 Gbit/s": (100e9, 2e-6)}
RANKS = (8, 64, 512)


def step_times(params, tc_ms, bn_layers, channels, p, rate, alpha):
    beff = 0.8 * rate / 8  # bytes per second
    s = 4 * (params + 1)
    tgrad = 2 * (p - 1) * alpha + 2 * (p - 1) / p * s / beff
    small = [8 * channels] * (2 * bn_layers) + [16 * channels] * bn_layers
    tbn = sum(math.ceil(math.log2(p)) * (alpha + m / beff) for m in small)
    return tc_ms / 1e3, tgrad, tbn


def main():
    print("| network | parameters | bytes per gradient all-reduce | compute per step (1 core, "
          "batch 50) | link | E(8) | E(64) | E(512) | communication per step at 512 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (params, tc, bn, ch) in NETS.items():
        for link, (rate, alpha) in LINKS.items():
            effs = []
            for p in RANKS:
                tcs, tg, tb = step_times(params, tc, bn, ch, p, rate, alpha)
                effs.append(tcs / (tcs + tg + tb))
            tcs, tg, tb = step_times(params, tc, bn, ch, 512, rate, alpha)
            print(f"| {name} | {params:,} | {4 * (params + 1) / 1e6:.2f} MB | {tc:.1f} ms | {link} | "
                  + " | ".join(f"{100 * e:.1f} %" for e in effs)
                  + f" | {1e3 * (tg + tb):.2f} ms |")


if __name__ == "__main__":
    main()
