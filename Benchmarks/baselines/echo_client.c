// Closed-loop echo load generator: one thread, epoll, non-blocking sockets.
// Usage: echo_client PORT CONNECTIONS SECONDS [--payload BYTES] [--pipeline N] [--connect-per-request] [--idle] [--tls]
//                    [--hold] [--mixed N]
//   default                CONNECTIONS persistent connections (all connected first); each sends N requests of BYTES
//                          (BYTES-1 'x' then '\n') back to back, waits for N*BYTES bytes back, repeats for SECONDS.
//                          A request's latency runs from sending its batch to the end of its own reply.
//   --connect-per-request  CONNECTIONS concurrent virtual clients: connect, send one request, read the reply, close,
//                          repeat; the latency includes the connect.
//   --idle                 open CONNECTIONS connections, print "connected K", hold them without sending until SECONDS
//                          have passed or stdin reaches EOF, close them, exit 0.
//   --hold                 persistent mode: once connected, print "connected K" and wait for a line (or EOF) on stdin
//                          before the run starts, so a caller can read the server's CPU after the handshakes.
//   --mixed N              persistent mode speaking RESP (pipeline 1): every request is PING (+PONG) but every Nth
//                          one sent, over all connections, which is DEBUG SLEEP 0.01 (+OK): 10 ms of blocking work.
//                          Adds "fast_p99_us" (the PINGs), "slow_p50_us" and "slow_requests" to the JSON.
//   --tls                  speak TLS (OpenSSL, non-blocking): a connection counts as connected once its handshake
//                          is done; each handshake is a full one (no session is reused) and the server's
//                          certificate is not verified (the load measures the server, not the client's checks).
// Otherwise prints one JSON line at the end:
//   {"requests": R, "seconds": S, "requests_per_second": X, "p50_us": A, "p99_us": B, "p999_us": C, "errors": E,
//    "connected": K}
// ("connected" counts successful connects: the live connections, or with --connect-per-request all of them.)
// Bounded by time: connecting takes at most CONNECT_LIMIT seconds, then the run lasts SECONDS, whatever the server does.
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/ssl.h>

#define LAT_CAP 50000000L  // latencies kept for percentiles (float us, 200 MB of address space, touched as used)
#define CONNECT_LIMIT 4.0  // seconds allowed for the initial connects of the persistent mode

enum { DEAD, CONNECTING, HANDSHAKING, ACTIVE };
struct conn { int fd, state; unsigned events; size_t sent, got; double t0; SSL *ssl;
               const char *out; size_t out_len, reply_len; int slow; };  // the request in flight (all of req, or --mixed's)

static struct sockaddr_in addr;
static int ep, nconn, per_request, idle, hold;
static size_t payload = 32, pipeline = 1, batch;  // batch = pipeline * payload bytes, all in req
static char *req, rbuf[65536];
static struct conn *c;
static float *lat; static long lat_cap = LAT_CAP, nlat;
static long requests, errors, connected;
static double end;  // end of the measured run
static SSL_CTX *tls;  // with --tls
static long mixed, mixed_sent;  // with --mixed N: every Nth request sent is the slow one
static float *fast_lat, *slow_lat; static long nfast, nslow;  // --mixed's latencies by kind (same cap as lat)
static const char PING[] = "PING\r\n", SLEEP[] = "DEBUG SLEEP 0.01\r\n";

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void interest(struct conn *x, int i, unsigned events) {
  if (x->events == events) return;
  struct epoll_event ev = { .events = events, .data.u32 = (unsigned)i };
  epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev); x->events = events;
}

static void open_conn(int i);

// A connection failed (refused, reset, EOF, too many bytes): count it; a virtual client starts over.
static void drop(int i) {
  if (c[i].ssl) { SSL_free(c[i].ssl); c[i].ssl = NULL; }
  close(c[i].fd); c[i].state = DEAD;
}

static void fail(int i) {
  errors++; drop(i);
  if (per_request && now() < end) open_conn(i);
}

