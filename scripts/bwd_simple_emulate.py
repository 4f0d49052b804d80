"""numpy emulation of bwd_simple's index mapping (tiles.cuh, dkdv_kernel.cuh, dq_kernel.cuh: CTA / warp / lane /
pair ownership, Layout strides, causal start rows and key ends, GQA, float-mask bias) in float64 against dense
float64 gradients; run without a GPU: python3 scripts/bwd_simple_emulate.py (about 20 s)."""
import numpy as np, math
rng = np.random.default_rng(0)
NT = 128
def tiles(D): return (32, 16) if D <= 128 else (16, 8)
def r32(x): return (x + 31) // 32 * 32
def run(B, H, Hkv, L, S, E, Ev, causal, maskkind):
    G = H // Hkv
    q = rng.standard_normal((B, H, L, E)); k = rng.standard_normal((B, Hkv, S, E)); v = rng.standard_normal((B, Hkv, S, Ev))
    scale = 1 / math.sqrt(E)
    off = 0 if causal != 'br' else S - L
    kk = np.repeat(k, G, 1); vv = np.repeat(v, G, 1)
    s = np.einsum('bhle,bhse->bhls', q, kk) * scale
    keep = np.ones((B, H, L, S), bool)
    bias = np.zeros((H, 1, S))
    if maskkind == 'float':
        bias = rng.standard_normal((H, 1, S)); bias[:, :, 3] = -np.inf
        keep &= np.isfinite(np.broadcast_to(bias, (B, H, L, S)))
        s = s + np.where(np.isfinite(bias), bias, 0)
    if causal:
        keep &= (np.arange(S)[None, :] <= np.arange(L)[:, None] + off)
    s = np.where(keep, s, -np.inf)
    m = s.max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = np.where(np.isfinite(m[..., 0]), (m + np.log(np.exp(s - np.where(np.isfinite(m), m, 0)).sum(-1, keepdims=True)))[..., 0], -np.inf)
    P = np.where(keep & np.isfinite(lse)[..., None], np.exp(s - np.where(np.isfinite(lse), lse, 0)[..., None]), 0)
    O = P @ vv; dO = rng.standard_normal(O.shape); Dl = (dO * O).sum(-1)
    dS = P * (dO @ vv.transpose(0, 1, 3, 2) - Dl[..., None])
    rdq = dS @ kk * scale; rdk = (dS.transpose(0, 1, 3, 2) @ q * scale).reshape(B, Hkv, G, S, E).sum(2); rdv = (P.transpose(0, 1, 3, 2) @ dO).reshape(B, Hkv, G, S, Ev).sum(2)
    D = {32: 32, 64: 64, 128: 128, 256: 256}[max(32, 1 << (max(E, Ev) - 1).bit_length())] if max(E, Ev) > 32 else 32
    Bc, Br = tiles(D); e32, ev32 = r32(E), r32(Ev); NC = D // 32; KPW = Bc // 4; RPW = Br // 4; PP = Br * Bc // NT; step = NT // Bc
    log2e = 1 / math.log(2)
    def stage_q(b, h, i0):
        sQ = np.zeros((Br, e32)); sdO = np.zeros((Br, ev32)); lse2 = np.full(Br, np.inf); sD = np.zeros(Br)
        for r in range(Br):
            row = i0 + r
            if row < L:
                sQ[r, :E] = q[b, h, row]; sdO[r, :Ev] = dO[b, h, row]; sD[r] = Dl[b, h, row]
                if lse[b, h, row] != -np.inf: lse2[r] = lse[b, h, row] * log2e
        return sQ, sdO, lse2, sD
    def stage_k(b, hk, j0):
        sK = np.zeros((Bc, e32 + 4)); sV = np.zeros((Bc, ev32 + 4))
        for j in range(Bc):
            if j0 + j < S: sK[j, :E] = k[b, hk, j0 + j]; sV[j, :Ev] = v[b, hk, j0 + j]
        return sK, sV
    def probs(b, h, i0, j0, sQ, sdO, lse2, sD, sK, sV):
        sP = np.zeros((Br, Bc)); sdS = np.zeros((Br, Bc))
        for t in range(NT):
            j, r0 = t % Bc, t // Bc
            for u in range(PP):
                r = r0 + step * u; row = i0 + r; key = j0 + j
                sdot = sQ[r, :e32] @ sK[j, :e32]; dp = sdO[r, :ev32] @ sV[j, :ev32]
                vis = row < L and key < S and lse2[r] != np.inf and (not causal or key <= row + off)
                x = sdot * scale * log2e - lse2[r]
                if vis and maskkind == 'float':
                    bb = bias[h, 0, key] * log2e; vis = bb != -np.inf; x += bb
                pr = ds = 0.
                if vis:
                    pr = 2 ** x; ds = 0 if pr == 0 else pr * (dp - sD[r])
                sP[r, j] = pr; sdS[r, j] = ds
        return sP, sdS
    dk = np.zeros_like(k); dv = np.zeros_like(v); dq = np.zeros_like(q)
    nkb = (S + Bc - 1) // Bc
    for blk in range(B * Hkv * nkb):
        kb, bhk = blk % nkb, blk // nkb; b, hk = bhk // Hkv, bhk % Hkv; j0 = kb * Bc
        sK, sV = stage_k(b, hk, j0)
        first = max(0, j0 - off) if causal else 0
        ib = first // Br * Br
        dK = np.zeros((4, KPW, NC, 32)); dV = np.zeros((4, KPW, NC, 32))
        for g in range(G):
            h = hk * G + g
            for i0 in range(ib, L, Br):
                sQ, sdO, lse2, sD = stage_q(b, h, i0)
                sP, sdS = probs(b, h, i0, j0, sQ, sdO, lse2, sD, sK, sV)
                for w in range(4):
                    for r in range(Br):
                        for kk_ in range(KPW):
                            for cc in range(NC):
                                cols = 32 * cc + np.arange(32)
                                o = sdO[r, cols] if 32 * cc < ev32 else 0; qv = sQ[r, cols] if 32 * cc < e32 else 0
                                dV[w, kk_, cc] += sP[r, w * KPW + kk_] * o; dK[w, kk_, cc] += sdS[r, w * KPW + kk_] * qv
        for w in range(4):
            for kk_ in range(KPW):
                key = j0 + w * KPW + kk_
                if key >= S: continue
                for cc in range(NC):
                    for lane in range(32):
                        col = 32 * cc + lane
                        if col < E: dk[b, hk, key, col] = dK[w, kk_, cc, lane] * scale
                        if col < Ev: dv[b, hk, key, col] = dV[w, kk_, cc, lane]
    nqb = (L + Br - 1) // Br
    for blk in range(B * H * nqb):
        qb, bh = blk % nqb, blk // nqb; b, h = bh // H, bh % H; hk = h // G; i0 = qb * Br
        sQ, sdO, lse2, sD = stage_q(b, h, i0)
        last = min(i0 + Br, L) - 1
        kend = S if not causal else min(max(last + off + 1, 0), S)
        acc = np.zeros((4, RPW, NC, 32))
        for j0 in range(0, kend, Bc):
            sK, sV = stage_k(b, hk, j0)
            sP, sdS = probs(b, h, i0, j0, sQ, sdO, lse2, sD, sK, sV)
            for w in range(4):
                for j in range(Bc):
                    for rr in range(RPW):
                        ds = sdS[w * RPW + rr, j]
                        if ds == 0: continue
                        for cc in range(NC):
                            if 32 * cc < e32: acc[w, rr, cc] += ds * sK[j, 32 * cc: 32 * cc + 32]
        for w in range(4):
            for rr in range(RPW):
                row = i0 + w * RPW + rr
                if row >= L: continue
                for cc in range(NC):
                    for lane in range(32):
                        col = 32 * cc + lane
                        if col < E: dq[b, h, row, col] = acc[w, rr, cc, lane] * scale
    errs = [np.abs(a - r).max() / max(np.abs(r).max(), 1e-30) for a, r in ((dq, rdq), (dk, rdk), (dv, rdv))]
    print((B, H, Hkv, L, S, E, Ev, causal, maskkind), ["%.1e" % e for e in errs])
    assert max(errs) < 1e-10
run(1, 4, 2, 21, 37, 40, 24, 'br', 'float')
run(1, 2, 1, 37, 21, 200, 160, 'br', None)
run(1, 2, 2, 19, 33, 20, 20, 'tl', None)
run(2, 2, 1, 9, 40, 256, 256, False, 'float')
