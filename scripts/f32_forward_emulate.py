"""CPU emulation of v3_mma's float32 forward (3xTF32 and TF32) and of SDPA's efficient backend on
float32, to find which rounding dominates the error against a float64 reference.

Every rounding site of the kernel is a switch: on, it rounds as the GPU does (or as our model of the
GPU does); off, it stays exact (float64). Turning one site off at a time shows its share. "main" is
the kernel of NOTES_v3 step 2 (alpha = ex2(fma(m_old, c, -m_new*c)), every P*V k-step folded into O);
"fixed" is step 5 (alpha from the two rounded bases, P*V folded once per 32 keys).
Inputs: randn q, k, v in float32, default scale; error = max|out - ref| / max|ref| per seed.

    python scripts/f32_forward_emulate.py [--rows 128] [--seeds 2] [--quick]     (~45 s at the defaults)

Models (no GPU here, so these are assumptions, stated where used):
- tensor core (mma.m16n8k8 TF32): products exact, the sum of the 8 products and the accumulator
  truncated (round toward zero) to float32 ("rz"); "rz4" does it per 4 products, "rn" rounds to nearest.
  "rz" reproduces the measured step-1 and step-2 errors (3.8e-5, 4.8e-6) within 1.5-2x.
- ex2.approx.ftz.f32: exactly 1 at +-0 (PTX ISA), elsewhere the exact 2^x times (1 + e), |e| <= 2^-22,
  e a fixed pseudo-random function of the argument's bits; rcp.approx: likewise with |e| <= 2^-23.
"""
import argparse
import time

import numpy as np

KEYS_PER_TILE = 32  # kBlockN of the float32 modes at E = 128 (tile_sizes.h)
LOG2E = 1.4426950408889634


def f32(x):
    return np.asarray(x, np.float64).astype(np.float32).astype(np.float64)


def rz32(x):
    """Round float64 to float32 toward zero."""
    x = np.asarray(x, np.float64)
    f = x.astype(np.float32)
    over = np.abs(f.astype(np.float64)) > np.abs(x)
    f = np.where(over, np.nextafter(f, np.float32(0)), f)
    return f.astype(np.float64)


def tf32(x):
    """cvt.rna.tf32.f32: keep 10 mantissa bits, round to nearest, ties away from zero."""
    u = np.asarray(x, np.float64).astype(np.float32).view(np.uint32)
    u = (u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    return u.view(np.float32).astype(np.float64)


def tf32_trunc(x):
    u = np.asarray(x, np.float64).astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)
    return u.view(np.float32).astype(np.float64)


