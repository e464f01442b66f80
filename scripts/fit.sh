#!/usr/bin/env bash
# make fit: how many idle nodes this host holds, shown rather than estimated (issue: density).
#   NODES=60 SIZE=3 MODE=warm|cold IMAGE=debian-12
# Brings up NODES 2 GiB nodes in clusters of SIZE and keeps them all running; 60 s after the
# last `up` it prints the host's MemAvailable drop per node and what `vmctl doctor` then says,
# tries one more `cluster up` of SIZE*4 nodes (refused when the planner says they do not fit:
# the message, and proof that nothing was created) and removes every cluster it made.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-60}; SIZE=${SIZE:-3}; MODE=${MODE:-warm}; IMAGE=${IMAGE:-debian-12}
VMCTL=${VMCTL:-$PWD/.build/debug/vmctl}
rounds=$(( (NODES + SIZE - 1) / SIZE ))
names=(fitmore)
cleanup() { for n in "${names[@]}"; do "$VMCTL" cluster clean --name "$n" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
avail() { awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo; }
"$VMCTL" image build "$IMAGE" >&2
flag=""; [ "$MODE" = cold ] && flag="--cold"
[ "$MODE" = warm ] && "$VMCTL" image warm "$IMAGE" >&2
sync; echo 3 > /proc/sys/vm/drop_caches; sleep 2
a0=$(avail); t0=$(date +%s)
for i in $(seq 1 "$rounds"); do
  names+=("fit$i")
  "$VMCTL" cluster up "$SIZE" $flag --image "$IMAGE" --name "fit$i" >/dev/null
  echo "fit$i: $((i * SIZE)) nodes up, $(avail) MiB available" >&2
done
t1=$(date +%s)
sleep 60
a1=$(avail); n=$((rounds * SIZE))
running=$(pgrep -fc "guest=fit[0-9]+-node" || true)
doctor=$("$VMCTL" doctor 2>&1 | grep -i "host memory" || true)
more=$((SIZE * 4))
refusal=$("$VMCTL" cluster up "$more" $flag --image "$IMAGE" --name fitmore 2>&1 >/dev/null || true)
left=$("$VMCTL" cluster list 2>/dev/null | grep -c fitmore || true)
echo
echo "| nodes running ($MODE, 2 GiB each) | all up in | MemAvailable before / after | per node | still available |"
echo "|---|---|---|---|---|"
echo "| $running of $n | $((t1 - t0)) s | $a0 / $a1 MiB | $(( (a0 - a1) / n )) MiB | $a1 MiB |"
echo
echo "doctor then: $doctor"
echo "one more \`cluster up $more\`: ${refusal:-accepted} (clusters named fitmore afterwards: $left)"
