# vmctl: QEMU clusters for testing, through libvirt. `make demo` and `make test` do all set-up.
SWIFT   ?= swift
IMAGE   ?= cluster-os-node
NAME    ?= default
VMCTL   := .build/debug/vmctl
PREREQS := .build/.prereqs-ok
ANSIBLE := .build/ansible/bin/ansible-playbook

.PHONY: all prereqs build image demo test test-long test-unit test-vm-tests test-vm test-vm-5 test-vm-integration \
        vm-status vm-info vm-stop vm-start vm-clean usb bench soak fit doctor install uninstall clean

all: build

# Idempotent apt-get of everything vmctl needs (root or sudo).
$(PREREQS): scripts/install-prereqs.sh
	bash scripts/install-prereqs.sh
	@mkdir -p .build && touch $@
prereqs: $(PREREQS)

# The layers hold by construction (Package.swift): Machines imports Libvirt `internal`ly, so no
# libvirt type leaves it; SwiftPM's import check refuses a module outside a target's dependency
# closure, and scripts/check-imports.py one that is not a *direct* dependency (SwiftPM lets a
# target import what it reaches through another: Clusters could import Libvirt through Machines).
BUILD_FLAGS = --explicit-target-dependency-import-check error
build: $(PREREQS)
	python3 scripts/check-imports.py
	$(SWIFT) build $(BUILD_FLAGS) --product vmctl

doctor: build
	$(VMCTL) doctor

image: build
	$(VMCTL) image build $(IMAGE)

# The whole job on a fresh machine: prerequisites, build, image, a 3-node cluster, its tests, its details.
demo: build
	$(VMCTL) image build debian-12
	$(VMCTL) cluster up 3 --image debian-12 --name demo
	$(VMCTL) cluster test --name demo
	$(VMCTL) cluster info --name demo
	@echo "demo cluster is up: '$(VMCTL) cluster ssh node1 --name demo' for a shell, 'make vm-clean NAME=demo' to remove it"

# Unit tests first (no hypervisor), then the real-VM tests in a state dir from mktemp -d
# (images are built cold in it), removed afterwards whatever happens. The two longest real-VM
# tests (LONG_VM_TESTS: the Swarm cases with a guest emulated inside a guest, and the USB/ISO
# media booted under OVMF) run in `make test-long`, not here: on a slow TCG host they alone take
# 53 minutes (docs/testing.md).
LONG_VM_TESTS = swarmCase00\(\)|usbMedia\(\)
# The real-VM tests' runner: a state dir of their own, removed when they end (pass or fail).
VM_TESTS = home=$$(mktemp -d /var/tmp/vmctl-tests.XXXXXX) && trap 'rm -rf "$$home"' EXIT && \
	  VMCTL_TEST_HOME=$$home VMCTL_ANSIBLE=$(CURDIR)/$(dir $(ANSIBLE)) $(SWIFT) test --skip-build
test: build $(ANSIBLE)
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	$(SWIFT) test --skip-build --filter VMCtlUnitTests
	$(VM_TESTS) --filter VMCtlVMTests --skip '$(LONG_VM_TESTS)'

# The long real-VM tests, in a state dir of their own (they build the swarm-node and
# cluster-os-node images cold).
test-long: build $(ANSIBLE)
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	$(VM_TESTS) --filter '$(LONG_VM_TESTS)'

# ansible-core from PyPI in a venv of the checkout's own, for the swarm test's Ansible checks.
$(ANSIBLE):
	python3 -m venv .build/ansible && .build/ansible/bin/pip install -q ansible-core

test-unit: build
	$(SWIFT) test --filter VMCtlUnitTests

# Seed 001's targets, wrapping vmctl: the ClusterOS image by default (IMAGE= overrides).
test-vm: image
	$(VMCTL) cluster up 3 --image $(IMAGE) --name $(NAME)
test-vm-5: image
	$(VMCTL) cluster up 5 --image $(IMAGE) --name $(NAME)
test-vm-integration: build
	$(VMCTL) cluster test --name $(NAME)
vm-status: build
	$(VMCTL) cluster status --name $(NAME)
vm-info: build
	$(VMCTL) cluster info --name $(NAME)
vm-stop: build
	$(VMCTL) cluster down --name $(NAME)
vm-start: build
	$(VMCTL) cluster start --name $(NAME)
vm-clean: build
	$(VMCTL) cluster clean --name $(NAME)

# Seed 000's Swarm targets, exactly as the seed writes them, over `vmctl swarm` (cluster SWARM).
# `make ansible-swarm-poc-qemu-case00-exec <container_name>`: the goal after an -exec goal is the
# container's name, turned into a rule that does nothing; CONTAINER= works too.
SWARM ?= swarm
SWARM_CASES := case00 case01
SWARM_VERBS := up down test exec-list exec
SWARM_GOALS := ansible-swarm $(foreach c,$(SWARM_CASES),$(foreach v,$(SWARM_VERBS),ansible-swarm-poc-qemu-$(c)-$(v))) \
        ansible-swarm-poc-qemu-case02-up ansible-swarm-poc-qemu-case02-test ansible-swarm-poc-qemu-case02-down
