extension Duration {
    /// The duration in seconds, fractions included.
    public var secondsDouble: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
