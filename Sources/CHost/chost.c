#define _GNU_SOURCE
#include "chost.h"
#include <errno.h>
#ifdef __linux__
#include <fcntl.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/prctl.h>
#endif

int vmctl_disable_thp(void) {
#ifdef __linux__
    return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
#else
    return 0;
#endif
}

long vmctl_splice_to_pipe(int in, long long *offset, int pipe, unsigned long length) {
#ifdef __linux__
    off64_t at = *offset;
    ssize_t n = splice(in, &at, pipe, NULL, length, SPLICE_F_MOVE | SPLICE_F_MORE);
    if (n > 0) *offset = at;
    return n;
#else
    errno = ENOSYS;
    return -1;
#endif
}

int vmctl_grow_pipe(int pipe, int bytes) {
#ifdef __linux__
    return fcntl(pipe, F_SETPIPE_SZ, bytes);
#else
    errno = ENOSYS;
    return -1;
#endif
}
