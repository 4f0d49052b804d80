"""Static SASS counts behind NOTES_bwd.md's v5 section, for one kernel of a cuobjdump -sass listing.

- lookahead: for every HMMA whose A or B registers were written by an LDSM, how many HMMAs were issued
  between that LDSM and this HMMA (few: the load's latency is exposed unless other warps cover it);
- spills: LDL/STL instructions inside an mma chain (an HMMA within 8 instructions on both sides) or not.

Counts are over the code as laid out, not over executed instructions (loops count once).

    cuobjdump -sass bwd_bf16_hd128_full.o > k.sass
    python3 scripts/bwd_sass_stats.py k.sass 'bwd_dkdv_kernel'     # v4
    python3 scripts/bwd_sass_stats.py k.sass 'Li32ELi1E'           # v5 (QS 32, 1 CTA)
"""
import bisect
import re
import statistics
import sys


def kernel_instructions(path, pattern):
    current, out = None, []
    with open(path) as f:
        for line in f:
            m = re.search(r"Function : (\S+)", line)
            if m:
                current = m.group(1)
                continue
            if current is None or not re.search(pattern, current):
                continue
            m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
            if m:
                out.append(m.group(2).strip())
    return out


def lookahead(ins):
    writer, dists, hmma = {}, [], 0
    for s in ins:
        s = re.sub(r"^@!?P\d+\s+", "", s)
        op = s.split()[0]
        regs = [int(r) for r in re.findall(r"\bR(\d+)\b", s)]
        if op.startswith("HMMA") and len(regs) >= 4:
            a, b = regs[1], regs[2]
            src = [writer[r] for r in (b, b + 1, a, a + 1, a + 2, a + 3) if r in writer]
            if src:
                dists.append(hmma - max(src))
            hmma += 1
            for r in range(regs[0], regs[0] + 4):
                writer.pop(r, None)
        elif op.startswith("LDSM") and regs:
            n = 4 if op.endswith(".4") else 2 if op.endswith(".2") else 1
            for r in range(regs[0], regs[0] + n):
                writer[r] = hmma
        elif regs and not op.startswith(("ST", "RED", "BRA", "BAR", "EXIT")):
            writer.pop(regs[0], None)  # the destination register no longer holds a fragment
    return dists


def spills(ins):
    hm = [i for i, s in enumerate(ins) if "HMMA" in s]
    inside = outside = 0
    for i, s in enumerate(ins):
        if re.search(r"\b(LDL|STL)", s):
            k = bisect.bisect_left(hm, i)
            before = hm[k - 1] if k > 0 else -10**9
            after = hm[k] if k < len(hm) else 10**9
            if i - before <= 8 and after - i <= 8:
                inside += 1
            else:
                outside += 1
    return inside, outside, len(hm)


def main():
    path, pattern = sys.argv[1], sys.argv[2]
    ins = kernel_instructions(path, pattern)
    if not ins:
        sys.exit(f"no kernel matching {pattern!r} in {path}")
    d = sorted(lookahead(ins))
    inside, outside, n_hmma = spills(ins)
    print(f"{pattern}: {len(ins)} instructions, {n_hmma} HMMA")
    if d:
        print(f"  HMMAs between LDSM and use: median {statistics.median(d)}, p10 {d[len(d) // 10]}, "
              f"p90 {d[9 * len(d) // 10]}, share <= 2: {sum(x <= 2 for x in d) / len(d):.2f} ({len(d)} HMMAs)")
    print(f"  spill instructions: {inside} inside mma chains, {outside} outside")


if __name__ == "__main__":
    main()
