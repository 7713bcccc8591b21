"""The CUDA epoch on paper: FLOPs, bytes, tiles and grid syncs per phase, and a predicted
epoch time on an H100 against PyTorch CUDA eager (issue 29, item 4).

    python benchmarks/perf_model.py            # both cases of gpu_check.py, one table each

Nothing here has run on a GPU.  The phase list, the tiles each phase can keep busy and
the grid are the backend's own (``train.schedule``, ``train.phase_blocks``, 16 x 16
blocks, register block 2); the hardware figures are NVIDIA's published H100 SXM numbers;
the per-k-step latency, the grid-sync cost and PyTorch's per-kernel dispatch cost are
assumptions, named in ASSUMED, which the first GPU run (``gpu_check.py``) confirms or
refutes.  The prediction for a phase is the largest of three floors:

* compute: FLOPs at the SIMT float32 peak (the kernels use no tensor cores) times the
  share of the grid the phase's tiles occupy, and at most a quarter of it, since a
  2 x 2 register block loads one shared value per FMA (32 loads a clock an SM against
  128 FMAs);
* memory: the bytes the phase must move (inputs read once, outputs written once) at the
  HBM bandwidth;
* latency: the longest chain of k-steps a block runs (tiles per block x k-steps per
  tile), each a global load, two ``syncthreads`` and 16 x R^2 FMAs with 8 warps a block
  to hide them.

The persistent grid holds BLOCKS_PER_SM 256-thread blocks an SM: two since the kernel
came down to 108-111 registers a thread in float32 and 128 in float64 (ptxas, sm_80 /
sm_90; it held 215-225, one block an SM, before issue 29 item 2), so up to 264 blocks on
132 SMs.  (The cases below are float32; a float64 epoch has the same grid.)  A phase with
more than 132 tiles then runs them in half the waves, two blocks (16 warps) an SM; a
phase with fewer still fills one block on each of that many SMs.  The table's
"SMs x blocks" column says which.

plus one grid sync after every phase.
"""

import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

H100 = {  # NVIDIA H100 SXM5, published
    "sms": 132, "clock_hz": 1.98e9, "fp32_simt_flops": 67e12, "hbm_bytes_s": 3.35e12,
}
ASSUMED = {
    "kstep_cycles": 800,       # one k-step of a GEMM tile: global load latency + 2 syncs + FMAs
    "grid_sync_s": 2e-6,       # one cooperative grid.sync() of ~132 blocks
    "torch_kernel_s": 8e-6,    # PyTorch eager: host dispatch per kernel, which bounds it
    "torch_kernels_per_step": 30,  # 3 Linear + 2 ReLU + loss fwd/bwd + Adam (foreach) kernels
}
CASES = {
    # as gpu_check.CASES: (n, d, classes, hidden, batch, epochs)
    "medium 20000x784 (256,128) b256": (20000, 784, 10, (256, 128), 256, 3),
    "small 4000x40 (100,100) b100": (4000, 40, 10, (100, 100), 100, 20),
}
T, R, DSIZE = 16, 2, 4  # tile edge, register block, float32
# resident 256-thread blocks an SM of the float32 persistent kernel: 65536 registers an SM
# / (256 threads x its registers), which ptxas gives as 112-116 (<= 128: two blocks);
# gpu_check.py --ptx-quick reports it, tests/test_ptx.py holds it
BLOCKS_PER_SM = 2


