/// POSIX sh quoting, written once: every command vmctl composes for a shell (a guest's, over SSH;
/// a template's `|sh` filter; OpenSSH's remote command) makes its words here.
public enum Shell {
    /// `value` as one single-quoted POSIX sh word: `it's` becomes `'it'\''s'`. Inside single
    /// quotes every character but the quote itself is literal (`$`, backquotes, `\`, newlines,
    /// globs). A NUL cannot be in any shell word; callers that take outside input refuse it.
    public static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
