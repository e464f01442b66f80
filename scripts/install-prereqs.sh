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
  python3 python3-venv time          # make bench: medians, JSON, CPU time; make test: ansible-core in a venv
  curl                              # recipe fetch and image fetch: downloads by URL and checksum
  gpgv gpg                          # image fetch: checksum files' signatures (gpg dearmors key files)
  lz4 zstd xz-utils                 # image builds: the PVH vmlinux out of a distribution's compressed kernel
)

# QEMU runs as libvirt-qemu in group kvm. Debian's udev rule makes /dev/kvm 0660 root:kvm; where a
# host left it root-only (containers), libvirt finds KVM "unusable" for QEMU's user but probes QEMU
# as root with KVM, and then throws its capabilities cache away on every lookup (a minute per boot).
fix_kvm_node() {
  if [ -c /dev/kvm ] && [ "$(stat -c '%G %a' /dev/kvm)" = "root 600" ] && getent group kvm >/dev/null; then
    ${SUDO:-} chgrp kvm /dev/kvm && ${SUDO:-} chmod 0660 /dev/kvm && echo "prerequisites: /dev/kvm given to group kvm (0660), as Debian's udev rule does"
  fi
}

missing=()
for p in "${PKGS[@]}"; do
  case "$p" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ ${#missing[@]} -eq 0 ]; then
  echo "prerequisites: all present"
  if [ "$(id -u)" -eq 0 ]; then fix_kvm_node; fi
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-prereqs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "prerequisites: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fix_kvm_node
