#ifndef CPOSIX_SHIM_H
#define CPOSIX_SHIM_H

// The few libc calls the Glibc module does not export, for Reactor's Posix.swift (the module's one
// syscall boundary). libevent's own headers stay in CLibevent.
#include <sys/types.h>
#include <sys/socket.h>

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

#endif
