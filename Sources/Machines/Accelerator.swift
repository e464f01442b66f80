internal import Libvirt

/// How a machine's CPU runs: KVM (hardware) or TCG (QEMU's emulation). Machines' own type, so
/// nothing above the machine layer names libvirt's.
public enum Accelerator: String, Sendable, Codable, CaseIterable {
    case kvm, tcg

    /// The same accelerator as libvirt's domain XML knows it.
    var domain: DomainSpec.Accelerator {
        switch self {
        case .kvm: .kvm
        case .tcg: .tcg
        }
    }
}
