// libevent echo server with PLAIN events and its own buffers (no bufferevent). Usage: echo_libevent PORT
// On readable: one read() into a shared buffer, write() it straight back. Only if that write is partial is the
// rest copied into a per-connection heap buffer; then reading stops and an EV_WRITE event drains it.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/listener.h>

#define BUFSIZE 65536
static char buf[BUFSIZE];  // single-threaded: one read buffer shared by every connection

struct conn {
  evutil_socket_t fd;
  struct event *rev, *wev;  // EV_READ|EV_PERSIST while idle, EV_WRITE|EV_PERSIST while output is pending
  char *pending;            // allocated on the first partial write, BUFSIZE bytes (never more than one read's worth)
  size_t off, len;          // pending bytes are pending[off, len)
};

static void conn_free(struct conn *c) {
  event_free(c->rev); event_free(c->wev); close(c->fd); free(c->pending); free(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;
  ssize_t w = write(fd, c->pending + c->off, c->len - c->off);
  if (w < 0) { if (errno == EAGAIN || errno == EINTR) return; conn_free(c); return; }
  c->off += (size_t)w;
  if (c->off == c->len) { c->off = c->len = 0; event_del(c->wev); event_add(c->rev, NULL); }  // drained: read again
}

static void on_read(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;
  ssize_t r = read(fd, buf, sizeof buf);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { conn_free(c); return; }
  if (r < 0) return;
  ssize_t w = write(fd, buf, (size_t)r);
  if (w < 0) { if (errno != EAGAIN && errno != EINTR) { conn_free(c); return; } w = 0; }
  if (w < r) {  // partial write: keep the rest, stop reading until it is drained
    if (!c->pending && !(c->pending = malloc(BUFSIZE))) { conn_free(c); return; }
    memcpy(c->pending, buf + w, (size_t)(r - w)); c->off = 0; c->len = (size_t)(r - w);
    event_del(c->rev); event_add(c->wev, NULL);
  }
}

// evconnlistener accepts every waiting connection per wakeup and hands us non-blocking sockets.
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int alen, void *arg) {
  struct event_base *base = arg;
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct conn *c = calloc(1, sizeof *c);
  if (!c) { close(fd); return; }
  c->fd = fd;
  c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
  c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, c);
  event_add(c->rev, NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
  signal(SIGPIPE, SIG_IGN);  // SIGTERM keeps its default action: the process ends at once
  struct rlimit rl; if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
  struct event_base *base = event_base_new();
  struct sockaddr_in sin; memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET; sin.sin_port = htons(atoi(argv[1])); sin.sin_addr.s_addr = htonl(0x7f000001);
  struct evconnlistener *l = evconnlistener_new_bind(base, on_accept, base, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                                     1024, (struct sockaddr *)&sin, sizeof sin);
  if (!l) { perror("bind"); return 1; }
  socklen_t slen = sizeof sin; getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
  printf("listening on 127.0.0.1:%d\n", ntohs(sin.sin_port)); fflush(stdout);
  event_base_dispatch(base);
  return 0;
}
