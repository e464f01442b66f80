import Foundation
import Yams
import VMCtlSupport

/// The cloud images `vmctl vnode` boots (`images/catalog.yaml`): short names (`f33`, `u20.04`,
/// `d12`), each either a distribution's published disk (its URL exactly as published, where its
/// checksum comes from and how that file is signed) or a disk built locally from a recipe,
/// booted the same way. Each names its login user and its firmware.
public struct CloudCatalog: Sendable, Equatable {
    public var entries: [String: Entry]

    public struct Entry: Sendable, Equatable {
        /// The short name (`f33`).
        public var name: String
        public var title: String
        /// `fedora`, `ubuntu`, `debian`: the default distro is the catalog's latest Fedora.
        public var family: String
        /// The release as a number (`33`, `20.04`), to find the latest of a family.
        public var release: Double
        public var source: Source
        /// The account cloud-init creates with vmctl's key (the image's usual default user).
        public var user: String
        public var firmware: Firmware
    }

    public enum Firmware: String, Sendable, Equatable { case bios, uefi }

    /// Where the disk comes from.
    public enum Source: Sendable, Equatable {
        /// Downloaded from `url` and verified against `checksum` before it gets its final name.
        case download(url: String, checksum: Checksum)
        /// Built locally by `vmctl image build RECIPE` (no network; nothing to verify).
        case recipe(String)
    }

    /// The distribution's checksum file and how its signature is checked.
    public struct Checksum: Sendable, Equatable {
        public var url: String
        public var format: ChecksumFile.Format
        /// A detached signature beside it (Ubuntu's `SHA256SUMS.gpg`); nil when the file is
        /// clearsigned (Fedora's `CHECKSUM`) or not signed.
        public var signatureURL: String?
        /// The keyring that holds the signer's key (`/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg`),
        /// tried in order; the first that exists is used.
        public var keyrings: [String]
        /// The signer's key fingerprint (40 hex digits), pinned: a valid signature by any other key is refused.
        public var fingerprint: String?
    }

    public init(entries: [String: Entry]) { self.entries = entries }

    /// Loads `path` (`images/catalog.yaml`).
    public static func load(_ path: String) throws -> CloudCatalog {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw VMCtlError(.notFound, message: "no image catalog at \(path) (the checkout's images/catalog.yaml; --catalog PATH)")
        }
        return try parse(text, source: path)
    }

    /// The catalog beside the recipes (`images/catalog.yaml`), or `VMCTL_CATALOG`.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let c = environment["VMCTL_CATALOG"], !c.isEmpty { return c }
        return RecipeStore.locate(environment: environment).directory + "/catalog.yaml"
    }

    public static func parse(_ text: String, source: String = "catalog") throws -> CloudCatalog {
        func bad(_ why: String) -> VMCtlError { .usage("\(source): \(why)") }
        guard let root = try Yams.load(yaml: text) as? [String: Any], let images = root["images"] as? [String: Any] else {
            throw bad("expected a mapping `images:` of short names")
        }
        var entries: [String: Entry] = [:]
        for (name, value) in images {
            guard name.range(of: #"^[a-z][a-z0-9.\-]*$"#, options: .regularExpression) != nil else {
                throw bad("image name '\(name)' must be lowercase letters, digits, dots and dashes")
            }
            guard let e = value as? [String: Any] else { throw bad("\(name): expected a mapping") }
            func string(_ key: String) -> String? { (e[key] as? String) ?? (e[key].map { "\($0)" }) }
            guard let family = string("family"), let user = string("user") else { throw bad("\(name): needs family and user") }
            guard let release = string("release").flatMap(Double.init) else { throw bad("\(name): needs a numeric release") }
            guard let fw = Firmware(rawValue: string("firmware") ?? "") else { throw bad("\(name): firmware must be bios or uefi") }
            let source: Source
            if let recipe = string("recipe") {
                source = .recipe(recipe)
            } else if let url = string("url") {
                guard url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("file://") else {
                    throw bad("\(name): url must be http(s):// or file://")
                }
                guard let c = e["checksum"] as? [String: Any], let curl = c["url"] as? String,
                      let format = (c["format"] as? String).flatMap(ChecksumFile.Format.init(rawValue:)) else {
                    throw bad("\(name): a downloaded image needs checksum: {url, format: sha256sums|fedora}")
                }
                var keyrings: [String] = []
                if let k = c["keyring"] as? String { keyrings = [k] }
                if let ks = c["keyrings"] as? [String] { keyrings = ks }
                let fpr = (c["fingerprint"] as? String)?.replacingOccurrences(of: " ", with: "").uppercased()
                if let f = fpr, f.range(of: "^[0-9A-F]{40}$", options: .regularExpression) == nil {
                    throw bad("\(name): fingerprint must be 40 hex digits")
                }
                source = .download(url: url, checksum: Checksum(url: curl, format: format, signatureURL: c["signature"] as? String,
                                                              keyrings: keyrings, fingerprint: fpr))
            } else {
                throw bad("\(name): needs url (a published image) or recipe (built locally)")
            }
            entries[name] = Entry(name: name, title: string("title") ?? name, family: family, release: release,
                                  source: source, user: user, firmware: fw)
        }
        return CloudCatalog(entries: entries)
    }

    /// The entry called `name`, or an error listing the names there are.
    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else {
            throw VMCtlError.usage("unknown distro '\(name)': the catalog has \(names.joined(separator: ", "))")
        }
        return e
    }

    public var names: [String] { entries.keys.sorted { $0.localizedStandardCompare($1) == .orderedAscending } }

    /// The default distro: the latest Fedora in the catalog (as in the seed), else the latest of any.
    public var defaultName: String? {
        let all = entries.values.sorted { ($0.release, $0.name) < ($1.release, $1.name) }
        return (all.last { $0.family == "fedora" } ?? all.last)?.name
    }
}

extension CloudCatalog.Entry {
    /// The file name the disk is cached under: the published file's own name, or `NAME.qcow2`.
    public var cacheFileName: String {
        if case .download(let url, _) = source, let last = URL(string: url)?.lastPathComponent, !last.isEmpty, last != "/" {
            return last
        }
        return "\(name).qcow2"
    }
}
