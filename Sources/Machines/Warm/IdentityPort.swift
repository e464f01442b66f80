import Blocking
import Foundation
import VMCtlSupport

/// vmctl's end of a clone's identity port: QEMU listens on a UNIX socket for it.
enum IdentityPort {
    /// Sends `script` and returns the agent's one-line answer (`ok` or `failed …`).
    static func deliver(_ script: String, to socket: String, deadline: ContinuousClock.Instant) async throws -> String {
        try await onOwnThreadCancellable("warm.identity") { cancel in
            let fd = Foundation.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw VMCtlError("cannot make a socket: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let path = Array(socket.utf8)
            guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw VMCtlError("socket path too long: \(socket)") }
            withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.enumerated() { p[i] = b } }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0 else { throw VMCtlError("cannot reach the identity port at \(socket): \(String(cString: strerror(errno)))") }
            let bytes = Array(script.utf8)
            var done = 0
            while done < bytes.count {
                let w = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { throw VMCtlError("identity port closed while sending: \(String(cString: strerror(errno)))") }
                done += w
            }
            var answer = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 4096)
            while !answer.contains(10) {
                if cancel.isCancelled { throw CancellationError() }
                guard ContinuousClock.now < deadline else { throw VMCtlError(.nodeTimeout, message: "no answer on the identity port in time") }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 200) >= 0 || errno == EINTR else { throw VMCtlError("poll: \(String(cString: strerror(errno)))") }
                if p.revents == 0 { continue }
                let n = recv(fd, &buf, buf.count, 0)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw VMCtlError("the identity port closed without an answer") }
                answer += buf[0..<n]
            }
            return String(decoding: answer.prefix { $0 != 10 }, as: UTF8.self)
        }
    }
}
