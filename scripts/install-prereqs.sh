#!/usr/bin/env bash
# Installs what vmctl needs on Debian 12, idempotently: packages already present are skipped.
set -euo pipefail

PKGS=(
  qemu-system-x86 qemu-utils        # the hypervisor and qemu-img
  libvirt-dev libvirt-daemon-system # libvirt's C API; the daemon package creates the libvirt-qemu user
  libssh2-1-dev                     # SSH verification of guests
  xorriso                           # xorrisofs for cloud-init seed ISOs
  mmdebstrap e2fsprogs              # image builds: root filesystem, mkfs.ext4 -d
  dnsmasq-base iproute2 nftables    # bridge networks
  ovmf mtools fdisk cpio gzip       # UEFI firmware; bootable disks: FAT partitions, GPT (sfdisk), installer initrd
  openssh-client pkg-config ca-certificates
  python3 time                      # make bench: medians, JSON, CPU time
  curl                              # recipe fetch: release binaries by URL and checksum
)

missing=()
for p in "${PKGS[@]}"; do
  case "$p" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "prerequisites: all present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-prereqs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "prerequisites: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
