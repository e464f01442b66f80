#!/usr/bin/env bash
# make bench: vmctl against bare QEMU in the same run, printed as a Markdown table.
#   RUNS=3     boots per single-VM measurement (median reported)
#   NODES="3"  cluster sizes to measure besides 1 (e.g. "3 5")
#   CRUNS=1    runs per cluster size
# Uses its own state dir (VMCTL_BENCH_HOME, default a new one from mktemp -d, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; NODES=${NODES:-3}; CRUNS=${CRUNS:-1}; IMAGE=${IMAGE:-debian-12}
OWN_HOME=""
if [ -z "${VMCTL_BENCH_HOME:-}" ]; then OWN_HOME=$(mktemp -d /var/tmp/vmctl-bench.XXXXXX); fi
export VMCTL_HOME=${VMCTL_BENCH_HOME:-$OWN_HOME}
VMCTL=$PWD/.build/debug/vmctl
export VMCTL_BINARY=$VMCTL
WORK=$(mktemp -d /tmp/vmctl-bench.XXXXXX)
QPIDS=()
cleanup() {
  for p in "${QPIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  for n in $("$VMCTL" cluster list --json 2>/dev/null | python3 -c 'import json,sys; print(" ".join(r["name"] for r in json.load(sys.stdin) if r["name"].startswith("bench")))' 2>/dev/null); do
    "$VMCTL" cluster clean --name "$n" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
  [ -n "$OWN_HOME" ] && rm -rf "$OWN_HOME" || true
}
trap cleanup EXIT
now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print("%.1f" % statistics.median(v))' "$@"; }
ratio() { python3 -c '
import sys
try: a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2f" % (a / b) if b == b and b else "-")
except ValueError: print("-")' "$1" "$2"; }
# json_at FILE KEY... -> the value at that path in a JSON file (a number indexes a list); nothing in the file is run.
json_at() { python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
qemu_pid() { pgrep -f "guest=$1," | head -1; }
log() { echo "bench: $*" >&2; }

# --- image build: cold (fresh cache), warm (nothing changed), one file changed -------------------
rm -rf "$VMCTL_HOME/images"
t0=$(now); "$VMCTL" image build "$IMAGE" >&2; t1=$(now); COLD=$(python3 -c "print('%.1f' % ($t1-$t0))")
t0=$(now); "$VMCTL" image build "$IMAGE" >&2; t1=$(now); WARM=$(python3 -c "print('%.1f' % ($t1-$t0))")
mkdir -p "$WORK/recipes"; cp -r images/. "$WORK/recipes/"
sed -i "s|PasswordAuthentication no|PasswordAuthentication no\n      # bench $(date +%s%N)|" "$WORK/recipes/$IMAGE.yaml"
t0=$(now); VMCTL_RECIPES="$WORK/recipes" "$VMCTL" image build "$IMAGE" >&2; t1=$(now); ONEFILE=$(python3 -c "print('%.1f' % ($t1-$t0))")
"$VMCTL" image build "$IMAGE" >&2   # back to the repo's recipe for the boots below
IMGDIR=$("$VMCTL" image list --json | python3 -c 'import json,sys; print([r["image"]["directory"] for r in json.load(sys.stdin) if r["image"]["name"]==sys.argv[1]][0])' "$IMAGE")

# --- boot N nodes through vmctl, then the same seeds on fresh overlays with bare QEMU ------------
# vmctl_up N RUNIDX -> prints "seconds cpu_seconds rss_mib_per_node"; keeps seeds/keys in $WORK/N-RUN
vmctl_up() {
  local n=$1 r=$2 name="bench$1r$2" keep="$WORK/$1-$2"
  "$VMCTL" cluster clean --name "$name" >/dev/null 2>&1 || true
  local t0 t1; t0=$(now)
  /usr/bin/time -f "%U %S" -o "$keep.cpu" "$VMCTL" cluster up "$n" --cold --name "$name" >/dev/null
  t1=$(now)
  local rss=0 i
  for i in $(seq 1 "$n"); do rss=$((rss + $(rss_mib "$(qemu_pid "$name-node$i")"))); done
  mkdir -p "$keep"
  cp "$VMCTL_HOME/clusters/$name/ssh/id_ed25519" "$keep/key"; chmod 600 "$keep/key"
  for i in $(seq 1 "$n"); do cp "$VMCTL_HOME/clusters/$name/nodes/node$i/seed.iso" "$keep/seed$i.iso"; done
  "$VMCTL" cluster info --name "$name" --json | python3 -c 'import json,sys
for n in json.load(sys.stdin)["cluster"]["nodes"]:
    p = n["plan"]; print(p["mgmtMAC"], p["hostKey"]["type"], p["hostKey"]["base64"])' > "$keep/pins"
  "$VMCTL" cluster clean --name "$name" >/dev/null
  python3 -c "import sys; u,s=open(sys.argv[1]).read().split(); print('%.1f %.2f %d' % ($t1-$t0, float(u)+float(s), $rss//$n))" "$keep.cpu"
}

# bare_up N RUNIDX -> seconds until every guest answers an authenticated SSH command
bare_up() {
  local n=$1 r=$2 keep="$WORK/$1-$2" cpus=2 mem=2048 base=23300 i
  local t0; t0=$(now)
  QPIDS=()
  for i in $(seq 1 "$n"); do
    local port=$((base + i)) mac; mac=$(sed -n "${i}p" "$keep/pins" | cut -d' ' -f1)
    qemu-img create -q -f qcow2 -F qcow2 -b "$IMGDIR/root.qcow2" "$keep/disk$i.qcow2" 20G
    echo "[127.0.0.1]:$port $(sed -n "${i}p" "$keep/pins" | cut -d' ' -f2-)" > "$keep/known$i"
    qemu-system-x86_64 -machine q35 -accel tcg -cpu qemu64 -smp $cpus -m $mem -nodefaults -no-user-config \
      -display none -serial "file:$keep/serial$i.log" \
      -kernel "$IMGDIR/vmlinuz" -initrd "$IMGDIR/initrd.img" \
      -append "root=/dev/vda rw $(json_at "$IMGDIR/manifest.json" cmdline)" \
      -drive "file=$keep/disk$i.qcow2,if=virtio,format=qcow2,cache=unsafe" \
      -drive "file=$keep/seed$i.iso,if=virtio,format=raw,readonly=on" \
      -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" \
      -device "virtio-net-pci,netdev=n0,mac=$mac" >/dev/null 2>&1 &
    QPIDS+=($!)
  done
  local done_count=0 ok=()
  for i in $(seq 1 "$n"); do ok[$i]=0; done
  local deadline=$(( $(date +%s) + 600 ))
  while [ $done_count -lt "$n" ] && [ "$(date +%s)" -lt $deadline ]; do
    for i in $(seq 1 "$n"); do
      [ "${ok[$i]}" = 1 ] && continue
      if ssh -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$keep/known$i" \
           -o ConnectTimeout=2 -i "$keep/key" -p $((base + i)) vmctl@127.0.0.1 true 2>/dev/null; then
        ok[$i]=1; done_count=$((done_count + 1))
      fi
    done
    [ $done_count -lt "$n" ] && sleep 0.25
  done
  local t1; t1=$(now)
  local rss=0; for p in "${QPIDS[@]}"; do rss=$((rss + $(rss_mib "$p"))); done
  for p in "${QPIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  QPIDS=()
  [ $done_count -eq "$n" ] || { log "bare QEMU: only $done_count of $n guests answered"; echo "nan 0"; return; }
  python3 -c "print('%.1f %d' % ($t1-$t0, $rss//$n))"
}

measure() {  # measure N RUNS -> "vm_median bare_median cpu_per_node rss_vm rss_bare"
  local n=$1 runs=$2 r vms=() bares=() cpu=() rv=0 rb=0
  for r in $(seq 1 "$runs"); do
    log "cluster up $n: vmctl run $r"
    read -r s c rss <<<"$(vmctl_up "$n" "$r")"; vms+=("$s"); cpu+=("$(python3 -c "print($c/$n)")"); rv=$rss
    log "cluster up $n: bare QEMU run $r"
    read -r b brss <<<"$(bare_up "$n" "$r")"; bares+=("$b"); rb=$brss
  done
  echo "$(median "${vms[@]}") $(median "${bares[@]}") $(python3 -c 'import sys,statistics; print("%.2f" % statistics.median([float(x) for x in sys.argv[1:]]))' "${cpu[@]}") $rv $rb"
}

read -r V1 B1 C1 RV1 RB1 <<<"$(measure 1 "$RUNS")"
ROWS=""
for n in $NODES; do
  read -r V B C RV RB <<<"$(measure "$n" "$CRUNS")"
  echo "$n $B" >> "$WORK/bare-medians"
  ROWS+="| cold \`cluster up $n --cold\`, all nodes SSH-verified | ${V} s | ${B} s | $(ratio "$V" "$B") | $C s | $RV / $RB MiB |"$'\n'
done

# --- warm start (WARMST=0 skips): the first `--warm` up makes the snapshot, the next restores from it.
# Against the same N booted cold by bare QEMU above (no bare-QEMU restore of the same save yet).
WARMROWS=""
if [ "${WARMST:-1}" = 1 ]; then
  rm -rf "$VMCTL_HOME/images/warm"
  for n in $NODES; do
    read -r _ B _ _ _ <<<"$(grep "^$n " "$WORK/bare-medians" 2>/dev/null || echo "$n nan")"
    log "cluster up $n --warm: first (makes the snapshot)"
    t0=$(now); "$VMCTL" cluster up "$n" --name benchwarm >/dev/null; t1=$(now); WF=$(python3 -c "print('%.1f' % ($t1-$t0))")
    "$VMCTL" cluster clean --name benchwarm >/dev/null
    log "cluster up $n --warm: restored"
    t0=$(now); "$VMCTL" cluster up "$n" --name benchwarm >/dev/null; t1=$(now); WW=$(python3 -c "print('%.1f' % ($t1-$t0))")
    rss=0; for i in $(seq 1 "$n"); do rss=$((rss + $(rss_mib "$(qemu_pid "benchwarm-node$i")"))); done
    cp "$VMCTL_HOME/clusters/benchwarm/libvirt/log/qemu/benchwarm-node1.log" "$WORK/warm-qemu.log"
    cp "$VMCTL_HOME/clusters/benchwarm/nodes/node1/seed.iso" "$WORK/warm-seed.iso"
    "$VMCTL" cluster clean --name benchwarm >/dev/null
    log "bare QEMU: the same save restored with -incoming, $n at once"
    SNAP=$(ls -td "$VMCTL_HOME"/images/warm/*/ | head -1)
    BR=$(python3 scripts/bare-restore.py "$WORK/warm-qemu.log" "${SNAP%/}" "$WORK/warm-seed.iso" "$n" "$WORK" || echo nan)
    WARMROWS+="| first warm \`cluster up $n\` (boots a template, saves it, restores $n) | ${WF} s | ${B} s (cold) | $(ratio "$WF" "$B") | | |"$'\n'
    WARMROWS+="| warm \`cluster up $n\`, all SSH-verified with their own identity | ${WW} s | ${B} s (cold) | $(ratio "$WW" "$B") | | $((rss / n)) MiB |"$'\n'
    WARMROWS+="| warm \`cluster up $n\` against bare QEMU restoring the same save (\`-incoming\`, to running: no identity, no SSH) | ${WW} s | ${BR} s | $(ratio "$WW" "$BR") | | |"$'\n'
  done
  # Ten nodes from the same snapshot (WARMN=0 skips; no cold reference: ten cold boots take minutes).
  for n in ${WARMN:-10}; do
    [ "$n" = 0 ] && continue
    log "cluster up $n: warm"
    t0=$(now); "$VMCTL" cluster up "$n" --name benchwarm >/dev/null; t1=$(now); WW=$(python3 -c "print('%.1f' % ($t1-$t0))")
    rss=0; for i in $(seq 1 "$n"); do rss=$((rss + $(rss_mib "$(qemu_pid "benchwarm-node$i")"))); done
    # The ten pass `cluster test` (issue: density; here rather than in make test, for CI time).
    CT=$("$VMCTL" cluster test --name benchwarm 2>&1 | tail -1 || true)
    "$VMCTL" cluster clean --name benchwarm >/dev/null
    WARMROWS+="| warm \`cluster up $n\`, all SSH-verified with their own identity (then \`cluster test\`: $CT) | ${WW} s | | | | $((rss / n)) MiB |"$'\n'
  done
fi

# --- density (DENSITY=0 skips): host memory per idle node, 60 s after `up 3`, levers on and off --
DENSROWS=""
if [ "${DENSITY:-1}" = 1 ]; then
  log "density: host memory per idle node (cold and warm, levers off and on)"
  export VMCTL
  DENSROWS+="$(VMCTL_TB_CACHE_MIB=0 VMCTL_BALLOON=0 VMCTL_THP=1 scripts/density.sh "QEMU's defaults (1 GiB translation cache, no balloon, host's huge pages)" 3 cold)"$'\n'
  DENSROWS+="$(scripts/density.sh "vmctl's levers (see docs/density.md)" 3 cold)"$'\n'
  DENSROWS+="$(COMPACT=1 scripts/density.sh "vmctl's levers" 3 cold)"$'\n'
  DENSROWS+="$(VMCTL_TB_CACHE_MIB=0 VMCTL_BALLOON=0 VMCTL_THP=1 scripts/density.sh "QEMU's defaults (1 GiB translation cache, no balloon, host's huge pages)" 3 warm)"$'\n'
  DENSROWS+="$(scripts/density.sh "vmctl's levers (see docs/density.md)" 3 warm)"$'\n'
  DENSROWS+="$(COMPACT=1 scripts/density.sh "vmctl's levers" 3 warm)"$'\n'
fi

# --- ClusterOS (SLURM=0 skips): cold build, one-file rebuild, up 3 to `srun -N3` answering ----------
SLURMROWS=""
if [ "${SLURM:-1}" = 1 ]; then
  log "cluster-os-node: cold build"
  rm -rf "$VMCTL_HOME/images/stages" "$VMCTL_HOME/images/store" "$VMCTL_HOME/images/tags"
  t0=$(now); "$VMCTL" image build cluster-os-node >&2; t1=$(now); SCOLD=$(python3 -c "print('%.1f' % ($t1-$t0))")
  sed -i "s|ConstrainCores=yes|ConstrainCores=yes\n      # bench $(date +%s%N)|" "$WORK/recipes/cluster-os-node.yaml"
  t0=$(now); VMCTL_RECIPES="$WORK/recipes" "$VMCTL" image build cluster-os-node >&2; t1=$(now); SONE=$(python3 -c "print('%.1f' % ($t1-$t0))")
  "$VMCTL" image build cluster-os-node >&2
  log "cluster-os-node: up 3 to srun -N3"
  t0=$(now)
  "$VMCTL" cluster up 3 --cold --image cluster-os-node --name benchslurm >/dev/null
  "$VMCTL" cluster ssh --name benchslurm node1 -- srun -N3 hostname >/dev/null
  t1=$(now); SUP=$(python3 -c "print('%.1f' % ($t1-$t0))")
  "$VMCTL" cluster clean --name benchslurm >/dev/null
  log "cluster-os-node: warm up 3 to srun -N3 (first: makes the snapshot; second: restores)"
  for w in 1 2; do
    t0=$(now)
    "$VMCTL" cluster up 3 --image cluster-os-node --name benchslurm >/dev/null
    "$VMCTL" cluster ssh --name benchslurm node1 -- srun -N3 hostname >/dev/null
    t1=$(now); eval "SW$w=$(python3 -c "print('%.1f' % ($t1-$t0))")"
    "$VMCTL" cluster clean --name benchslurm >/dev/null
  done
  SLURMROWS="| cluster-os-node image build, cold | ${SCOLD} s | | | | |
| cluster-os-node rebuild, one recipe file changed | ${SONE} s | | | | |
| 3-node SLURM cluster, \`cluster up --cold\` to \`srun -N3\` answering | ${SUP} s | | | | |
| 3-node SLURM cluster, first warm \`cluster up\` (makes the snapshot) to \`srun -N3\` | ${SW1} s | | | | |
| 3-node SLURM cluster, warm \`cluster up\` to \`srun -N3\` answering | ${SW2} s | | | | |
"
fi

# --- Swarm (SWARM=0 skips): swarm-node build, init (3 nodes, swarm formed), init again, case00 ---------
SWARMROWS=""
if [ "${SWARM:-1}" = 1 ]; then
  log "swarm-node: build, swarm init, case00"
  t0=$(now); "$VMCTL" image build swarm-node >&2; t1=$(now); WB=$(python3 -c "print('%.1f' % ($t1-$t0))")
  t0=$(now); "$VMCTL" swarm init --name benchswarm >/dev/null; t1=$(now); WI=$(python3 -c "print('%.1f' % ($t1-$t0))")
  t0=$(now); "$VMCTL" swarm init --name benchswarm >/dev/null; t1=$(now); WI2=$(python3 -c "print('%.1f' % ($t1-$t0))")
  t0=$(now); "$VMCTL" swarm case00 up --name benchswarm >/dev/null; "$VMCTL" swarm case00 test --name benchswarm >/dev/null
  t1=$(now); WC=$(python3 -c "print('%.1f' % ($t1-$t0))")
  t0=$(now); "$VMCTL" swarm case00 down --name benchswarm >/dev/null; t1=$(now); WD=$(python3 -c "print('%.1f' % ($t1-$t0))")
  # case01: from `up` until the runner's guest answers SSH (nested TCG here), then its own guest's time.
  t0=$(now); "$VMCTL" swarm case01 up --name benchswarm > "$WORK/case01.out"; t1=$(now); W1=$(python3 -c "print('%.1f' % ($t1-$t0))")
  WG=$(sed -n 's/.*its guest answers SSH (\([0-9]*\) s after its task was running).*/\1/p' "$WORK/case01.out")
  t0=$(now); "$VMCTL" swarm case01 test --name benchswarm >/dev/null; t1=$(now); WT1=$(python3 -c "print('%.1f' % ($t1-$t0))")
  "$VMCTL" swarm case01 down --name benchswarm >/dev/null
  "$VMCTL" cluster clean --name benchswarm >/dev/null
  SWARMROWS="| swarm-node image build (debian-12 stages cached) | ${WB} s | | | | |
| \`swarm init\`: 3 swarm-node VMs up, swarm formed and labelled | ${WI} s | | | | |
| \`swarm init\` again on the running, formed swarm | ${WI2} s | | | | |
| \`swarm case00 up\` + \`test\` on a formed swarm | ${WC} s | | | | |
| \`swarm case00 down\` | ${WD} s | | | | |
| \`swarm case01 up\` until the VM runner's guest answers SSH (TCG inside TCG; ${WG} s of it after the runner task ran) | ${W1} s | | | | |
| \`swarm case01 test\` (case00's checks + SSH into the runner's guest) | ${WT1} s | | | | |
"
fi

# --- USB media (USB=0 skips): cold and warm `image usb`, USB image boot vs bare QEMU + OVMF --------
USBROWS=""
if [ "${USB:-1}" = 1 ]; then
  log "image usb cluster-os-node: cold (hardware variant built from scratch)"
  rm -rf "$VMCTL_HOME/images/stages" "$VMCTL_HOME/images/store" "$VMCTL_HOME/images/tags"
  t0=$(now); "$VMCTL" image usb cluster-os-node --output "$WORK/dist" >&2; t1=$(now); UCOLD=$(python3 -c "print('%.1f' % ($t1-$t0))")
  t0=$(now); "$VMCTL" image usb cluster-os-node --output "$WORK/dist" >&2; t1=$(now); UWARM=$(python3 -c "print('%.1f' % ($t1-$t0))")
  log "USB image: vmctl verify boot (Secure Boot on) vs bare QEMU with the same firmware, disk and NIC"
  "$VMCTL" image usb cluster-os-node --output "$WORK/dist" --verify --no-iso > "$WORK/verify.out"
  UV=$(sed -n 's/.*usb-secure: SSH-verified in \([0-9.]*\)s.*/\1/p' "$WORK/verify.out")
  zcat "$WORK/dist/cluster-os-usb.img.gz" | cp --sparse=always /dev/stdin "$WORK/usb.raw"
  SIZE=$(( $(stat -c %s "$WORK/usb.raw") + 2147483648 ))
  qemu-img create -q -f qcow2 -F raw -b "$WORK/usb.raw" "$WORK/usb.qcow2" "$SIZE"
  cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$WORK/vars.fd"
  t0=$(now)
  qemu-system-x86_64 -machine q35,smm=on -accel tcg -cpu qemu64 -m 2048 -smp 2 -display none -serial none \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd,readonly=on \
    -drive if=pflash,format=raw,unit=1,file="$WORK/vars.fd" \
    -device qemu-xhci -drive if=none,id=usb,file="$WORK/usb.qcow2",format=qcow2,cache=unsafe -device usb-storage,drive=usb \
    -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2899-:22 -device virtio-net-pci,netdev=n0 &
  QPIDS+=($!)
  until ssh -q -i "$WORK/dist/cluster-os-usb.id_ed25519" -o UserKnownHostsFile="$WORK/dist/cluster-os-usb.known_hosts" \
      -o HostKeyAlias=cluster-os -o StrictHostKeyChecking=yes -o ConnectTimeout=2 -o BatchMode=yes -p 2899 clusteros@127.0.0.1 true 2>/dev/null; do
    sleep 1
    [ "$(python3 -c "print(int($(now)-$t0))")" -lt 600 ] || { log "bare USB boot timed out"; UB="timeout"; break; }
  done
  t1=$(now); [ "${UB:-}" = timeout ] || UB=$(python3 -c "print('%.1f' % ($t1-$t0))")
  kill -9 "${QPIDS[-1]}" 2>/dev/null || true
  USBROWS="| \`image usb\` cluster-os-node, cold (hardware variant + USB image + ISO) | ${UCOLD} s | | | | |
| \`image usb\` cluster-os-node, warm (image cached: new keys, seed, gzip, ISO) | ${UWARM} s | | | | |
| USB image, UEFI Secure Boot, boot to SSH-verified | ${UV} s | ${UB} s | $(ratio "$UV" "$UB") | | |
"
fi

echo
echo "vmctl bench: $IMAGE, TCG, 2 vCPUs and 2 GiB per guest, $(nproc) host cores; medians of $RUNS (1 VM) and $CRUNS (clusters) runs"
echo
echo "| measurement | vmctl | bare QEMU | ratio | vmctl CPU per node | QEMU RSS per node (vmctl / bare) |"
echo "|---|---|---|---|---|---|"
echo "| image build, cold | ${COLD} s | | | | |"
echo "| image build, warm (nothing changed) | ${WARM} s | | | | |"
echo "| image rebuild, one recipe file changed | ${ONEFILE} s | | | | |"
echo "| boot 1 VM to SSH-verified (cold) | ${V1} s | ${B1} s | $(ratio "$V1" "$B1") | $C1 s | $RV1 / $RB1 MiB |"
printf "%s" "$ROWS"
printf "%s" "$WARMROWS"
printf "%s" "$SLURMROWS"
printf "%s" "$SWARMROWS"
printf "%s" "$USBROWS"
if [ -n "$DENSROWS" ]; then
  echo
  echo "Host memory per idle node, 2 GiB debian-12 nodes, \`cluster up 3\`, measured 60 s after it finished:"
  echo
  echo "| levers | boot | N | up | MemAvailable drop / node | QEMU RSS / node | QEMU PSS / node |"
  echo "|---|---|---|---|---|---|---|"
  printf "%s" "$DENSROWS"
fi
