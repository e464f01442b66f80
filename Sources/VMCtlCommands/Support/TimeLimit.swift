import ArgumentParser
import Foundation

/// A time limit on the command line: whole seconds (`90`), or with a unit (`90s`, `5m`, `1h`),
/// at most 30 days.
struct TimeLimit: ExpressibleByArgument, Sendable, Equatable {
    /// The limit in seconds (1 or more).
    let seconds: Int
    /// Most a limit may be: 30 days.
    static let maxSeconds = 30 * 24 * 3600

    init(seconds: Int) { self.seconds = seconds }

    init?(argument: String) {
        let t = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Int)] = [("s", 1), ("m", 60), ("h", 3600)]
        let unit = units.first { t.hasSuffix($0.0) }
        let digits = unit.map { String(t.dropLast($0.0.count)) } ?? t
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
              let n = Int(digits), n > 0, n <= Self.maxSeconds / (unit?.1 ?? 1) else { return nil }
        seconds = n * (unit?.1 ?? 1)
    }

    var duration: Duration { .seconds(seconds) }
    var defaultValueDescription: String { "\(seconds)s" }
}
