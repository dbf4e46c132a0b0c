// The ceiling to beat: libevent's evconnlistener + bufferevent echo server. Usage: echo_bufferevent PORT
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
static void readcb(struct bufferevent *bev, void *ctx) { bufferevent_write_buffer(bev, bufferevent_get_input(bev)); }
static void eventcb(struct bufferevent *bev, short what, void *ctx) { if (what & (BEV_EVENT_EOF|BEV_EVENT_ERROR)) bufferevent_free(bev); }
static void acceptcb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len, void *ctx) {
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(bev, readcb, NULL, eventcb, NULL); bufferevent_enable(bev, EV_READ|EV_WRITE);
}
int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  struct event_base *base = event_base_new();
  struct sockaddr_in sin; memset(&sin, 0, sizeof sin); sin.sin_family = AF_INET; sin.sin_port = htons(atoi(argv[1])); sin.sin_addr.s_addr = htonl(0x7f000001);
  struct evconnlistener *l = evconnlistener_new_bind(base, acceptcb, NULL, LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE, 4096, (struct sockaddr*)&sin, sizeof sin);
  if (!l) { perror("bind"); return 1; }
  socklen_t slen = sizeof sin; getsockname(evconnlistener_get_fd(l), (struct sockaddr*)&sin, &slen);  // PORT may be 0
  printf("listening on 127.0.0.1:%d\n", ntohs(sin.sin_port)); fflush(stdout);
  event_base_dispatch(base);
}
