#ifndef VMCTL_CLIBSSH2_SHIM_H
#define VMCTL_CLIBSSH2_SHIM_H
#include <libssh2.h>

// libssh2 exposes these as macros, which Swift cannot call.
static inline int vmctl_ssh2_channel_exec(LIBSSH2_CHANNEL *ch, const char *cmd) {
    return libssh2_channel_exec(ch, cmd);
}
static inline LIBSSH2_CHANNEL *vmctl_ssh2_channel_open_session(LIBSSH2_SESSION *s) {
    return libssh2_channel_open_session(s);
}
static inline ssize_t vmctl_ssh2_channel_read(LIBSSH2_CHANNEL *ch, char *buf, size_t len) {
    return libssh2_channel_read(ch, buf, len);
}
static inline ssize_t vmctl_ssh2_channel_read_stderr(LIBSSH2_CHANNEL *ch, char *buf, size_t len) {
    return libssh2_channel_read_stderr(ch, buf, len);
}
static inline ssize_t vmctl_ssh2_channel_write(LIBSSH2_CHANNEL *ch, const char *buf, size_t len) {
    return libssh2_channel_write(ch, buf, len);
}
static inline LIBSSH2_SESSION *vmctl_ssh2_session_init(void) {
    return libssh2_session_init();
}
static inline int vmctl_ssh2_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user,
                                                         const char *pub, const char *priv) {
    return libssh2_userauth_publickey_fromfile(s, user, pub, priv, NULL);
}
static inline int vmctl_ssh2_session_disconnect(LIBSSH2_SESSION *s, const char *why) {
    return libssh2_session_disconnect(s, why);
}
#endif