static void open_conn(int i) {
  struct conn *x = &c[i];
  x->state = DEAD; x->t0 = now();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  if (fd < 0) { errors++; return; }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) && errno != EINPROGRESS) { errors++; close(fd); return; }
  // Completion (or failure) shows up as EPOLLOUT; an already-connected socket reports it at once.
  struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (unsigned)i };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) { errors++; close(fd); return; }
  x->fd = fd; x->state = CONNECTING; x->events = EPOLLOUT;
}

// Write as much of the batch as the socket takes; keep reading meanwhile so big batches cannot deadlock.
static void do_write(int i) {
  struct conn *x = &c[i];
  while (x->sent < x->out_len) {
    if (x->ssl) {
      int w = SSL_write(x->ssl, x->out + x->sent, (int)(x->out_len - x->sent));
      if (w > 0) { x->sent += (size_t)w; continue; }
      int e = SSL_get_error(x->ssl, w);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
      fail(i); return;
    }
    ssize_t w = send(x->fd, x->out + x->sent, x->out_len - x->sent, MSG_NOSIGNAL);
    if (w > 0) x->sent += (size_t)w;
    else if (w < 0 && errno == EINTR) continue;
    else if (w < 0 && errno == EAGAIN) break;
    else { fail(i); return; }
  }
  interest(x, i, EPOLLIN | (x->sent < x->out_len ? EPOLLOUT : 0));
}

static void send_batch(int i) {
  struct conn *x = &c[i];
  x->sent = x->got = 0; x->t0 = now();
  if (mixed) {
    x->slow = ++mixed_sent % mixed == 0;
    x->out = x->slow ? SLEEP : PING; x->out_len = strlen(x->out); x->reply_len = x->slow ? 5 : 7;  // +OK, +PONG
  } else {
    x->out = req; x->out_len = x->reply_len = batch;
  }
  do_write(i);
}

static void record(double us) { if (nlat < lat_cap) lat[nlat++] = (float)us; requests++; }

// Bytes of replies arrived: record each request whose reply completed, then send again (or reconnect).
static void got_bytes(int i, ssize_t r);

static void do_read(int i) {
  struct conn *x = &c[i];
  if (x->ssl) {  // OpenSSL may hold more than one record: read until it wants the socket again
    while (x->state == ACTIVE && x->ssl) {
      int r = SSL_read(x->ssl, rbuf, sizeof rbuf);
      if (r > 0) { got_bytes(i, r); continue; }
      int e = SSL_get_error(x->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) fail(i);
      return;
    }
    return;
  }
  ssize_t r = read(x->fd, rbuf, sizeof rbuf);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  got_bytes(i, r);
}

static void got_bytes(int i, ssize_t r) {
  struct conn *x = &c[i];
  // EOF, error, or more than the reply (an echo: than was sent so far)
  if (r <= 0 || x->got + (size_t)r > (mixed ? x->reply_len : x->sent)) { fail(i); return; }
  double t = now(), us = (t - x->t0) * 1e6;
  if (mixed) {  // one request in flight: its reply is complete or not
    x->got += (size_t)r;
    if (x->got < x->reply_len) return;
    record(us);
    if (x->slow) { if (nslow < lat_cap) slow_lat[nslow++] = (float)us; }
    else if (nfast < lat_cap) fast_lat[nfast++] = (float)us;
    if (t < end) send_batch(i);
    return;
  }
  size_t done = x->got / payload;
  x->got += (size_t)r;
  for (size_t k = x->got / payload; done < k; done++) record(us);  // every request whose reply just completed
  if (x->got < batch) return;
  if (per_request) {  // reply complete: close and start the next request with a fresh connection
    if (x->ssl) SSL_shutdown(x->ssl);  // close_notify, as a real client sends
    drop(i);
    if (t < end) open_conn(i);
  } else if (t < end) {
    send_batch(i);
  }
}

static void connected_now(int i);

// Advances a TLS handshake; once done the connection is connected.
static void do_handshake(int i) {
  struct conn *x = &c[i];
  int r = SSL_do_handshake(x->ssl);
  if (r == 1) { connected_now(i); return; }
  int e = SSL_get_error(x->ssl, r);
  if (e == SSL_ERROR_WANT_READ) interest(x, i, EPOLLIN);
  else if (e == SSL_ERROR_WANT_WRITE) interest(x, i, EPOLLOUT);
  else fail(i);
}

