#!/usr/bin/env bash
# make fit: how many idle nodes this host holds, shown rather than estimated (issue: density).
#   NODES=60 SIZE=3 FIT_MODE=warm|cold IMAGE=debian-12
# Brings up NODES 2 GiB nodes in clusters of SIZE and keeps them all running (stopping early,
# and saying so, if vmctl's planner refuses a round); 60 s after the last `up` it prints the
# host's MemAvailable drop per node and what `vmctl doctor` then says, tries one `cluster up`
# of one node more than doctor says fit (it must be refused with nothing created) and removes
# every cluster it made. Its clusters are named fit<PID>-N: it never touches another's.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-60}; SIZE=${SIZE:-3}; MODE=${FIT_MODE:-warm}; IMAGE=${IMAGE:-debian-12}
case "$MODE" in warm) flag=() ;; cold) flag=(--cold) ;; *) echo "FIT_MODE is warm or cold, not '$MODE'" >&2; exit 2 ;; esac
VMCTL=${VMCTL:-$PWD/.build/debug/vmctl}
P=fit$$
rounds=$(( (NODES + SIZE - 1) / SIZE ))
made=()
cleanup() { for n in "${made[@]}"; do "$VMCTL" cluster clean --name "$n" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
avail() { awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo; }
"$VMCTL" image build "$IMAGE" >&2
[ "$MODE" = warm ] && "$VMCTL" image warm "$IMAGE" >&2
sync; echo 3 > /proc/sys/vm/drop_caches; sleep 2
a0=$(avail); t0=$(date +%s); up=0; stopped=""
for i in $(seq 1 "$rounds"); do
  # vmctl removes what a failed `up` made, so only an `up` that succeeded is ours to clean.
  if out=$("$VMCTL" cluster up "$SIZE" "${flag[@]}" --image "$IMAGE" --name "$P-$i" 2>&1 >/dev/null); then
    made+=("$P-$i"); up=$((up + SIZE))
    echo "$P-$i: $up nodes up, $(avail) MiB available" >&2
  else
    stopped="round $i refused or failed: $out"; echo "$stopped" >&2; break
  fi
done
t1=$(date +%s)
sleep 60
a1=$(avail)
running=$(pgrep -fc "guest=$P-[0-9]+-node" || true)
# doctor's numbers, from its JSON (it exits 1 when a prerequisite is missing; the numbers stand).
report=$("$VMCTL" doctor --json 2>/dev/null || true)
fit=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["hostMemory"]["idleNodesFit"])' "$report")
doctor=$(python3 -c 'import json,sys; print(next(c["detail"] for c in json.loads(sys.argv[1])["checks"] if c["name"] == "host memory"))' "$report")
more=$(( ${fit:-0} + 1 ))
if refusal=$("$VMCTL" cluster up "$more" "${flag[@]}" --image "$IMAGE" --name "$P-more" 2>&1 >/dev/null); then
  made+=("$P-more"); refusal="ACCEPTED (doctor said $fit fit)"
fi
left=$("$VMCTL" cluster list 2>/dev/null | grep -c "$P-more" || true)
echo
echo "| nodes running ($MODE, 2 GiB each) | all up in | MemAvailable before / after | per node | still available |"
echo "|---|---|---|---|---|"
echo "| $running of $NODES asked | $((t1 - t0)) s | $a0 / $a1 MiB | $(( (a0 - a1) / (up > 0 ? up : 1) )) MiB | $a1 MiB |"
echo
[ -n "$stopped" ] && echo "stopped early: $stopped"
echo "doctor then: $doctor"
echo "one more \`cluster up $more\`: $refusal (clusters named $P-more afterwards: $left)"
