import Foundation

/// The OVMF builds libvirt's firmware auto-selection chooses from: with Microsoft's keys
/// enrolled (Secure Boot on) and plain.
public enum UEFIFirmware {
    /// Code images that must be installed for UEFI boots.
    public static let files = ["/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd"]

    /// The first firmware file that is not installed, if any.
    public static func missing() -> String? {
        files.first { !FileManager.default.fileExists(atPath: $0) }
    }
}
