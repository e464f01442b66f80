import ArgumentParser
import Foundation
import VMCtlSupport
import Images

struct ImageFetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch",
        abstract: "Download published cloud images from images/catalog.yaml, verified before they get their names.",
        discussion: "Streams to NAME.part (resumed with an HTTP Range request after an interruption), checks the SHA-256 against the distribution's checksum file, checks that file's signature where a keyring is installed (and says in one line when it cannot), then renames. A mismatch deletes the download. Catalog entries built locally (d12) are made by `vmctl image build` instead.")

    @Argument(help: "Short names from the catalog (f33, u20.04, …); --all for every published one.")
    var names: [String] = []

    @Flag(help: "Every published image in the catalog.")
    var all = false

    @Option(help: "The image catalog (default: images/catalog.yaml; env VMCTL_CATALOG).")
    var catalog: String?

    @Option(help: "Where images are cached (e.g. /var/lib/libvirt/boot; default: the state dir's images/cloud).")
    var cacheDir: String?

    func validate() throws {
        if all == !names.isEmpty { throw ValidationError("name the images to fetch, or --all") }
    }

    func run() async throws {
        let cat = try CloudCatalog.load(catalog ?? CloudCatalog.locate())
        let entries = try (all ? cat.names : names).map { try cat.entry($0) }
        let local = entries.filter { if case .recipe = $0.source { return true } else { return false } }
        if !names.isEmpty, let e = local.first, case .recipe(let r) = e.source {
            throw VMCtlError.usage("\(e.name) is built locally, not downloaded: `vmctl image build \(r)`")
        }
        let state = StateDir.resolve()
        let dir = cacheDir.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
        let cache = dir.map(CloudImageCache.init(directory:)) ?? .standard(state)
        if cacheDir == nil { try state.ensureWritable() }
        for e in entries where !local.contains(e) {
            let f = try await cache.fetch(e, progress: isatty(2) == 1) { say("\(e.name): \($0)") }
            switch f.signature {
            case .verified(let fpr): say("\(e.name): checksum file signed by \(fpr) (verified)")
            case .unverified(let why): if f.downloaded { say("\(e.name): signature not verified: \(why)") }
            }
            say(f.downloaded ? "\(e.name): \(f.path) (sha256 \(f.sha256 ?? "?"), verified)" : "\(e.name): \(f.path) (cached)")
        }
    }
}
