#ifndef VMCTL_CHOST_H
#define VMCTL_CHOST_H
/// Host calls Swift cannot make itself (prctl is variadic in C).
/// Transparent huge pages off for this process and what it forks and execs; 0 or -1 (errno).
int vmctl_disable_thp(void);
#endif
