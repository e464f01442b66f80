#include "chost.h"
#ifdef __linux__
#include <sys/prctl.h>
#endif

int vmctl_disable_thp(void) {
#ifdef __linux__
    return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
#else
    return 0;
#endif
}
