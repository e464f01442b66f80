# vmctl: QEMU clusters for testing, through libvirt. `make demo` and `make test` do all set-up.
SWIFT   ?= swift
IMAGE   ?= cluster-os-node
NAME    ?= default
VMCTL   := .build/debug/vmctl
PREREQS := .build/.prereqs-ok

.PHONY: all prereqs build image demo test test-unit test-vm-tests test-vm test-vm-5 test-vm-integration \
        vm-status vm-info vm-stop vm-start vm-clean usb bench doctor clean

all: build

# Idempotent apt-get of everything vmctl needs (root or sudo).
$(PREREQS): scripts/install-prereqs.sh
	bash scripts/install-prereqs.sh
	@mkdir -p .build && touch $@
prereqs: $(PREREQS)

build: $(PREREQS)
	$(SWIFT) build --product vmctl

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
# (images are built cold in it), removed afterwards whatever happens.
test: build
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter VMCtlUnitTests
	home=$$(mktemp -d /var/tmp/vmctl-tests.XXXXXX) && trap 'rm -rf "$$home"' EXIT && \
	  VMCTL_TEST_HOME=$$home $(SWIFT) test --skip-build --filter VMCtlVMTests

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

# Seed 001's hardware step: dist/cluster-os-usb.img.gz (dd to a USB stick) and
# dist/cluster-os-installer.iso, booted and SSH-verified in QEMU under OVMF (VERIFY= to skip).
VERIFY ?= --verify
usb: build
	$(VMCTL) image usb $(IMAGE) --output dist --unattended $(VERIFY)

# Markdown table of timings against bare QEMU in the same run.
bench: image
	bash scripts/bench.sh

clean:
	rm -rf .build
