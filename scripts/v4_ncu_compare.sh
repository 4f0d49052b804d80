#!/usr/bin/env bash
# On the H200, from the repository root: Nsight Compute metrics of v4 beside cuDNN's attention kernel, one
# launch each after warm-up, bf16, B * N = 16k, H = 2048 / E: duration, tensor-pipe and issue
# activity, DRAM bytes and throughput, L2 hit rate, instructions, and the stall reasons (warps per issued
# instruction, those >= 0.05). Builds first; logs under OUT.
#   bash scripts/v4_ncu_compare.sh OUT "E:N[:c] ..."     e.g. "256:512 64:1024:c" (c: causal)
set -o pipefail
OUT=${1:-${OUT:-/tmp/v4_ncu_out}}
SHAPES=${2:-256:512}
source scripts/device_env.sh
begin_run 540 "$OUT" || exit 1
M="gpu__time_duration.sum,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"
M+=",dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed"
M+=",lts__t_sector_hit_rate.pct,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active"
M+=",regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio"
prof() {  # KERNEL_REGEX TAG CMD...: metrics of the second matching launch
  local kernel=$1 tag=$2
  shift 2
  timeout "$(cap 120 60)" ncu --clock-control none -k regex:"$kernel" -s 1 -c 1 --metrics "$M" "$@" >"$OUT/ncu_$tag.txt" 2>&1
  echo "== $tag (rc $?)"
  grep -E "^ +(gpu__|sm__|dram__|lts__|smsp__)" "$OUT/ncu_$tag.txt" | awk '$1 !~ /stalled/ || $NF + 0 >= 0.05 {print $1, $NF}' |
    sed 's/smsp__average_warps_issue_stalled_/stall_/; s/_per_issue_active.ratio//' | paste -sd' ' | fold -w 160
}
for shape in $SHAPES; do
  IFS=: read -r E N C <<<"$shape"
  causal=0 tag="E${E}_N$N"
  [ "$C" = c ] && causal=1 tag="${tag}_causal"
  prof v4_fwd "v4_$tag" python3 scripts/v4_profile.py "$E" "$N" "$causal"
  prof "cudnn|fprop" "cudnn_$tag" python3 - "$E" "$N" "$causal" <<'PY'
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

E, N, causal = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
q, k, v = (torch.randn(16384 // N, 2048 // E, N, E, device="cuda", dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    for _ in range(2):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
torch.cuda.synchronize()
PY
done
since "done"
