// Raw epoll (level-triggered) echo server, no libevent. Usage: echo_epoll PORT
// On readable: one read() into a shared buffer, write() it straight back. Only if that write is partial is the
// rest copied into a per-connection heap buffer; then the socket waits for EPOLLOUT only until it is drained.
#define _GNU_SOURCE
#include <sys/epoll.h>
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

#define BUFSIZE 65536
static char buf[BUFSIZE];  // single-threaded: one read buffer shared by every connection

struct pending { size_t off, len; char data[BUFSIZE]; };  // never more than one read's worth
static struct pending **pend;  // indexed by fd (fds are below RLIMIT_NOFILE); NULL until a first partial write
static int ep;

static void close_conn(int fd) { close(fd); if (pend[fd]) { free(pend[fd]); pend[fd] = NULL; } }  // close() leaves epoll
static void interest(int fd, unsigned events) {
  struct epoll_event ev = { .events = events, .data.fd = fd }; epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void on_read(int fd) {
  ssize_t r = read(fd, buf, sizeof buf);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { close_conn(fd); return; }
  if (r < 0) return;
  ssize_t w = write(fd, buf, (size_t)r);
  if (w < 0) { if (errno != EAGAIN && errno != EINTR) { close_conn(fd); return; } w = 0; }
  if (w < r) {  // partial write: keep the rest, stop reading until it is drained
    struct pending *p = pend[fd];
    if (!p && !(p = pend[fd] = malloc(sizeof *p))) { close_conn(fd); return; }
    memcpy(p->data, buf + w, (size_t)(r - w)); p->off = 0; p->len = (size_t)(r - w);
    interest(fd, EPOLLOUT);
  }
}

static void on_write(int fd) {
  struct pending *p = pend[fd];
  ssize_t w = write(fd, p->data + p->off, p->len - p->off);
  if (w < 0) { if (errno != EAGAIN && errno != EINTR) close_conn(fd); return; }
  p->off += (size_t)w;
  if (p->off == p->len) { p->off = p->len = 0; interest(fd, EPOLLIN); }  // drained: read again
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
  signal(SIGPIPE, SIG_IGN);  // SIGTERM keeps its default action: the process ends at once
  struct rlimit rl; if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
  getrlimit(RLIMIT_NOFILE, &rl);
  size_t maxfd = rl.rlim_cur > (1 << 20) ? (1 << 20) : (size_t)rl.rlim_cur;
  pend = calloc(maxfd, sizeof *pend);

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin; memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET; sin.sin_port = htons(atoi(argv[1])); sin.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(ls, (struct sockaddr *)&sin, sizeof sin) || listen(ls, 1024)) { perror("bind"); return 1; }
  socklen_t slen = sizeof sin; getsockname(ls, (struct sockaddr *)&sin, &slen);
  printf("listening on 127.0.0.1:%d\n", ntohs(sin.sin_port)); fflush(stdout);

  ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }; epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {  // accept every waiting connection
        int c;
        while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if ((size_t)c >= maxfd) { close(c); continue; }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = { .events = EPOLLIN, .data.fd = c }; epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
      } else if (pend[fd] && pend[fd]->len) {
        on_write(fd);  // only EPOLLOUT (or an error, which write reports) is wanted while output is pending
      } else {
        on_read(fd);   // EPOLLIN, EPOLLHUP, EPOLLERR: read reports EOF or the error
      }
    }
  }
}
