import Foundation
import Testing
@testable import Machines
import VMCtlSupport

@Suite("compact: the guest's clock is stepped by what the host measured")
struct CompactTests {
    @Test("the step is the host's midpoint minus the guest's reading; junk is not a clock")
    func step() {
        #expect(Machine.clockStep(hostBefore: 1000, hostAfter: 1002, guest: "990.5\n") == 10.5)
        #expect(Machine.clockStep(hostBefore: 1000, hostAfter: 1000, guest: "1000.25") == -0.25)
        #expect(Machine.clockStep(hostBefore: 1000, hostAfter: 1001, guest: "") == nil)
        #expect(Machine.clockStep(hostBefore: 1000, hostAfter: 1001, guest: "date: invalid") == nil)
    }

    /// The guest-side command, run by the host's sh with a `sudo` that records its words: it
    /// asks `date -s @T` with T the shell's own clock plus the step, quoting and all.
    @Test("the step command sets the guest's now plus the step, through sudo -n date -s")
    func command() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compact-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let record = "\(dir)/words"
        try "#!/bin/sh\nprintf '%s\\n' \"$@\" > \(record)\n".write(toFile: "\(dir)/sudo", atomically: true, encoding: .utf8)
        chmod("\(dir)/sudo", 0o755)
        for step in [12.345678, -3.5] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", Machine.stepCommand(step)]
            p.environment = ["PATH": "\(dir):/usr/bin:/bin"]
            let before = Date().timeIntervalSince1970
            try p.run(); p.waitUntilExit()
            let after = Date().timeIntervalSince1970
            #expect(p.terminationStatus == 0)
            let words = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").map(String.init)
            try #require(words.count == 4, "\(words)")
            #expect(Array(words[0...2]) == ["-n", "date", "-s"])
            #expect(words[3].hasPrefix("@"))
            let t = try #require(Double(words[3].dropFirst()))
            #expect(t >= before + step - 0.01 && t <= after + step + 0.01, "\(t) vs \(before)…\(after) + \(step)")
        }
    }

    /// A kept save is refused once its disk was written after it (by more than the slack): the
    /// domain ran from the disk since, and restoring the save would corrupt the filesystem.
    @Test("a kept save older than its disk's last write is refused (wrong-state) and kept; one as recent is not")
    func staleSave() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("compact-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = MachineFiles(directory: dir)
        func write(_ path: String, at t: Date) throws {
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: t], ofItemAtPath: path)
        }
        let t = Date(timeIntervalSince1970: 1_800_000_000)
        try write(files.disk, at: t)
        // No save: nothing to check.
        try Machine.checkCompactSave(files, hostname: "node1")
        // Saved after the disk's last write, or within the slack before it: restorable.
        try write(files.compactSave, at: t.addingTimeInterval(5))
        try Machine.checkCompactSave(files, hostname: "node1")
        try write(files.compactSave, at: t.addingTimeInterval(-1.5))
        try Machine.checkCompactSave(files, hostname: "node1")
        // The disk written 10 s after the save: refused, naming the save; the save stays.
        try write(files.compactSave, at: t.addingTimeInterval(-10))
        let e = #expect(throws: VMCtlError.self) { try Machine.checkCompactSave(files, hostname: "node1") }
        #expect(e?.code == .wrongState)
        #expect(e?.message.contains("node1: its disk was written at") == true && e?.message.contains(files.compactSave) == true,
                "\(e?.message ?? "")")
        #expect(FileManager.default.fileExists(atPath: files.compactSave))
        // While the domain runs, any save is older than what runs from the disk.
        try write(files.compactSave, at: t.addingTimeInterval(5))
        let running = #expect(throws: VMCtlError.self) { try Machine.checkCompactSave(files, hostname: "node1", running: true) }
        #expect(running?.code == .wrongState && running?.message.contains("node1: it runs from its disk") == true)
    }
}
