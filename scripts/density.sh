#!/usr/bin/env bash
# Host memory per idle node (issue: density), one Markdown row per measurement:
#   scripts/density.sh LABEL N MODE      MODE: cold | warm (warm: the snapshot is made first if missing)
#   COMPACT=1: `cluster compact` right after `up` (its time goes into the label), then the settle.
# The host's MemAvailable before `up` and SETTLE seconds (default 60) after it finished, divided
# by N; RSS and PSS of each node's QEMU (smaps_rollup) at the same moment. Uses VMCTL_HOME as
# given (bench passes its own); the cluster is removed afterwards. VMCTL_TB_CACHE_MIB and
# VMCTL_BALLOON pass through to vmctl (the levers being measured).
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL=$1; N=$2; MODE=$3; SETTLE=${SETTLE:-60}
VMCTL=${VMCTL:-$PWD/.build/debug/vmctl}
export VMCTL_BINARY=$VMCTL
name=density
avail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
qemu_pid() { pgrep -f "guest=$1," | head -1; }
trap '"$VMCTL" cluster clean --name $name >/dev/null 2>&1 || true' EXIT
flag=""
if [ "$MODE" = cold ]; then flag="--cold"; fi
if [ "$MODE" = warm ]; then
  # The snapshot of this shape (and these levers) first, through a throwaway cluster.
  "$VMCTL" image warm debian-12 >/dev/null
fi
sync; echo 3 > /proc/sys/vm/drop_caches
sleep 2
a0=$(avail)
t0=$(date +%s.%N)
"$VMCTL" cluster up "$N" --name $name $flag >/dev/null
t1=$(date +%s.%N)
if [ "${COMPACT:-0}" = 1 ]; then
  "$VMCTL" cluster compact --name $name >/dev/null
  LABEL="$LABEL, then \`cluster compact\` ($(python3 -c "import time; print('%.1f s' % (time.time() - $t1))"))"
fi
sleep "$SETTLE"
a1=$(avail)
rss=0; pss=0
for i in $(seq 1 "$N"); do
  p=$(qemu_pid "$name-node$i")
  rss=$((rss + $(awk '/^Rss:/ {print $2}' "/proc/$p/smaps_rollup")))
  pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")))
done
"$VMCTL" cluster clean --name $name >/dev/null
python3 - "$LABEL" "$N" "$MODE" "$t0" "$t1" "$a0" "$a1" "$rss" "$pss" <<'PY'
import sys
label, n, mode, t0, t1, a0, a1, rss, pss = sys.argv[1:]
n = int(n)
print("| %s | %s | %d | %.1f s | %d MiB | %d MiB | %d MiB |" % (
    label, mode, n, float(t1) - float(t0), (int(a0) - int(a1)) / 1024 / n, int(rss) / 1024 / n, int(pss) / 1024 / n))
PY
