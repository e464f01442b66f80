import ArgumentParser
import Foundation
import VMCtlSupport
import Images
import Media

struct ImageUSB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usb",
        abstract: "Write a USB image and an installer ISO for real machines (UEFI, Secure Boot).",
        discussion: """
            Builds the recipe's hardware variant (NAME-hw: generic kernel, firmware, signed shim and
            GRUB) and writes, under --output:
              PREFIX-usb.img.gz          bootable GPT disk: zcat it onto a USB stick (dd)
              PREFIX-usb.img             the same disk uncompressed (with --raw)
              PREFIX-installer.iso       UEFI installer (CD, virtual media or USB stick): writes that
                                         disk to the machine's internal disk, powers off
              PREFIX-usb.id_ed25519      login key for the image's user (unless --authorized-key)
              PREFIX-usb.known_hosts     the media's pinned host key
            The keys and any Wi-Fi profile go to the disk's CIDATA partition, not into the image cache.

            The installer writes to vmctl.target=/dev/X if that is on its kernel command
            line (press e in its menu). Else it waits until the disks stop changing and
            picks the one internal disk that can hold the system (several: it lists them
            and powers off), then asks for that disk's name on the console: nothing typed
            in 5 minutes powers off without writing. --unattended skips the question.

            EXAMPLES:
              vmctl image usb cluster-os-node
              vmctl image usb cluster-os-node --wifi-ssid lab --wifi-psk-file ~/.lab-psk
              vmctl image usb cluster-os-node --unattended --verify   also test them in QEMU
            """)

    @Argument(help: "Recipe name (its hardware variant NAME-hw is built).")
    var name: String

    @Option(help: "Directory for the media.")
    var output = "dist"

    @Option(help: "File name prefix (default: the recipe name without '-node').")
    var prefix: String?

    @Option(help: "Authorize this OpenSSH public key instead of generating a login key.")
    var authorizedKey: String?

    @Option(help: "Wi-Fi network to join on first boot (needs --wifi-psk-file or VMCTL_WIFI_PSK).")
    var wifiSsid: String?

    @Option(help: "File holding the Wi-Fi passphrase (kept out of the command line and the repository).")
    var wifiPskFile: String?

    @Flag(help: "Skip the installer ISO.")
    var noIso = false

    @Flag(help: "Also keep the uncompressed raw disk (PREFIX-usb.img, sparse).")
    var raw = false

    @Flag(help: "The installer ISO erases the machine's one internal disk without asking (--verify needs it).")
    var unattended = false

    @Flag(help: "Boot the media in QEMU under OVMF (Secure Boot on and off) and verify each over SSH.")
    var verify = false

    func run() async throws {
        let wifi = try wifiProfile()
        let state = StateDir.resolve()
        let media = USBMedia(state: state, recipes: RecipeStore.locate())
        let options = USBMedia.Options(outputDirectory: output, prefix: prefix, authorizedKeyFile: authorizedKey,
                                       wifi: wifi, iso: !noIso, raw: raw, unattended: unattended)
        if verify && authorizedKey != nil {
            throw VMCtlError.usage("--verify logs in with the key vmctl generates: drop --authorized-key or --verify")
        }
        let start = ContinuousClock.now
        let log: @Sendable (String) -> Void = { say("[\(String(format: "%6.1f", (ContinuousClock.now - start).seconds))s] \($0)") }
        let m = try await media.write(name, options, verify: verify, progress: log)
        say("wrote " + ([m.usbImage] + [m.rawImage, m.installerISO].compactMap { $0 }).joined(separator: ", "))
        if let k = m.privateKey {
            // known_hosts names the machine by its hostname (the prefix): its address is unknown now.
            let host = String(((m.knownHosts as NSString).lastPathComponent).dropLast("-usb.known_hosts".count))
            say("log in: ssh -i \(k) -o UserKnownHostsFile=\(m.knownHosts) -o HostKeyAlias=\(host) \(m.user)@ADDRESS")
        }
        if verify {
            let boots = try await MediaVerifier(state: state, manifest: m).run(iso: !noIso, progress: log)
            say("verified: " + boots.map { "\($0.name) \(Int($0.seconds))s" }.joined(separator: ", "))
        }
    }

    private func wifiProfile() throws -> WifiProfile? {
        guard let ssid = wifiSsid else {
            if wifiPskFile != nil { throw VMCtlError.usage("--wifi-psk-file needs --wifi-ssid") }
            return nil
        }
        var psk = ProcessInfo.processInfo.environment["VMCTL_WIFI_PSK"]
        if let f = wifiPskFile {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else {
                throw VMCtlError.usage("cannot read --wifi-psk-file \(f)")
            }
            psk = text.trimmingCharacters(in: .newlines)
        }
        guard let psk else { throw VMCtlError.usage("--wifi-ssid needs --wifi-psk-file FILE or VMCTL_WIFI_PSK") }
        return try WifiProfile(ssid: ssid, psk: psk)
    }
}
