#ifndef VMCTL_CHOST_H
#define VMCTL_CHOST_H
/// Host calls Swift cannot make itself (prctl is variadic in C; splice and F_SETPIPE_SZ are
/// GNU extensions Glibc's Swift module does not import).
/// Transparent huge pages off for this process and what it forks and execs; 0 or -1 (errno).
int vmctl_disable_thp(void);
/// Moves up to `length` bytes of the file `in` at `*offset` into the pipe `pipe` without
/// copying them through this process (splice); advances `*offset`. Bytes moved, 0 at end of
/// file, or -1 (errno; EINVAL or ENOSYS where splice cannot be used: copy instead).
long vmctl_splice_to_pipe(int in, long long *offset, int pipe, unsigned long length);
/// Asks for a pipe buffer of `bytes` (F_SETPIPE_SZ); the size it got, or -1 (errno).
int vmctl_grow_pipe(int pipe, int bytes);
#endif
