"""Writes FP8 E4M3FN and FP4 E2M1 rounding vectors with torch's own dtypes.

Run on a machine with torch (the lent GPU machine: torch 2.11); the CPU is enough:
    python3 make_torch_vectors.py OUTDIR
Outputs raw little-endian float32 files (no header):
    fp8_e4m3fn.in.f32 / fp8_e4m3fn.out.f32   x and float(x.to(torch.float8_e4m3fn)), |x| <= 448
    fp4_e2m1.in.f32   / fp4_e2m1.out.f32     x and float(x.to(torch.float4_e2m1fn_x2)) when torch
                                              can cast to it, for |x| <= 6
and vectors.json describing them. The inputs cover every representable value, every midpoint
between neighbours (ties), values one float32 ulp either side of each midpoint, signed zeros,
subnormals, and log-uniform random values.
"""
import json
import struct
import sys

import numpy as np
import torch


def neighbours_and_midpoints(grid):
    grid = np.unique(np.asarray(grid, dtype=np.float64))
    mids = (grid[:-1] + grid[1:]) / 2
    vals = [grid, mids]
    m32 = mids.astype(np.float32)
    vals.append(np.nextafter(m32, np.float32(np.inf)).astype(np.float64))
    vals.append(np.nextafter(m32, np.float32(-np.inf)).astype(np.float64))
    v = np.concatenate(vals)
    return np.concatenate([v, -v])


def e4m3fn_grid():
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    return codes[np.isfinite(codes)]


def main(out):
    rng = np.random.default_rng(20261125)
    info = {"torch": torch.__version__, "numpy": np.__version__, "files": {}}

    g8 = e4m3fn_grid()
    x8 = np.concatenate([neighbours_and_midpoints(g8[g8 >= 0]),
                         np.sign(rng.standard_normal(20000)) * np.exp(rng.uniform(np.log(1e-4), np.log(448), 20000)),
                         [0.0, -0.0, 448.0, -448.0]]).astype(np.float32)
    x8 = x8[np.abs(x8) <= 448]
    y8 = torch.from_numpy(x8).to(torch.float8_e4m3fn).float().numpy()
    x8.tofile(f"{out}/fp8_e4m3fn.in.f32")
    y8.astype(np.float32).tofile(f"{out}/fp8_e4m3fn.out.f32")
    info["files"]["fp8_e4m3fn"] = {"count": int(x8.size), "dtype": "torch.float8_e4m3fn", "range": "|x| <= 448"}

    g4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float64)
    x4 = np.concatenate([neighbours_and_midpoints(g4),
                         np.sign(rng.standard_normal(4000)) * rng.uniform(0, 6, 4000),
                         [0.0, -0.0, 6.0, -6.0]]).astype(np.float32)
    x4 = x4[np.abs(x4) <= 6]
    try:
        n = x4.size + (x4.size & 1)
        xt = torch.zeros(n, dtype=torch.float32)
        xt[: x4.size] = torch.from_numpy(x4)
        q = xt.to(torch.float4_e2m1fn_x2)  # may be unsupported
        y4 = q.float().numpy()[: x4.size]
        how = "torch.float4_e2m1fn_x2 cast"
    except Exception as e:  # record why, fall back to nothing: no fabricated data
        y4 = None
        how = f"unsupported in this torch: {type(e).__name__}: {e}"
    if y4 is not None:
        x4.tofile(f"{out}/fp4_e2m1.in.f32")
        y4.astype(np.float32).tofile(f"{out}/fp4_e2m1.out.f32")
    info["files"]["fp4_e2m1"] = {"count": int(x4.size) if y4 is not None else 0, "how": how}
    with open(f"{out}/vectors.json", "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