def hash_unit(x):
    """A fixed pseudo-random value in [-1, 1) per float32 argument (models a table-based approximation)."""
    u = np.asarray(x, np.float64).astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    u ^= u >> np.uint64(29)
    u = (u * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    u ^= u >> np.uint64(32)
    return (u & np.uint64(0xFFFFFF)).astype(np.float64) / 2.0**23 - 1.0


# Rounding sites of the kernel. True = as on the GPU.
SITES = {
    "split": "operands split into TF32 big + small (rna), small*small dropped",
    "tc": "tensor-core sum of each mma truncated to float32",
    "sacc": "float32 running sum S += part (Q*K^T fold)",
    "oacc": "float32 running sum O += part (P*V fold), O *= alpha",
    "scale": "scale*log2(e) rounded to float32",
    "arg": "exp2 argument fma(s, c, -base) and base = m*c rounded",
    "ex2": "ex2.approx (+-2^-22) and P rounded to float32",
    "lsum": "row sum l accumulated in float32",
    "rcp": "rcp.approx for 1/l, O*inv rounded",
}


class Emu:
    def __init__(self, on, tc_model="rz", split_small="rna", keep_pv_ss=False, alpha="fma", ex2_err=2.0**-22,
                 fold=True, pv_fold=1):
        self.on = dict(on)
        self.tc_model = tc_model
        self.split_small = split_small
        self.keep_pv_ss = keep_pv_ss
        self.alpha = alpha  # "fma": ex2(fma(m_old, c, -base)) as on main; "base": ex2(m_old*c - base), both rounded
        self.ex2_err = ex2_err
        self.fold = fold  # False: the step-1 kernel, products straight into the running accumulators
        self.pv_fold = pv_fold  # k-steps of P*V whose products share one zeroed accumulator before O += part

    def r(self, site, x):
        return f32(x) if self.on[site] else x

    def split(self, x, x3):
        """(big, small) as the mma sees them; small is None for plain TF32."""
        if not self.on["split"]:
            return x, None
        big = tf32(x)
        if not x3:
            return big, None
        small = tf32(x - big) if self.split_small == "rna" else tf32_trunc(x - big)
        return big, small

    def mma(self, c, a, b):
        """c + a @ b for a (R, 8), b (8, N), rounded as the tensor core does."""
        if not self.on["tc"]:
            return c + a @ b
        if self.tc_model == "rn":
            return f32(c + a @ b)
        if self.tc_model == "rz4":
            # hardware k 0..3 hold elements 0, 2, 4, 6 (warp_mma32.cuh's permutation)
            c = rz32(c + a[:, 0::2] @ b[0::2])
            return rz32(c + a[:, 1::2] @ b[1::2])
        return rz32(c + a @ b)

    def product(self, a, b, x3, ss=False, c=None):
        """One k-step: the three (or one) products into the accumulator c (zeroed by default), as mma_step does."""
        ab, as_ = a
        bb, bs = b
        part = np.zeros((ab.shape[0], bb.shape[1])) if c is None else c
        if as_ is None or bs is None:  # plain TF32, or the split switched off (exact operands)
            return self.mma(part, ab, bb)
        part = self.mma(part, as_, bb)
        part = self.mma(part, ab, bs)
        if ss:
            part = self.mma(part, as_, bs)
        return self.mma(part, ab, bb)

    def ex2(self, x):
        y = np.exp2(x)
        if self.on["ex2"]:
            # PTX: ex2.approx(+-0) = 1 exactly
            y = f32(np.where(x == 0, 1.0, y * (1.0 + hash_unit(x) * self.ex2_err)))
        return y

    def forward(self, q, k, v, scale, x3=True):
        """v3_fwd_kernel for rows q (R, E), all keys k, v (S, E), non-causal, no mask."""
        R, E = q.shape
        S = k.shape[0]
        c = f32(scale * LOG2E) if self.on["scale"] else scale * LOG2E
        qsp = [self.split(q[:, i:i + 8], x3) for i in range(0, E, 8)]
        O = np.zeros((R, E))
        m = np.full(R, -np.inf)
        lt = np.zeros((R, 4))  # each quad thread's partial row sum
        for n0 in range(0, S, KEYS_PER_TILE):
            kt, vt = k[n0:n0 + KEYS_PER_TILE], v[n0:n0 + KEYS_PER_TILE]
            s = np.zeros((R, kt.shape[0]))
            for i, qs in enumerate(qsp):
                ks = self.split(kt[:, 8 * i:8 * i + 8].T, x3)
                if x3 and self.fold:
                    s = self.r("sacc", s + self.product(qs, ks, x3))
                elif x3:
                    s = self.mma(self.mma(self.mma(s, qs[1], ks[0]), qs[0], ks[1]), qs[0], ks[0])
                else:
                    s = self.mma(s, qs[0], ks[0])
            m_new = np.maximum(m, s.max(1))
            base = self.r("arg", m_new * c)
            if not np.isfinite(m).all():
                alpha = np.zeros(R)
            elif self.alpha == "fma":
                alpha = self.ex2(self.r("arg", m * c - base))
            else:
                alpha = self.ex2(self.r("arg", self.r("arg", m * c) - base))
            m = m_new
            p = self.ex2(self.r("arg", s * c - base[:, None]))
            # thread t of a quad holds columns 2t, 2t + 1 of each 8-key block
            pq = p.reshape(R, -1, 4, 2)
            ssum = np.zeros((R, 4))
            for nb in range(pq.shape[1]):
                ssum = self.r("lsum", ssum + self.r("lsum", pq[:, nb, :, 0] + pq[:, nb, :, 1]))
            lt = self.r("lsum", lt * alpha[:, None] + ssum)
            O = self.r("oacc", O * alpha[:, None])
            part = np.zeros((R, E))
            for j, kb in enumerate(range(0, kt.shape[0], 8)):
                pa = self.split(p[:, kb:kb + 8], x3)
                vb = self.split(vt[kb:kb + 8], x3)
                if x3 and self.fold:
                    part = self.product(pa, vb, x3, ss=self.keep_pv_ss, c=part)
                    if (j + 1) % self.pv_fold == 0:
                        O = self.r("oacc", O + part)
                        part = np.zeros((R, E))
                elif x3:
                    O = self.mma(self.mma(self.mma(O, pa[1], vb[0]), pa[0], vb[1]), pa[0], vb[0])
                else:
                    O = self.mma(O, pa[0], vb[0])
        lr = self.r("lsum", self.r("lsum", lt[:, 0] + lt[:, 1]) + self.r("lsum", lt[:, 2] + lt[:, 3]))
        inv = 1.0 / lr
        if self.on["rcp"]:
            inv = f32(inv * (1.0 + hash_unit(lr) * 2.0**-23))
            return f32(O * inv[:, None])
        return f32(O / lr[:, None])


def sdpa_efficient(q, k, v, scale, tc_model="rz"):
    """PyTorch's mem-efficient kernel on float32, sm80+ (xformers' 32x128 'gmem' config at E = 128):
    3xTF32 (cutlass FastF32: rna big and small, order small*big, big*small, big*big) into the running
    accumulator over E for Q*K^T and over a 128-key block for P*V; softmax in float32 with exp2f
    (modelled as correctly rounded, ~2 ulp in CUDA's table) and scale*log2(e) as one float32; the
    block's P*V folded into the output by the epilogue's float32 FMA; 1/l an IEEE division."""
    emu = Emu({s: True for s in SITES}, tc_model=tc_model)
    R, E = q.shape
    S = k.shape[0]
    BLK = 128
    c = f32(f32(scale) * f32(LOG2E))
    qsp = [emu.split(q[:, i:i + 8], True) for i in range(0, E, 8)]
    out = np.zeros((R, E))
    mi = np.full(R, -np.inf)
    sp = np.zeros(R)
    for n0 in range(0, S, BLK):
        kt, vt = k[n0:n0 + BLK], v[n0:n0 + BLK]
        acc = np.zeros((R, kt.shape[0]))
        for i, (qb, qs) in enumerate(qsp):
            kb_, ks_ = emu.split(kt[:, 8 * i:8 * i + 8].T, True)
            acc = emu.mma(acc, qs, kb_)
            acc = emu.mma(acc, qb, ks_)
            acc = emu.mma(acc, qb, kb_)
        s = f32(acc * c)
        m_new = np.maximum(mi, s.max(1))
        resc = f32(np.exp2(f32(mi - m_new))) if np.isfinite(mi).all() else np.zeros(R)
        mi = m_new
        p = f32(np.exp2(f32(s - mi[:, None])))
        sp = f32(sp * resc + f32(p.sum(1)))
        pv = np.zeros((R, E))
        for kb in range(0, kt.shape[0], 8):
            pb, ps = emu.split(p[:, kb:kb + 8], True)
            vb, vs = emu.split(vt[kb:kb + 8], True)
            pv = emu.mma(pv, ps, vb)
            pv = emu.mma(pv, pb, vs)
            pv = emu.mma(pv, pb, vb)
        last = n0 + BLK >= S
        alpha = f32(1.0 / sp) if last else np.ones(R)
        beta = f32(alpha * resc)
        out = f32(alpha[:, None] * pv + f32(beta[:, None] * out))
    return out


def reference(q, k, v, scale):
    s = (q @ k.T) * scale
    p = np.exp(s - s.max(1, keepdims=True))
    return (p @ v) / p.sum(1, keepdims=True)


def inputs(seed, rows, S, E):
    g = np.random.default_rng(seed)
    q = f32(g.standard_normal((rows, E)))
    k = f32(g.standard_normal((S, E)))
    v = f32(g.standard_normal((S, E)))
    return q, k, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--S", type=int, default=4096)
    ap.add_argument("--E", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="only all-on, all-off and SDPA")
    args = ap.parse_args()
    data = [inputs(s, args.rows, args.S, args.E) for s in range(args.seeds)]
    scale = 1.0 / np.sqrt(args.E)
    refs = [reference(q, k, v, scale) for q, k, v in data]

    def err(fn):
        t = time.time()
        mx, rms = 0.0, 0.0
        for (q, k, v), ref in zip(data, refs):
            d = np.abs(fn(q, k, v) - ref) / np.abs(ref).max()
            mx, rms = max(mx, d.max()), max(rms, np.sqrt((d * d).mean()))
        return mx, rms, time.time() - t

    all_on = {s: True for s in SITES}
    fixed = dict(alpha="base", pv_fold=4)
    cases = [("main: every site as the kernel", Emu(all_on)),
             ("every site exact (float32 output only)", Emu({s: False for s in SITES}))]
    if not args.quick:
        cases += [(f"main, exact: {s} ({what})", Emu(dict(all_on, **{s: False}))) for s, what in SITES.items()]
    cases.append(("rescale fix only: alpha = ex2(m_old*c - m_new*c), products rounded", Emu(all_on, alpha="base")))
    cases.append(("fixed: rescale fix + P*V folded once per 32 keys", Emu(all_on, **fixed)))
    if not args.quick:
        cases += [(f"fixed, exact: {s}", Emu(dict(all_on, **{s: False}), **fixed)) for s in SITES]
        cases += [
            ("fixed, tensor core rz per 4 products", Emu(all_on, tc_model="rz4", **fixed)),
            ("fixed, tensor core rounds to nearest", Emu(all_on, tc_model="rn", **fixed)),
            ("fixed, ex2.approx error 2^-23", Emu(all_on, ex2_err=2.0**-23, **fixed)),
            ("fixed, small by truncation", Emu(all_on, split_small="trunc", **fixed)),
            ("fixed, P*V keeps small*small", Emu(all_on, keep_pv_ss=True, **fixed)),
            ("main, ex2.approx error 0 (only the fma residual)", Emu(all_on, ex2_err=0.0)),
            ("step 1 kernel (no fold: products into running accumulators)", Emu(all_on, fold=False)),
        ]
    print(f"rows {args.rows} x seeds {args.seeds}, S={args.S}, E={args.E}; error / max|ref| vs float64")
    print(f"{'case':64} {'max':>9} {'rms':>9}")

    def show(name, fn):
        mx, rms, dt = err(fn)
        print(f"{name:64} {mx:9.2e} {rms:9.2e}  ({dt:.0f} s)", flush=True)

    for name, emu in cases:
        show(name, lambda q, k, v: emu.forward(q, k, v, scale))
    show("SDPA efficient (3xTF32, running accumulators), tc rz", lambda q, k, v: sdpa_efficient(q, k, v, scale))
    show("SDPA efficient, tc rounds to nearest", lambda q, k, v: sdpa_efficient(q, k, v, scale, tc_model="rn"))
    show("TF32 (one product, running accumulators), fixed alpha",
         lambda q, k, v: Emu(all_on, **fixed).forward(q, k, v, scale, x3=False))


if __name__ == "__main__":
    main()
