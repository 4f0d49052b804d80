"""CPU model of the v4 bool-mask pre-pass (csrc/cuda/kernels/v4_wgmma/mask_bits.cuh) and of what the
masked kernel reads back (kernel_masked.cuh), checked against the dense visibility
mask AND (key < S) AND causal. Index math only, written the way the CUDA code computes it:

- pack: tile (trow, nt), row r, word t = ballot over lanes b of key 8*(b>>1) + 2t + (b&1);
  classes none / partial / all, hidden keys (seen by no row < L of the block, below key_end);
- list: compaction of the non-none tiles, entry (nt << 3) | hidden << 2 | cls;
- kernel: CTA (b, h, m_blk) visits its list; thread (cw, warp, lane) of a partial tile reads
  words bits[trow][nt][rl][t] and bits[..][rl + 8][t], accumulator element s[4 jb + e] is
  visible iff bit 2 jb + (e & 1) of word (e >> 1); all tiles: every element visible; rows >= L
  are not compared (never stored). The zeroing decode maps hidden bits back to keys.

    python scripts/v4_mask_model.py        # random cases, prints "ok" or the first mismatch
"""
import itertools
import sys

import numpy as np

BM = BN = 128
W = BN // 32


def layout(B, H, L, S, m_sb, m_sh):
    MB = B if (B > 1 and m_sb != 0) else 1
    MH = H if (H > 1 and m_sh != 0) else 1
    return MB, MH, -(-L // BM), -(-S // BN)


def prepass(mask4, B, H, L, S, causal, off, key_end):
    """mask4: (B, H, L, S) broadcast view (numpy, strides 0 where broadcast)."""
    m_sb, m_sh = mask4.strides[0], mask4.strides[1]
    MB, MH, MT, NT = layout(B, H, L, S, m_sb, m_sh)
    bits = np.zeros((MB * MH * MT, NT, BM, W), dtype=np.uint64)
    lst = np.zeros((MB * MH * MT, NT), dtype=np.int64)
    hid = np.zeros((MB * MH * MT, NT, W), dtype=np.uint64)
    lanes = np.arange(32)
    for trow in range(MB * MH * MT):
        m_blk = trow % MT
        mslice = trow // MT
        mh, mb = mslice % MH, mslice // MH
        for nt in range(NT):
            any_v, all_v, col = 0, 0xFFFFFFFF, [0] * W
            for r in range(BM):
                row = m_blk * BM + r
                w = []
                for t in range(W):
                    key = nt * BN + 8 * (lanes >> 1) + 2 * t + (lanes & 1)
                    vis = (row < L) & (key < S)
                    if causal:
                        vis &= key <= row + off
                    kk = np.minimum(key, S - 1)
                    vis &= mask4[mb, mh, min(row, L - 1), kk] if row < L else False
                    w.append(int(np.sum(vis.astype(np.uint64) << lanes.astype(np.uint64))))
                bits[trow, nt, r] = w
                if row < L:
                    for t in range(W):
                        any_v |= w[t]
                        all_v &= w[t]
                        col[t] |= w[t]
            cls = 0 if any_v == 0 else (2 if all_v == 0xFFFFFFFF else 1)
            h = []
            for t in range(W):
                x = ~col[t] & 0xFFFFFFFF
                for b in range(32):
                    if nt * BN + 8 * (b >> 1) + 2 * t + (b & 1) >= key_end:
                        x &= ~(1 << b)
                h.append(x)
            hidden = cls == 1 and any(h)
            lst[trow, nt] = cls | (4 if hidden else 0)
            hid[trow, nt] = h
    # compaction (warp chunks of 32, in place)
    count = np.zeros(MB * MH * MT, dtype=np.int64)
    for trow in range(MB * MH * MT):
        c = 0
        for base in range(0, NT, 32):
            chunk = [lst[trow, nt] if nt < NT else 0 for nt in range(base, base + 32)]
            for lane, v in enumerate(chunk):
                if v & 3:
                    assert c <= base + lane
                    lst[trow, c] = ((base + lane) << 3) | v
                    c += 1
        count[trow] = c
    return (MB, MH, MT, NT), bits, lst, count, hid


def kernel_view(B, H, L, S, lay, bits, lst, count, hid, key_end):
    """What the masked kernel computes as visible, (B, H, L, S), plus zeroed-V keys per CTA."""
    MB, MH, MT, NT = lay
    vis = np.zeros((B, H, L, S), dtype=bool)
    zero_ok = True
    for b, h, m_blk in itertools.product(range(B), range(H), range(MT)):
        trow = ((b if MB > 1 else 0) * MH + (h if MH > 1 else 0)) * MT + m_blk
        for i in range(count[trow]):
            e = int(lst[trow, i])
            nt, cls = e >> 3, e & 3
            assert cls in (1, 2) and nt * BN < key_end
            for cw, warp, lane in itertools.product(range(2), range(4), range(32)):
                g, t = lane // 4, lane % 4
                rl = cw * 64 + warp * 16 + g
                flat = bits[trow, nt].reshape(-1)  # [row][word]
                w0, w1 = int(flat[rl * W + t]), int(flat[rl * W + t + 8 * W])
                for jb, e2 in itertools.product(range(BN // 8), range(4)):
                    row = m_blk * BM + rl + (e2 >> 1) * 8
                    key = nt * BN + 8 * jb + 2 * t + (e2 & 1)
                    if row >= L:
                        continue
                    if cls == 2:
                        ok = True
                        assert key < S
                    else:
                        w = w1 if (e2 >> 1) else w0
                        ok = bool((w >> (2 * jb + (e2 & 1))) & 1)
                    if key < S:
                        vis[b, h, row, key] = ok
                    else:
                        assert not ok
            if e & 4:
                hw = [int(x) for x in hid[trow, nt]]
                for key_local in range(BN):  # the zeroing loop's decode
                    t = (key_local % 8) // 2
                    bit = 2 * (key_local // 8) + (key_local & 1)
                    if (hw[t] >> bit) & 1:
                        key = nt * BN + key_local
                        rows = range(m_blk * BM, min(L, m_blk * BM + BM))
                        # must be a loaded key that no row of the block sees
                        if key >= key_end or vis[b, h, list(rows), key].any():
                            zero_ok = False
    return vis, zero_ok


def run_case(rng, B, H, L, S, form, causal, off_mode, p):
    full = (B, H, L, S)
    shape = tuple(n if k else 1 for n, k in zip(full, form))
    small = rng.random(shape) < p
    if rng.random() < 0.3:
        small[..., : max(1, shape[2] // 3), :] = False  # fully masked rows
    mask4 = np.broadcast_to(small, full)
    off = 0 if off_mode == "tl" else S - L
    key_end = S if not causal else max(0, min(S, L + off))
    lay, bits, lst, count, hid = prepass(mask4, B, H, L, S, causal, off, key_end)
    vis, zero_ok = kernel_view(B, H, L, S, lay, bits, lst, count, hid, key_end)
    i = np.arange(L)[:, None]
    j = np.arange(S)[None, :]
    want = mask4.copy()
    if causal:
        want = want & (j <= i + off)
    # every visible pair must be in a visited tile and flagged; nothing else
    if not np.array_equal(vis, want) or not zero_ok:
        bad = np.argwhere(vis != want)
        return f"B{B} H{H} L{L} S{S} form{form} causal={causal} {off_mode} p={p}: {len(bad)} wrong, first {bad[:3].tolist()} zero_ok={zero_ok}"
    return None


def main():
    rng = np.random.default_rng(0)
    cases = [(1, 1, 130, 200), (2, 2, 129, 257), (1, 2, 64, 300), (2, 1, 300, 100), (1, 1, 1, 129), (1, 1, 257, 1)]
    forms = [(False, False, True, True), (True, False, True, True), (False, True, True, True),
             (True, True, True, True), (True, False, False, True), (False, False, True, False)]
    n = 0
    for (B, H, L, S), form in itertools.product(cases, forms):
        for causal, off_mode in ((False, "tl"), (True, "tl"), (True, "br")):
            for p in (0.5, 1.0, 0.02):
                err = run_case(rng, B, H, L, S, form, causal, off_mode, p)
                n += 1
                if err:
                    print("MISMATCH", err)
                    return 1
    print(f"v4_mask_model: ok ({n} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
