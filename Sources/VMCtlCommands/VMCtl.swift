public enum VMCtl { public static func main() async {} }
