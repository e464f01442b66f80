import Foundation
import VMCtlSupport

/// A Wi-Fi network given when the USB/ISO media are written (`vmctl image usb --wifi-ssid`),
/// rendered as a wpa_supplicant profile onto the media's CIDATA seed. Never part of a recipe,
/// so no secret lands in the repository or the image cache.
public struct WifiProfile: Sendable, Equatable {
    public var ssid: String
    /// A passphrase (8–63 printable ASCII characters) or a raw 64-hex-digit PSK.
    public var psk: String

    /// Where the image's `vmctl-wifi@.service` reads it.
    public static let path = "/etc/wpa_supplicant/vmctl-wifi.conf"

    public init(ssid: String, psk: String) throws {
        guard !ssid.isEmpty, ssid.utf8.count <= 32 else {
            throw VMCtlError.usage("Wi-Fi SSID must be 1 to 32 bytes (got \(ssid.utf8.count))")
        }
        let isHexKey = psk.count == 64 && psk.allSatisfy(\.isHexDigit)
        let printable = psk.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f }
        guard isHexKey || (8...63).contains(psk.count) && printable else {
            throw VMCtlError.usage("Wi-Fi passphrase must be 8 to 63 printable ASCII characters, or a 64-hex-digit key")
        }
        self.ssid = ssid
        self.psk = psk
    }

    /// The wpa_supplicant configuration. The SSID is written in hex, so any bytes are safe;
    /// a passphrase is quoted (it cannot contain a newline, and wpa_supplicant reads up to
    /// the last quote), a raw key is not.
    public func render() -> String {
        let hexSSID = ssid.utf8.map { String(format: "%02x", $0) }.joined()
        let key = psk.count == 64 && psk.allSatisfy(\.isHexDigit) ? psk.lowercased() : "\"\(psk)\""
        return """
            # Written by vmctl image usb. Mode 0600: it holds the network key.
            ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev
            update_config=0
            network={
            \tssid=\(hexSSID)
            \tkey_mgmt=WPA-PSK
            \tpsk=\(key)
            }

            """
    }
}
