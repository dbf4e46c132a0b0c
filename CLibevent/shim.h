#ifndef CLIBEVENT_SHIM_H
#define CLIBEVENT_SHIM_H

// libc first: event2/event-config.h defines _GNU_SOURCE, and a clean build fails on
// `fd_set` ("'fds_bits' ... is not present") if an event2/ header is seen before these.
#include <sys/types.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <event2/dns.h>

// Function-like macros Swift cannot import.

static inline struct event *clibevent_evtimer_new(struct event_base *base, event_callback_fn cb, void *arg) {
    return evtimer_new(base, cb, arg);
}

static inline struct event *clibevent_evsignal_new(struct event_base *base, int signum, event_callback_fn cb, void *arg) {
    return evsignal_new(base, signum, cb, arg);
}

static inline struct event *clibevent_evuser_new(struct event_base *base, event_callback_fn cb, void *arg) {
    return event_new(base, -1, 0, cb, arg);
}

static const int clibevent_dns_options_all = DNS_OPTIONS_ALL;

// evdns_getaddrinfo for one family of TCP addresses, with the addrinfo list behind opaque pointers. Swift code that
// imports this module must not name libc's socket declarations (struct addrinfo, sockaddr, SOCK_STREAM,
// IPPROTO_TCP), and this header must include no libc header beyond those above (malloc, memset and free come with
// them): this module includes libc's headers textually, as SwiftGlibc does, and once a compile takes a declaration
// through it, Swift files that import only Glibc (Socket.swift) stop finding it ("cannot find 'SOCK_STREAM' in
// scope", seen in release and in some batches of debug builds).

static const int clibevent_eai_cancel = EVUTIL_EAI_CANCEL;
static const int clibevent_eai_noname = EVUTIL_EAI_NONAME;
static const int clibevent_eai_nodata = EVUTIL_EAI_NODATA;
static const int clibevent_eai_addrfamily = EVUTIL_EAI_ADDRFAMILY;
static const int clibevent_eai_memory = EVUTIL_EAI_MEMORY;

/// Called once per lookup with libevent's result code and its address list (free it with clibevent_addresses_free).
typedef void (*clibevent_resolved_cb)(int result, void *list, void *arg);

struct clibevent_dns_call {
    clibevent_resolved_cb callback;
    void *arg;
};

static inline void clibevent_dns_trampoline(int result, struct evutil_addrinfo *list, void *context) {
    struct clibevent_dns_call call = *(struct clibevent_dns_call *)context;
    free(context);
    call.callback(result, list, call.arg);
}

/// Starts a lookup of `host`'s IPv6 (`ipv6` non-zero) or IPv4 TCP addresses with `port`; NULL when it completed (or
/// failed) inside this call, which has then called `callback` already.
static inline struct evdns_getaddrinfo_request *clibevent_dns_lookup(
    struct evdns_base *base, const char *host, const char *port, int ipv6, clibevent_resolved_cb callback, void *arg) {
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = ipv6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct clibevent_dns_call *call = malloc(sizeof *call);
    if (call == NULL) {
        callback(EVUTIL_EAI_MEMORY, NULL, arg);
        return NULL;
    }
    call->callback = callback;
    call->arg = arg;
    return evdns_getaddrinfo(base, host, port, &hints, clibevent_dns_trampoline, call);
}

/// The list's next entry, or NULL.
static inline void *clibevent_addresses_next(void *entry) {
    return ((struct evutil_addrinfo *)entry)->ai_next;
}

/// An entry's socket address (a `struct sockaddr`) and its length.
static inline const void *clibevent_addresses_address(void *entry, int *length) {
    struct evutil_addrinfo *info = entry;
    *length = (int)info->ai_addrlen;
    return info->ai_addr;
}

static inline void clibevent_addresses_free(void *list) {
    if (list != NULL) evutil_freeaddrinfo(list);
}

#endif
