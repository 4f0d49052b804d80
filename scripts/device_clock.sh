# The wall-clock helpers of the device scripts (sourced after BUDGET_S is set): one device call has
# a hard limit, so each step gets a timeout that leaves time for the steps after it.
#   since MSG      prints MSG with the seconds since the script started
#   left           seconds left of BUDGET_S
#   cap MAX RESERVE  a step's timeout: MAX, or what is left minus RESERVE for the later steps (at least 10)
start=$(date +%s)
since() { echo "[$(($(date +%s) - start)) s] $*"; }
left() { echo $((BUDGET_S - ($(date +%s) - start))); }
cap() { local l=$(($(left) - $2)); echo $((l < $1 ? (l > 10 ? l : 10) : $1)); }