def phases(n, d, k, hidden, batch):
    """[(phase name, tiles or blocks, FLOPs, bytes, k-steps a block runs)] of one full batch,
    and (grid blocks, batches an epoch)."""
    import numpy as np

    from fastmlp._registry import OUTPUTS
    from fastmlp.backends.cuda import train as Tr
    from fastmlp.backends.layout import FAN_IN, ZCOLS, make_layout

    spec = make_layout(d, hidden, k, "relu", 0.0, 2, OUTPUTS["softmax"], np.float32)
    table = Tr.schedule(spec.layers, spec.code, True)
    blocks = Tr.phase_blocks(spec.layers, table, batch, d, k, spec.n_params, T, R)
    grid = min(H100["sms"] * BLOCKS_PER_SM, max(blocks))  # all resident (cooperative)
    m, out = batch, []
    names = {v: k_ for k_, v in vars(Tr).items() if k_.isupper() and isinstance(v, int)
             and k_ in ("GATHER", "FORWARD", "MAXOUT_FWD", "LOSS", "BACKWARD", "HIDDEN_BWD",
                        "STEP", "OUTPUT")}
    for (kind, l), nb in zip(table, blocks):
        fi, zc = int(spec.layers[l, FAN_IN]), int(spec.layers[l, ZCOLS])
        waves = math.ceil(nb / grid)
        if kind == Tr.FORWARD:
            fl = 2 * m * fi * zc
            by = DSIZE * (m * fi + fi * zc + 2 * m * zc)
            chain = waves * math.ceil(fi / T)
        elif kind == Tr.BACKWARD:
            dh = l > 0
            fl = 2 * m * fi * zc * (2 if dh else 1)
            by = DSIZE * (m * fi + m * zc + fi * zc * (2 if dh else 1) + (m * fi if dh else 0))
            # dW tiles run the batch (m / T k-steps), dH tiles the outputs (zc / T)
            chain = waves * max(math.ceil(m / T), math.ceil(zc / T) if dh else 0)
        elif kind == Tr.STEP:
            fl, by, chain = 10 * spec.n_params, DSIZE * 7 * spec.n_params, 0
        elif kind == Tr.GATHER:
            fl, by, chain = 0, DSIZE * 2 * m * d, 0
        else:  # LOSS
            fl, by, chain = 10 * m * k, DSIZE * 3 * m * k, 0
        out.append((f"{names[int(kind)]} {int(l)}", nb, fl, by, chain))
    return out, grid, math.ceil(n / batch)


def occupancy(busy):
    """(SMs with a working block, working blocks on the busiest SM) for ``busy`` blocks of
    the grid at work (blocks are placed one an SM first, then a second on each)."""
    return min(busy, H100["sms"]), -(-busy // H100["sms"])


def predict(case):
    n, d, k, hidden, batch, epochs = CASES[case]
    rows, grid, nb = phases(n, d, k, hidden, batch)
    per_sm_flops = H100["fp32_simt_flops"] / H100["sms"] / 4  # shared-load bound, 2 x 2 block
    table, total = [], 0.0
    for name, tiles, fl, by, chain in rows:
        busy = min(tiles, grid)
        t_c = fl / (per_sm_flops * min(busy, H100["sms"]))  # two blocks share an SM's FMAs
        t_m = by / H100["hbm_bytes_s"]
        t_l = chain * ASSUMED["kstep_cycles"] / H100["clock_hz"]
        t = max(t_c, t_m, t_l) + ASSUMED["grid_sync_s"]
        total += t
        table.append((name, tiles, fl, by, t_c, t_m, t_l, t, occupancy(busy)))
    epoch = total * nb
    torch_epoch = nb * ASSUMED["torch_kernels_per_step"] * ASSUMED["torch_kernel_s"]
    return table, grid, nb, epoch, torch_epoch, epochs


def main():
    print("Assumed (not measured): " + ", ".join(f"{k} = {v}" for k, v in ASSUMED.items()))
    for case in CASES:
        table, grid, nb, epoch, torch_epoch, epochs = predict(case)
        print(f"\n### {case}: {nb} batches an epoch, persistent grid {grid} blocks "
              f"(up to {BLOCKS_PER_SM} per SM), {len(table)} phases = {len(table)} grid syncs "
              f"a batch, {len(table) * nb} an epoch\n")
        print("| phase | tiles / blocks | SMs x blocks | MFLOP | MB | compute floor us | "
              "memory floor us | latency floor us | predicted us (+ sync) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, tiles, fl, by, t_c, t_m, t_l, t, (sms, per_sm) in table:
            print(f"| {name} | {tiles} | {sms} x {per_sm} | {fl / 1e6:.2f} | {by / 1e6:.3f} | "
                  f"{t_c * 1e6:.1f} | {t_m * 1e6:.1f} | {t_l * 1e6:.1f} | {t * 1e6:.1f} |")
        flops = sum(r[2] for r in table) * nb
        print(f"\nepoch: {flops / 1e9:.2f} GFLOP; predicted fastmlp persistent "
              f"{epoch * 1e3:.1f} ms an epoch ({epochs} epochs: {epoch * epochs * 1e3:.0f} ms); "
              f"PyTorch CUDA eager, dispatch-bound: {torch_epoch * 1e3:.1f} ms an epoch "
              f"({epochs} epochs: {torch_epoch * epochs * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
