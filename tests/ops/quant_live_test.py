"""Live dequantisation parity with gguf-py, on fresh random blocks every run.

Fixed oracle files can be fitted to; fresh data cannot. Each run draws a new seed, makes
random valid blocks of every type that both gguf-py (gguf==0.19.0) and flashplan
dequantise, writes them with gguf.GGUFWriter into a temporary GGUF (one tensor per type,
plus F32/F16/BF16), and requires `flashplan dequant FILE TENSOR -o OUT` to equal
gguf.quants.dequantize bit for bit. Blocks are drawn as shared/oracle/quant's were:
random bytes, fp16 scale fields overwritten by finite values (log-uniform magnitude in
[1e-3, 1], random sign), plus some blocks whose scales take edge values (zeros,
subnormals, +-65504). A binary without the `dequant` command fails this test.

Also re-checks the sha256 of every copied oracle file (tests/data/quant/index.json) and
of the IQ tables ops/quant/iq_tables.cpp was generated from (tables/SHA256SUMS; the C++
test checks the generated entries against those files).

Env: FLASHPLAN_BIN (the flashplan binary), FLASHPLAN_TEST_DATA (tests/data).
"""
import hashlib
import importlib.metadata
import os
import secrets
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

# Byte offsets of the fp16 scale fields per block (GGUF.md §11).
F16_SCALES = {
    T.Q4_0: [0], T.Q8_0: [0], T.Q2_K: [80, 82], T.Q4_K: [0, 2], T.Q5_K: [0, 2],
    T.Q6_K: [208], T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ3_XXS: [0],
}
FLOAT_TYPES = [T.F32, T.F16, T.BF16]
# fp16 bit patterns of edge scales: +-0, smallest/largest subnormal, smallest normal, 1, ~1/3, +-65504.
EDGE = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x3555, 0x7BFF, 0xFBFF],
                dtype=np.uint16)
ROWS = 4
BLOCKS_PER_ROW = 16


def random_quant_blocks(rng, qtype, n_blocks):
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_SCALES[qtype]:
        mag = np.exp(rng.uniform(np.log(1e-3), 0.0, size=n_blocks))
        sign = np.where(rng.integers(0, 2, size=n_blocks) == 1, -1.0, 1.0)
        scales = (mag * sign).astype(np.float16).view(np.uint16)
        edge = rng.integers(0, 4, size=n_blocks) == 0          # about a quarter of the blocks
        scales = np.where(edge, EDGE[rng.integers(0, len(EDGE), size=n_blocks)], scales)
        blocks[:, off:off + 2] = scales.astype("<u2").view(np.uint8).reshape(n_blocks, 2)
    return blocks


def random_float_elements(rng, qtype, n):
    if qtype == T.F32:
        bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
        bits = np.where((bits & 0x7F800000) == 0x7F800000, bits & 0x807FFFFF, bits)  # no inf/NaN
        return bits.astype("<u4").view(np.uint8)
    bits = rng.integers(0, 2**16, size=n, dtype=np.uint32).astype(np.uint16)
    exp_mask = 0x7C00 if qtype == T.F16 else 0x7F80
    bits = np.where((bits & exp_mask) == exp_mask, bits & ~np.uint16(exp_mask), bits)  # finite
    return bits.astype("<u2").view(np.uint8)


def check_data(data_dir):
    """Names of copied files whose sha256 differs from the oracle's index / SHA256SUMS."""
    import json
    quant = os.path.join(data_dir, "quant")
    bad = []
    with open(os.path.join(quant, "index.json")) as f:
        for entry in json.load(f)["files"]:
            with open(os.path.join(quant, entry["file"]), "rb") as d:
                if hashlib.sha256(d.read()).hexdigest() != entry["sha256"]:
                    bad.append(entry["file"])
    tables = os.path.join(quant, "tables")
    with open(os.path.join(tables, "SHA256SUMS")) as f:
        for line in f:
            want, name = line.split()
            with open(os.path.join(tables, name), "rb") as t:
                if hashlib.sha256(t.read()).hexdigest() != want:
                    bad.append(name)
    return bad


def main():
    binary = os.environ.get("FLASHPLAN_BIN")
    data_dir = os.environ.get("FLASHPLAN_TEST_DATA")
    if not binary or not data_dir:
        print("FAIL: FLASHPLAN_BIN and FLASHPLAN_TEST_DATA must be set")
        return 1
    failures = []
    bad_data = check_data(data_dir)
    if bad_data:
        failures.append(f"copied oracle files do not match their recorded sha256: {bad_data}")

    seed = secrets.randbits(63)
    print(f"seed {seed} (gguf {importlib.metadata.version('gguf')}, "
          f"numpy {np.__version__})")
    rng = np.random.default_rng(seed)

    tensors = {}  # name -> (qtype, expected f32 array)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "live.gguf")
        writer = gguf.GGUFWriter(path, "flashplan-quant-live")
        for qtype in list(F16_SCALES) + FLOAT_TYPES:
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            if qtype in FLOAT_TYPES:
                cols = 1000                        # elements per row
                raw = random_float_elements(rng, qtype, ROWS * cols).reshape(ROWS, -1)
            else:
                raw = random_quant_blocks(rng, qtype, ROWS * BLOCKS_PER_ROW).reshape(ROWS, -1)
            name = f"live.{qtype.name.lower()}.weight"
            writer.add_tensor(name, raw, raw_dtype=qtype)
            expect = gguf.quants.dequantize(raw, qtype).astype(np.float32, copy=False)
            assert np.all(np.isfinite(expect)), f"{qtype.name}: generator made a non-finite value"
            tensors[name] = (qtype, expect.reshape(-1))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

        for name, (qtype, expect) in tensors.items():
            out = os.path.join(tmp, name + ".f32")
            r = subprocess.run([binary, "dequant", path, name, "-o", out],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                failures.append(f"{qtype.name}: `flashplan dequant` exited {r.returncode}: "
                                f"{r.stderr.strip()[:300]}")
                continue
            if not os.path.exists(out):
                failures.append(f"{qtype.name}: `flashplan dequant` exited 0 but wrote no {out}")
                continue
            got = np.fromfile(out, dtype="<f4")
            if got.size != expect.size:
                failures.append(f"{qtype.name}: {got.size} values, expected {expect.size}")
                continue
            diff = np.nonzero(got.view(np.uint32) != expect.view(np.uint32))[0]
            if diff.size:
                i = int(diff[0])
                failures.append(f"{qtype.name}: {diff.size} of {expect.size} values differ; "
                                f"first at {i}: got {got[i]!r}, gguf-py {expect[i]!r}")
            else:
                print(f"ok {qtype.name}: {expect.size} values bit-identical")

    if failures:
        print(f"FAIL (seed {seed}):")
        for f in failures:
            print("  " + f)
        return 1
    print(f"all {len(tensors)} tensors bit-identical with gguf-py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
