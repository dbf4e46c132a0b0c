#ifndef CPOSIX_SHIM_H
#define CPOSIX_SHIM_H

// The few libc calls the Glibc module does not export, for Reactor's Posix.swift (the module's one
// syscall boundary). libevent's own headers stay in CLibevent.
#include <sys/types.h>
#include <sys/socket.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <fcntl.h>
#include <signal.h>

// accept4 is a GNU extension.
extern int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);

static inline int cposix_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    return accept4(fd, addr, addrlen, flags);
}

// sendfile(2) is in <sys/sendfile.h>, which Glibc's module map leaves out.
extern ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);

static inline ssize_t cposix_sendfile(int out_fd, int in_fd, off_t *offset, size_t count) {
    return sendfile(out_fd, in_fd, offset, count);
}

// gettid(2) is a GNU extension too.
extern pid_t gettid(void);

static inline pid_t cposix_gettid(void) {
    return gettid();
}

// pthread_setname_np is a GNU extension as well.
extern int pthread_setname_np(pthread_t thread, const char *name);

static inline int cposix_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

// The processors this process may run on: sched_getaffinity and CPU_COUNT are _GNU_SOURCE's, so the system
// call (which returns the bytes of the mask it wrote) and the bits counted.
static inline int cposix_processor_count(void) {
    unsigned long mask[16] = {0};
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    int count = 0;
    for (long i = 0; bytes > 0 && i < bytes / (long)sizeof(unsigned long); i++) count += __builtin_popcountl(mask[i]);
    if (count > 0) return count;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

// openat2(2) has no glibc wrapper: the system call, with the resolution flags of <linux/openat2.h>.
static inline int cposix_openat2(int dirfd, const char *path, int flags, unsigned long long resolve) {
    struct open_how how = { .flags = (unsigned long long)flags, .mode = 0, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// O_PATH (a descriptor that only names a place, to resolve paths from) is _GNU_SOURCE's.
static const int cposix_open_path = 010000000;

static const unsigned long long cposix_resolve_beneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

// The main dispatch queue's wake-up descriptor (an eventfd) and its drain: the calls swift-corelibs-foundation's
// RunLoop makes to run main-queue work (the main actor's jobs) on the main thread. libdispatch exports them for
// that purpose ("4CF": for CoreFoundation); EventLoop makes the same calls when it runs on the main thread.
extern int _dispatch_get_main_queue_handle_4CF(void);
extern void _dispatch_main_queue_callback_4CF(void *ignored);

// Starts `path` (_Fork, then execve): descriptors 0-2 stay, `fds[i]` becomes 3 + i, every other descriptor is
// closed, signals are unblocked. When `listen_pid` is not NULL it is an "LISTEN_PID=" entry of `envp` with room
// for the digits: the child writes its own pid there (sd_listen_fds(3): only the new process knows it). Between
// fork and execve the child makes only async-signal-safe calls (fcntl, dup2, close, getpid, sigprocmask, execve,
// _exit), as it must in a threaded process. Returns the child's pid, or -1 with errno; a child that cannot exec
// exits 127.
extern pid_t _Fork(void);  // glibc 2.34: fork without the atfork handlers, async-signal-safe

static inline pid_t cposix_spawn_passing(const char *path, char *const argv[], char *const envp[], char *listen_pid,
                                         const int *fds, int count) {
    // _Fork, not fork: no atfork handler of the program (a library's, say) has any business in a child that only
    // execs.
    pid_t pid = _Fork();
    if (pid != 0) return pid;
    int first_free = 3 + count;
    int high[count > 0 ? count : 1];
    for (int i = 0; i < count; i++) {  // out of the way first: a target number may be another's source
        high[i] = fcntl(fds[i], F_DUPFD, first_free + count);
        if (high[i] < 0) _exit(127);
    }
    for (int i = 0; i < count; i++) {
        if (dup2(high[i], 3 + i) < 0) _exit(127);  // dup2's copy is not close-on-exec
    }
    if (syscall(SYS_close_range, (unsigned)first_free, ~0U, 0) != 0) {
        for (int fd = first_free; fd < 65536; fd++) close(fd);
    }
    if (listen_pid != NULL) {
        char digits[16];
        int n = 0;
        for (pid_t value = getpid(); value > 0 && n < 15; value /= 10) digits[n++] = (char)('0' + value % 10);
        char *at = listen_pid + 11;  // after "LISTEN_PID="
        while (n > 0) *at++ = digits[--n];
        *at = 0;
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
    _exit(127);
}

#endif
