// The TLS baseline: libevent's evconnlistener + bufferevent_openssl echo server (libevent_openssl, socket BIO).
// Usage: echo_bufferevent_openssl PORT CERT.pem KEY.pem
// Its SSL_CTX is set up as sockserv's TLSContext is (TLS 1.2 at least, no renegotiation, no compression, partial
// writes, buffers released while idle, the peer's EOF without close_notify taken as an end; all but read-ahead, see
// below), so the comparison is of the frameworks, not of OpenSSL settings.
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
#include <event2/bufferevent_ssl.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>
#include <openssl/err.h>

static SSL_CTX *ctx;

static void readcb(struct bufferevent *bev, void *arg) { bufferevent_write_buffer(bev, bufferevent_get_input(bev)); }
static void eventcb(struct bufferevent *bev, short what, void *arg) {
  if (what & BEV_EVENT_CONNECTED) bufferevent_set_timeouts(bev, NULL, NULL);  // the handshake is done
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) bufferevent_free(bev);
}
static void acceptcb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len, void *arg) {
  int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL *ssl = SSL_new(ctx);
  struct bufferevent *bev = bufferevent_openssl_socket_new(evconnlistener_get_base(l), fd, ssl,
      BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  struct timeval handshake = { 10, 0 };  // a handshake timeout, as sockserv's default, until BEV_EVENT_CONNECTED
  bufferevent_set_timeouts(bev, &handshake, NULL);
  bufferevent_setcb(bev, readcb, NULL, eventcb, NULL); bufferevent_enable(bev, EV_READ | EV_WRITE);
}
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: echo_bufferevent_openssl PORT CERT.pem KEY.pem\n"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF
                               | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // No read-ahead: bufferevent_openssl 2.1.12 then stalls (a record OpenSSL read ahead of the handshake's end is
  // never delivered: the socket is no longer readable). sockserv reads what OpenSSL holds (SSL_has_pending).
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr); return 1;
  }
  struct event_base *base = event_base_new();
  struct sockaddr_in sin; memset(&sin, 0, sizeof sin); sin.sin_family = AF_INET; sin.sin_port = htons(atoi(argv[1])); sin.sin_addr.s_addr = htonl(0x7f000001);
  struct evconnlistener *l = evconnlistener_new_bind(base, acceptcb, NULL, LEV_OPT_CLOSE_ON_FREE|LEV_OPT_REUSEABLE, 4096, (struct sockaddr*)&sin, sizeof sin);
  if (!l) { perror("bind"); return 1; }
  socklen_t slen = sizeof sin; getsockname(evconnlistener_get_fd(l), (struct sockaddr*)&sin, &slen);  // PORT may be 0
  printf("listening on 127.0.0.1:%d\n", ntohs(sin.sin_port)); fflush(stdout);
  event_base_dispatch(base);
}
