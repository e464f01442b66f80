// swift-tools-version:6.0
import PackageDescription

/// The layers above Machines: a member is visible only in a file that imports its module.
let upperLayer: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "vmctl",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vmctl", targets: ["vmctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C libraries, each only a module map and a shim header.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .systemLibrary(name: "CLibSSH2", pkgConfig: "libssh2", providers: [.apt(["libssh2-1-dev"])]),

        // Runs blocking C calls on threads of their own, never on the cooperative pool.
        .target(name: "Blocking"),
        // Host calls Swift cannot make (variadic C), a few lines of C.
        .target(name: "CHost"),
        // Swift handles over libvirt and domain XML from typed values. Knows nothing of clusters.
        .target(name: "Libvirt", dependencies: ["CLibvirt", "Blocking"]),
        // libssh2 sessions, exec, strict host-key pinning. Knows nothing of clusters.
        .target(name: "SSH", dependencies: ["CLibSSH2", "Blocking"]),
        // NoCloud meta-data / user-data / network-config and the seed ISO.
        .target(name: "CloudInit", dependencies: ["Blocking", .product(name: "Yams", package: "Yams")]),
        // Layers, each seeing only those below it:
        //   VMCtlSupport → Images → Machines → Clusters | Media | VNodes → Swarm (on Clusters) → VMCtlCommands
        // (later Repave and Site beside Clusters, on Machines). Machines is the only road to
        // libvirt: it imports Libvirt `internal`ly (SE-0409), so no libvirt type crosses its
        // public API, and the targets above it build with MemberImportVisibility (SE-0444) and,
        // from the Makefile, `--explicit-target-dependency-import-check error`: a libvirt call
        // above Machines does not build.
        // The support layer: the error type, state dir, atomic files, file locks, file modes for QEMU.
        .target(name: "VMCtlSupport", dependencies: ["Blocking"]),
        // Recipes, staged image builds, the image store.
        .target(name: "Images", dependencies: [
            "VMCtlSupport", "Blocking",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // One virtual machine and its lifecycle over libvirt: hypervisor target, launch, readiness,
        // serial logs, the private L2 switch, the acceleration probe. The warm agent (a Python
        // program the template runs) is a file of its own, compiled into the binary.
        .target(name: "Machines", dependencies: [
            "VMCtlSupport", "Images", "Libvirt", "SSH", "CloudInit", "Blocking", "CHost",
            .product(name: "Crypto", package: "swift-crypto"),
        ], resources: [.embedInCode("Resources/warm-agent.py")]),
        // N-node clusters over machines: plan, spec, state, lock, allocation, bootstrap, checks.
        .target(name: "Clusters", dependencies: ["VMCtlSupport", "Images", "Machines", "SSH", "Blocking"],
                swiftSettings: upperLayer),
        // vnodes: fresh VMs from pools of names, on cloud images, in parallel (seed 004).
        .target(name: "VNodes", dependencies: [
            "VMCtlSupport", "Images", "Machines", "SSH",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: upperLayer),
        // Docker Swarm and seed 000's cases (stacks/), a layer above Clusters: a swarm's nodes
        // are a cluster's, made and reached through ClusterManager's public verbs.
        .target(name: "Swarm", dependencies: ["VMCtlSupport", "Images", "Clusters", "SSH"], swiftSettings: upperLayer),
        // Bootable media for real machines: USB disk, installer ISO, their verification in QEMU.
        // The installer's shell script is a file of its own, compiled into the binary.
        .target(name: "Media", dependencies: [
            "VMCtlSupport", "Images", "Machines", "SSH", "CloudInit", "Blocking",
        ], resources: [.embedInCode("Resources/vmctl-installer.sh")], swiftSettings: upperLayer),
        // One file per leaf command.
        .target(name: "VMCtlCommands", dependencies: [
            "VMCtlSupport", "Images", "Machines", "Clusters", "Media", "VNodes", "Swarm", "Blocking",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: upperLayer),
        .executableTarget(name: "vmctl", dependencies: ["VMCtlCommands"], swiftSettings: upperLayer),

        // Fast tier: no hypervisor needed (libvirt's test:///default driver at most).
        .testTarget(name: "VMCtlUnitTests", dependencies: ["VMCtlSupport", "Images", "Machines", "Clusters", "Media", "VNodes", "Swarm",
                                                         "VMCtlCommands", "Libvirt", "CLibvirt", "SSH", "CloudInit", "Blocking",
                                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                         .product(name: "Yams", package: "Yams"),
                                                         .product(name: "Crypto", package: "swift-crypto")]),
        // Slow tier: real QEMU through real libvirt, real SSH, real cloud-init.
        .testTarget(name: "VMCtlVMTests", dependencies: ["VMCtlSupport", "Images", "Machines", "Clusters", "Media", "VNodes", "Swarm", "Libvirt", "SSH", "Blocking"]),
    ]
)