static void finish_connect(int i) {
  struct conn *x = &c[i];
  int err = 0; socklen_t len = sizeof err;
  if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) { fail(i); return; }
  if (tls) {
    x->ssl = SSL_new(tls); SSL_set_fd(x->ssl, x->fd); SSL_set_connect_state(x->ssl);
    x->state = HANDSHAKING; do_handshake(i); return;
  }
  connected_now(i);
}

static void connected_now(int i) {
  struct conn *x = &c[i];
  x->state = ACTIVE; connected++;
  if (per_request) send_batch(i);
  else if (idle) { epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL); x->events = 0; }
  else interest(x, i, EPOLLIN);  // the run sends once everyone is connected
}

// Handle events until `until`, or (if stop_when_connected) until no connect is pending.
static void loop(double until, int stop_when_connected) {
  struct epoll_event evs[512];
  long pending = 0;
  if (stop_when_connected) for (int i = 0; i < nconn; i++) pending += c[i].state == CONNECTING || c[i].state == HANDSHAKING;
  double t;
  while ((t = now()) < until && !(stop_when_connected && pending == 0)) {
    int ms = (int)((until - t) * 1000) + 1;
    int k = epoll_wait(ep, evs, 512, ms < 100 ? ms : 100);
    for (int j = 0; j < k; j++) {
      int i = (int)evs[j].data.u32; struct conn *x = &c[i]; unsigned e = evs[j].events;
      if (x->state == CONNECTING) { finish_connect(i); if (x->state != HANDSHAKING) pending--; continue; }
      if (x->state == HANDSHAKING) { do_handshake(i); if (x->state != HANDSHAKING) pending--; continue; }
      if (x->state != ACTIVE) continue;
      if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) do_read(i);  // read reports EOF and errors
      if (x->state == ACTIVE && (e & EPOLLOUT) && x->sent < x->out_len) do_write(i);
    }
  }
}

// k-th smallest of a[lo..hi] moves to a[k] (Hoare quickselect): linear time, so percentiles of 50M values are quick.
static void select_nth(float *a, long lo, long hi, long k) {
  while (lo < hi) {
    float p = a[lo + (hi - lo) / 2];
    long i = lo, j = hi;
    while (i <= j) {
      while (a[i] < p) i++;
      while (a[j] > p) j--;
      if (i <= j) { float tmp = a[i]; a[i] = a[j]; a[j] = tmp; i++; j--; }
    }
    if (k <= j) hi = j; else if (k >= i) lo = i; else return;
  }
}

// Nearest-rank percentiles of a[0..count); each selection leaves everything above its rank to the right for the
// next, higher one.
static void percentiles_of(float *a, long count, double *out, const double *ps, int n) {
  long from = 0;
  for (int q = 0; q < n; q++) {
    if (count == 0) { out[q] = 0; continue; }
    double rank = ps[q] * count; long k = (long)rank;  // ceil(rank) - 1, without libm
    if (k < rank) k++;
    k--;
    if (k < from) k = from;
    if (k >= count) k = count - 1;
    select_nth(a, from, count - 1, k); out[q] = a[k]; from = k;
  }
}

static void percentiles(double *out, const double *ps, int n) { percentiles_of(lat, nlat, out, ps, n); }

