// Closed-loop echo load: N connections, each sends a 32-byte line and waits for it back, for D seconds.
// Usage: echo_client PORT CONNECTIONS SECONDS   prints: REQUESTS REQUESTS_PER_SECOND
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  int port = atoi(argv[1]), n = atoi(argv[2]); double dur = atof(argv[3]);
  const char *msg = "0123456789abcdefghijklmnopqrstu\n"; int len = 32;
  int ep = epoll_create1(0); int *got = calloc(n, sizeof(int)); int *fds = calloc(n, sizeof(int));
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0); struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (void*)&a, sizeof a)) { perror("connect"); return 1; }
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); fcntl(fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i }; epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev); fds[i] = fd;
  }
  for (int i = 0; i < n; i++) write(fds[i], msg, len);
  long requests = 0; double start = now(), end = start + dur; char buf[4096]; struct epoll_event evs[256];
  while (now() < end) {
    int k = epoll_wait(ep, evs, 256, 100);
    for (int j = 0; j < k; j++) { int i = evs[j].data.u32; ssize_t r = read(fds[i], buf, sizeof buf); if (r <= 0) { fprintf(stderr, "read %zd\n", r); return 1; }
      got[i] += r; while (got[i] >= len) { got[i] -= len; requests++; write(fds[i], msg, len); } }
  }
  printf("%ld %.0f\n", requests, requests / (now() - start));
  return 0;
}
