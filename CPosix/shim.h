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

#endif