static int usage(void) {
  fprintf(stderr, "usage: echo_client PORT CONNECTIONS SECONDS [--payload BYTES] [--pipeline N] "
                  "[--connect-per-request] [--idle] [--tls] [--hold] [--mixed N]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 4) return usage();
  int port = atoi(argv[1]); nconn = atoi(argv[2]); double seconds = atof(argv[3]);
  for (int a = 4; a < argc; a++) {
    if (!strcmp(argv[a], "--payload") && a + 1 < argc) payload = strtoul(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--pipeline") && a + 1 < argc) pipeline = strtoul(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--connect-per-request")) per_request = 1;
    else if (!strcmp(argv[a], "--idle")) idle = 1;
    else if (!strcmp(argv[a], "--hold")) hold = 1;
    else if (!strcmp(argv[a], "--mixed") && a + 1 < argc) mixed = strtol(argv[++a], NULL, 10);
    else if (!strcmp(argv[a], "--tls")) {
      tls = SSL_CTX_new(TLS_client_method());
      SSL_CTX_set_mode(tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      SSL_CTX_set_session_cache_mode(tls, SSL_SESS_CACHE_OFF);
    }
    else return usage();
  }
  if (nconn < 1 || payload < 1 || pipeline < 1 || seconds <= 0) return usage();
  if (per_request) pipeline = 1;  // one request per connection
  if (mixed < 0 || (mixed && (per_request || idle || tls))) return usage();
  if (mixed) pipeline = 1;

  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl; if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
  addr.sin_family = AF_INET; addr.sin_port = htons(port); addr.sin_addr.s_addr = htonl(0x7f000001);
  ep = epoll_create1(0);
  c = calloc(nconn, sizeof *c);
  batch = payload * pipeline; req = malloc(batch);
  for (size_t b = 0; b < batch; b++) req[b] = (b % payload == payload - 1) ? '\n' : 'x';
  while (!(lat = malloc(lat_cap * sizeof *lat))) lat_cap /= 2;
  if (mixed && (!(fast_lat = malloc(lat_cap * sizeof *lat)) || !(slow_lat = malloc(lat_cap * sizeof *lat)))) return 1;
  double start = now();

  if (idle) {
    end = start + seconds;
    for (int i = 0; i < nconn; i++) open_conn(i);
    loop(end, 1);
    for (int i = 0; i < nconn; i++) if (c[i].state == CONNECTING || c[i].state == HANDSHAKING) { errors++; drop(i); }
    printf("connected %ld\n", connected); fflush(stdout);
    if (errors) fprintf(stderr, "%ld connections failed\n", errors);
    // Hold until SECONDS have passed or stdin is at EOF (a /dev/null stdin is at EOF at once).
    double t;
    while ((t = now()) < end) {
      struct pollfd p = { .fd = 0, .events = POLLIN };
      int ms = (int)((end - t) * 1000) + 1;
      if (poll(&p, 1, ms < 1000 ? ms : 1000) > 0) {
        ssize_t r = read(0, rbuf, sizeof rbuf);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) break;
      }
    }
    for (int i = 0; i < nconn; i++) if (c[i].state == ACTIVE) drop(i);
    return 0;
  }

  if (per_request) {
    end = start + seconds;
    for (int i = 0; i < nconn; i++) open_conn(i);
  } else {
    end = start + CONNECT_LIMIT + seconds;  // lets connects that finish in time proceed; reset below
    for (int i = 0; i < nconn; i++) open_conn(i);
    loop(start + CONNECT_LIMIT, 1);
    for (int i = 0; i < nconn; i++) if (c[i].state == CONNECTING || c[i].state == HANDSHAKING) { errors++; drop(i); }
    if (hold) {
      printf("connected %ld\n", connected); fflush(stdout);
      char ch;
      while (read(0, &ch, 1) == 1 && ch != '\n') {}
    }
    start = now(); end = start + seconds;
    for (int i = 0; i < nconn; i++) if (c[i].state == ACTIVE) send_batch(i);
  }
  loop(end, 0);
  double elapsed = now() - start;

  static const double ps[3] = { 0.50, 0.99, 0.999 };
  double pv[3]; percentiles(pv, ps, 3);
  printf("{\"requests\": %ld, \"seconds\": %.3f, \"requests_per_second\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
         "\"p999_us\": %.1f, \"errors\": %ld, \"connected\": %ld",
         requests, elapsed, requests / elapsed, pv[0], pv[1], pv[2], errors, connected);
  if (mixed) {
    static const double p99[1] = { 0.99 }, p50[1] = { 0.50 };
    double fast[1], slow[1];
    percentiles_of(fast_lat, nfast, fast, p99, 1); percentiles_of(slow_lat, nslow, slow, p50, 1);
    printf(", \"fast_p99_us\": %.1f, \"slow_p50_us\": %.1f, \"slow_requests\": %ld", fast[0], slow[0], nslow);
  }
  printf("}\n");
  return 0;
}
