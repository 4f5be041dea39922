/* syscall_fault: makes one system call fail in the calling process, as a
 * failing disk or a file system without a feature does, for the tests of
 * error paths (a seccomp filter: no privileges needed, and it stays for the
 * rest of the process, so tests call it in a forked child).
 */
#ifndef FILTERMAIL_TEST_SYSCALL_FAULT_H
#define FILTERMAIL_TEST_SYSCALL_FAULT_H

/* Makes the system call nr (__NR_read, ...) fail with errno e; with flag not
 * 0, only when argument arg has one of flag's bits set. Returns 0, or -1. */
int syscall_fault(int nr, int arg, unsigned flag, int e);

#endif
