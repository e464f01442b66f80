#include <sys/prctl.h>
#include "chost.h"

int vmctl_disable_thp(void) {
    return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
}
