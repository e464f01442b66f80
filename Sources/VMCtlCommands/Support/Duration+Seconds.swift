import VMCtlSupport

extension Duration {
    /// Seconds as a Double.
    var seconds: Double { secondsDouble }
}
