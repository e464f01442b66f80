import Foundation
import Images

/// The switch's MAC → port table, bounded and aged: a guest sending random source MACs
/// cannot grow it. When it is full, new MACs are not learned and frames to them are
/// flooded (still delivered), as a real switch does; entries unseen for `aging` seconds expire.
struct MACTable {
    /// Most entries the table holds.
    let capacity: Int
    /// Seconds after which an entry that was not seen again is forgotten.
    let aging: Double
    private var entries: [UInt64: Entry] = [:]
    private var lastSweep = -Double.infinity

    private struct Entry {
        var port: Int32
        var seen: Double
    }

    init(capacity: Int = 4096, aging: Double = 300) {
        self.capacity = capacity
        self.aging = aging
        entries.reserveCapacity(capacity)
    }

    /// Entries held now (expired ones included until the next sweep).
    var count: Int { entries.count }

    /// Records that `mac` was seen on `port` at `now`. Returns false when the table is full
    /// and `mac` was not learned.
    @discardableResult
    mutating func learn(_ mac: UInt64, port: Int32, now: Double) -> Bool {
        if entries[mac] != nil {
            entries[mac] = Entry(port: port, seen: now)
            return true
        }
        if entries.count >= capacity {
            // Full: make room from expired entries, but sweep at most once a second so a
            // flood of new MACs costs a lookup per frame, not a pass over the table.
            if now - lastSweep >= 1 { sweep(now: now) }
            if entries.count >= capacity { return false }
        }
        entries[mac] = Entry(port: port, seen: now)
        return true
    }

    /// The port `mac` was last seen on, unless it is unknown or expired.
    mutating func port(for mac: UInt64, now: Double) -> Int32? {
        guard let e = entries[mac] else { return nil }
        if now - e.seen > aging {
            entries[mac] = nil
            return nil
        }
        return e.port
    }

    /// Drops every expired entry.
    mutating func sweep(now: Double) {
        lastSweep = now
        let limit = aging
        entries = entries.filter { now - $0.value.seen <= limit }
    }

    /// Forgets every MAC learned on `port` (it disconnected).
    mutating func forget(port: Int32) {
        entries = entries.filter { $0.value.port != port }
    }

    /// The 48-bit MAC at `offset` of `frame`, as an integer key.
    static func key(_ frame: UnsafeBufferPointer<UInt8>, at offset: Int) -> UInt64 {
        var k: UInt64 = 0
        for i in offset..<(offset + 6) { k = k << 8 | UInt64(frame[i]) }
        return k
    }

    /// Whether a MAC key (see `key`) is a group (broadcast or multicast) address.
    static func isGroup(_ key: UInt64) -> Bool { (key >> 40) & 1 != 0 }
}
