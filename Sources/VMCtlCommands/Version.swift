/// vmctl's release, printed by `vmctl --version`. Raised by hand with each release.
enum VMCtlVersion {
    static let current = "0.4.0"
}
