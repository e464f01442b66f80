#!/usr/bin/env bash
# make soak: boots NODES nodes in clusters of SIZE (`cluster up SIZE --cold`, then `clean`, again and
# again) and counts the nodes vmctl had to reset because their boot hung, with the evidence it
# kept for each (reports/CLUSTER-NODE-resetN-*: QEMU's run state, registers, serial and QEMU logs).
#   NODES=60  SIZE=3  IMAGE=debian-12
# Uses the state dir vmctl would (VMCTL_HOME), so a built image is reused; its output, each
# round's log and copies of the reset reports go to OUT (default a new /var/tmp/vmctl-soak.*).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-60}; SIZE=${SIZE:-3}; IMAGE=${IMAGE:-debian-12}
VMCTL=$PWD/.build/debug/vmctl
OUT=${OUT:-$(mktemp -d /var/tmp/vmctl-soak.XXXXXX)}
NAME=soak$$
trap '"$VMCTL" cluster clean --name "$NAME" >/dev/null 2>&1 || true' EXIT
STATE=${VMCTL_HOME:-/var/lib/vmctl}  # vmctl's own default for root
"$VMCTL" image build "$IMAGE" >&2

rounds=$(( (NODES + SIZE - 1) / SIZE ))
resets=0; failed=0; nodes_reset=0; times=()
for i in $(seq 1 "$rounds"); do
  log="$OUT/round-$i.log"
  t0=$(date +%s.%N)
  status=0
  "$VMCTL" cluster up "$SIZE" --cold --image "$IMAGE" --name "$NAME" >"$log" 2>&1 || status=$?
  t1=$(date +%s.%N)
  secs=$(python3 -c "print('%.1f' % ($t1-$t0))")
  n=$(grep -c "resetting it" "$log" || true)
  nr=$(grep -c "resetting it (1 of 2)" "$log" || true)
  resets=$((resets + n)); nodes_reset=$((nodes_reset + nr))
  [ "$status" -eq 0 ] || failed=$((failed + 1))
  times+=("$secs")
  echo "round $i/$rounds: up $SIZE in $secs s, exit $status, $n reset(s)" >&2
  "$VMCTL" cluster clean --name "$NAME" >>"$log" 2>&1 || true
done
mkdir -p "$OUT/reports"
for d in "$STATE"/reports/"$NAME"-*; do [ -e "$d" ] && cp -r "$d" "$OUT/reports/"; done

median=$(python3 -c 'import sys,statistics; print("%.1f" % statistics.median(map(float, sys.argv[1:])))' "${times[@]}")
slowest=$(python3 -c 'import sys; print("%.1f" % max(map(float, sys.argv[1:])))' "${times[@]}")
echo
echo "| nodes booted | clusters of | nodes reset | resets | failed ups | median up | slowest up |"
echo "|---|---|---|---|---|---|---|"
echo "| $((rounds * SIZE)) | $SIZE | $nodes_reset | $resets | $failed | ${median} s | ${slowest} s |"
echo
echo "logs and reset evidence: $OUT"
