import Blocking
import Foundation
internal import Libvirt

/// A person at a machine's serial console: libvirt's console stream joined to the terminal in
/// raw mode until Ctrl-] (or the guest goes away). The terminal is restored on the way out and
/// never reset or cleared.
public enum SerialConsole {
    /// Attaches the terminal to `domain`'s console; `name` is what the user knows it as.
    ///
    /// The console stream is event-driven (see `Stream`): guest output arrives on `output`,
    /// keystrokes read on a thread of their own are queued with `send`, and the stream is
    /// closed only here, after both sides have stopped using it.
    static func attach(_ domain: Domain, name: String) async throws {
        let stream = try await domain.openConsole()
        FileHandle.standardError.write(Data("connected to \(name)'s serial console; Ctrl-] to leave\r\n".utf8))
        let terminal = RawTerminal()
        defer { terminal.restore() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Guest output until the stream ends (the guest went away) or is cancelled.
                do { for try await data in stream.output { FileHandle.standardOutput.write(data) } } catch {}
            }
            group.addTask {
                // Keystrokes until Ctrl-], end of input, or a stream that no longer takes them.
                await TerminalInput.forward(to: stream)
            }
            // Whichever side ends first ends the session.
            await group.next()
            group.cancelAll()
        }
        await stream.close()
    }
}

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

/// Reads the terminal on a thread of its own (`read` blocks) and hands the keystrokes to a
/// console stream.
enum TerminalInput {
    /// Ctrl-]: leaves the console.
    static let escape: UInt8 = 0x1d

    /// Forwards stdin to `stream` until Ctrl-], end of input, or a send that fails. Returns
    /// when the calling task is cancelled too (the reading thread then ends at the next
    /// keystroke, which goes nowhere).
    static func forward(to stream: Libvirt.Stream) async {
        let (keys, feed) = AsyncStream.makeStream(of: Data.self)
        startThread("console.input") {
            var b = [UInt8](repeating: 0, count: 256)
            while true {
                let n = read(0, &b, b.count)
                if n <= 0 { break }
                if case .terminated = feed.yield(Data(b[0..<n])) { break }
            }
            feed.finish()
        }
        for await chunk in keys {
            if let i = chunk.firstIndex(of: escape) {
                if i > chunk.startIndex { try? stream.send(chunk[chunk.startIndex..<i]) }
                break
            }
            if (try? stream.send(chunk)) == nil { break }
        }
        feed.finish()
    }
}
