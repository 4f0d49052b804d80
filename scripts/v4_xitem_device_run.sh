#!/usr/bin/env bash
# On the H200 (NOTES_v4.md step 8): the cross-item variant of the persistent kernel
# (FLASH_ATTN_EXT_V4_XITEM=1) against the default, in one call of under 480 s:
#   1. build the extension in place (TORCH_CUDA_ARCH_LIST=9.0; about 100 s on 16 cores);
#   2. hang guard: a few small calls of the variant on 7 CTAs under `timeout 60` (a barrier or
#      turn mismatch would hang here; then nothing else runs);
#   3. scripts/check_v4.py: the whole correctness sweep for v4_xitem and v4_xitem7 (E = 64, 128,
#      bf16 and fp16), then v4 (the default: persistent at S <= 1024) and v4_xitem timed side by
#      side with SDPA flash and cuDNN at N = 512, 1024, 4096;
#   4. compute-sanitizer memcheck and synccheck on scripts/v4_sanitize.py (E = 64, 128) with the
#      v4_xitem7 environment;
#   5. the check's table, printed last.
# Logs in OUT: build.log, guard.log, check.log (+ check.json), sanitizer_*.log.
# Usage: bash scripts/v4_xitem_device_run.sh OUT
set -o pipefail
OUT=${1:?usage: bash scripts/v4_xitem_device_run.sh OUT}
mkdir -p "$OUT"
export PYTHONPATH=$PWD FLASH_ATTN_EXT_SKIP_NVCC_CHECK=1 TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1
start=$(date +%s)
budget=470  # seconds for the whole call, under the 480 s limit
elapsed() { echo $(( $(date +%s) - start )); }
XITEM7=(FLASH_ATTN_EXT_V4_PERSISTENT=1 FLASH_ATTN_EXT_V4_XITEM=1 FLASH_ATTN_EXT_V4_CTAS=7)

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
MAX_JOBS=16 python3 setup.py build_ext --inplace >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build done at $(elapsed) s"

# Hang guard: E = 64 (192 x 128 non-causal, 128 x 128 causal) and 128, causal both ways, tails,
# keyless query blocks (bottom-right L > S), several items per CTA; each output against the
# library's float64 reference (the full tolerance rule is check_v4.py's, below).
env "${XITEM7[@]}" timeout 60 python3 - >"$OUT/guard.log" 2>&1 <<'PY'
import torch
import flash_attn_ext as fa
from flash_attn_ext.reference import attention_reference

torch.manual_seed(0)
worst = 0.0
for E in (64, 128):
    for L, S, causal in ((300, 257, False), (640, 640, True), (1000, 300, "bottom_right"), (513, 1025, False)):
        q = torch.randn(2, 4, L, E, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(2, 4, S, E, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        out = fa.flash_attention(q, k, v, causal=causal, kernel="v4_wgmma")
        ref, _ = attention_reference(q, k, v, causal=causal)
        err = (out.double() - ref).abs().max().item()
        worst = max(worst, err)
        print(f"E={E} L={L} S={S} causal={causal}: max abs err {err:.2e}")
torch.cuda.synchronize()
print(f"guard done, worst {worst:.2e}", "OK" if worst < 3e-2 else "TOO LARGE")
PY
guard_rc=$?
echo "guard rc=$guard_rc at $(elapsed) s: $(tail -1 "$OUT/guard.log")"
if [ $guard_rc != 0 ]; then
  tail -20 "$OUT/guard.log"
  [ $guard_rc = 124 ] && echo "HANG in the guard (suspect a barrier phase or a pingpong turn of the cross step)"
  exit 1
fi

# The sanitizers run after the check and keep san_s seconds for themselves.
san_s=110
left=$(( budget - $(elapsed) - san_s ))
V4_VARIANTS=v4_xitem,v4_xitem7 V4_BENCH=v4,v4_xitem timeout $(( left > 30 ? left : 30 )) \
  python3 scripts/check_v4.py --head-dims 64,128 --ns 512,1024,4096 --no-mask --json "$OUT/check.json" \
  >"$OUT/check.log" 2>&1
check_rc=$?
echo "check rc=$check_rc at $(elapsed) s"

for tool in memcheck synccheck; do
  t=$(( (budget - $(elapsed)) / 2 ))
  [ "$tool" = synccheck ] && t=$(( budget - $(elapsed) ))
  env "${XITEM7[@]}" PYTORCH_NO_CUDA_MEMORY_CACHING=1 V4_SAN_E=64,128 timeout $(( t > 20 ? t : 20 )) \
    compute-sanitizer --tool $tool python3 scripts/v4_sanitize.py >"$OUT/sanitizer_${tool}_v4_xitem7.log" 2>&1
  echo "sanitizer $tool v4_xitem7 rc=$? at $(elapsed) s: $(tail -2 "$OUT/sanitizer_${tool}_v4_xitem7.log" | tr '\n' ' ')"
done

# A check cut off by its timeout never prints the table: show the rows it had timed instead.
[ $check_rc = 124 ] && grep '^{' "$OUT/check.log"
grep -v "^{" "$OUT/check.log" | tail -45
echo "total $(elapsed) s"
