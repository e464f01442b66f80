import Foundation

/// Sizes like `2G`, `512M`, `20GiB`.
public enum ByteSize {
    /// Bytes for `s`, or nil when it is not a size: not digits and a unit, zero, negative,
    /// or more than 64 bits hold (`99999999T`).
    public static func parse(_ s: String) -> UInt64? {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, UInt64)] = [("TIB", 1 << 40), ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10),
                                         ("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10),
                                         ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        for (suffix, mult) in units where t.hasSuffix(suffix) {
            guard let n = UInt64(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n > 0 else { return nil }
            let (bytes, overflow) = n.multipliedReportingOverflow(by: mult)
            return overflow ? nil : bytes
        }
        guard let n = UInt64(t), n > 0 else { return nil }
        return n
    }

    /// `2.0 GiB`, `512 MiB`.
    public static func format(_ bytes: UInt64) -> String {
        let b = Double(bytes)
        if bytes >= 1 << 30 { return String(format: "%.1f GiB", b / 1_073_741_824) }
        if bytes >= 1 << 20 { return String(format: "%.0f MiB", b / 1_048_576) }
        return "\(bytes) B"
    }
}