.PHONY: $(SWARM_GOALS)
ifneq ($(filter %-exec,$(firstword $(MAKECMDGOALS))),)
  EXEC_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
  ifneq ($(EXEC_ARGS),)
    ifneq ($(filter $(EXEC_ARGS),$(SWARM_GOALS) all prereqs build image demo test test-unit test-vm test-vm-5 \
            test-vm-integration vm-status vm-info vm-stop vm-start vm-clean usb bench soak fit doctor install uninstall clean),)
      $(error container name '$(EXEC_ARGS)' is also a make target: use CONTAINER=$(EXEC_ARGS) instead)
    endif
    CONTAINER ?= $(firstword $(EXEC_ARGS))
    $(eval $(EXEC_ARGS):;@:)
  endif
endif
ansible-swarm: build
	$(VMCTL) swarm init --name $(SWARM)
# case00 and case01: up, down, test, exec-list; exec takes the container.
$(foreach c,$(SWARM_CASES),$(foreach v,up down test exec-list,ansible-swarm-poc-qemu-$(c)-$(v))): build
	$(VMCTL) swarm $(word 5,$(subst -, ,$@)) $(subst ansible-swarm-poc-qemu-$(word 5,$(subst -, ,$@))-,,$@) --name $(SWARM)
$(foreach c,$(SWARM_CASES),ansible-swarm-poc-qemu-$(c)-exec): build
	@test -n "$(CONTAINER)" || { echo "usage: make $@ <container_name> (or CONTAINER=...): make $(@:-exec=-exec-list) shows them" >&2; exit 2; }
	$(VMCTL) swarm $(word 5,$(subst -, ,$@)) exec $(CONTAINER) --name $(SWARM)
# case02: the Windows media as WINDOWS_ISO= and VIRTIO_ISO= (vmctl reads them from the environment).
ansible-swarm-poc-qemu-case02-up ansible-swarm-poc-qemu-case02-test ansible-swarm-poc-qemu-case02-down: build
	$(VMCTL) swarm case02 $(subst ansible-swarm-poc-qemu-case02-,,$@) --name $(SWARM)

# Seed 001's hardware step: dist/cluster-os-usb.img.gz (dd to a USB stick) and
# dist/cluster-os-installer.iso, booted and SSH-verified in QEMU under OVMF (VERIFY= to skip).
VERIFY ?= --verify
usb: build
	$(VMCTL) image usb $(IMAGE) --output dist --unattended $(VERIFY)

# Markdown table of timings against bare QEMU in the same run.
bench: image
	bash scripts/bench.sh

# Hung boots counted: NODES nodes booted in clusters of SIZE, resets and their evidence reported.
NODES ?= 60
SIZE  ?= 3
soak: build
	NODES=$(NODES) SIZE=$(SIZE) bash scripts/boot-soak.sh

# How many idle 2 GiB nodes this host holds, shown: NODES (60) in clusters of SIZE (3), FIT_MODE warm|cold.
FIT_MODE ?= warm
fit: build
	NODES=$(NODES) SIZE=$(SIZE) FIT_MODE=$(FIT_MODE) bash scripts/fit.sh

# Installation: the binary, bash/zsh/fish completions (from vmctl itself) and a man page (from
# swift-argument-parser's generate-manual plugin). DESTDIR stages it (`make install DESTDIR=/tmp/inst`);
# CONFIG=debug installs the debug build. Builds only vmctl: prerequisites as for `make build`.
PREFIX      ?= /usr/local
CONFIG      ?= release
BINDIR      ?= $(PREFIX)/bin
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# Debian's zsh reads vendor-completions under /usr and site-functions under /usr/local.
ZSHCOMPDIR  ?= $(if $(filter /usr,$(PREFIX)),$(DATADIR)/zsh/vendor-completions,$(DATADIR)/zsh/site-functions)
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
GENERATED   := .build/install-$(CONFIG)

install:
	$(SWIFT) build -c $(CONFIG) --product vmctl
	rm -rf $(GENERATED) && mkdir -p $(GENERATED)
	bin=$$($(SWIFT) build -c $(CONFIG) --show-bin-path)/vmctl && \
	  $$bin --generate-completion-script bash > $(GENERATED)/vmctl && \
	  $$bin --generate-completion-script zsh > $(GENERATED)/_vmctl && \
	  $$bin --generate-completion-script fish > $(GENERATED)/vmctl.fish && \
	  cp $$bin $(GENERATED)/vmctl.bin
	$(SWIFT) package plugin generate-manual --configuration $(CONFIG)
	cp .build/plugins/GenerateManual/outputs/vmctl/vmctl.1 $(GENERATED)/vmctl.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
	  $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(GENERATED)/vmctl.bin $(DESTDIR)$(BINDIR)/vmctl
	install -m 0644 $(GENERATED)/vmctl $(DESTDIR)$(BASHCOMPDIR)/vmctl
	install -m 0644 $(GENERATED)/_vmctl $(DESTDIR)$(ZSHCOMPDIR)/_vmctl
	install -m 0644 $(GENERATED)/vmctl.fish $(DESTDIR)$(FISHCOMPDIR)/vmctl.fish
	install -m 0644 $(GENERATED)/vmctl.1 $(DESTDIR)$(MANDIR)/man1/vmctl.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vmctl $(DESTDIR)$(BASHCOMPDIR)/vmctl $(DESTDIR)$(ZSHCOMPDIR)/_vmctl \
	  $(DESTDIR)$(FISHCOMPDIR)/vmctl.fish $(DESTDIR)$(MANDIR)/man1/vmctl.1

clean:
	rm -rf .build
