import Foundation

/// Puts the terminal in raw mode (if it is one) and restores it.
final class RawTerminal: @unchecked Sendable {
    private var saved = termios()
    private let active: Bool

    init() {
        active = isatty(0) == 1 && tcgetattr(0, &saved) == 0
        guard active else { return }
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(0, TCSANOW, &raw)
    }

    func restore() {
        if active { var t = saved; tcsetattr(0, TCSANOW, &t) }
    }
}
