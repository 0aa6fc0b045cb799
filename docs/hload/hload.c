// hload: a minimal stand-in for wrk (docs/performance.md), for machines
// where wrk is not installed. Like `wrk -t2 -c64 -s docs/wrk-publish.lua`
// it keeps CONNS keep-alive connections, each with one request in flight,
// spread over THREADS epoll loops, and prints "N requests in Ts",
// "Requests/sec: R" and, when any answer was not 2xx or a connection
// failed, a "Non-2xx or 3xx responses" line.
//
//	gcc -O2 -pthread -o hload docs/hload/hload.c
//	./hload 2 64 8 127.0.0.1 8090 /api/publish '{"channel":"bench","data":{"t":1,"n":2}}'
//
// usage: hload THREADS CONNS SECONDS HOST PORT PATH BODY (POSTed as
// application/json, the request wrk-publish.lua sends).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char req[4096]; static int reqlen;
static struct sockaddr_in addr; static double dur; static int per;
typedef struct { int fd; char buf[8192]; int len; } conn;
typedef struct { long ok, bad, err; } stats;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (void *)&addr, sizeof addr) < 0) { perror("connect"); exit(1); }
  return fd;
}

// complete returns the length of the first full response in c->buf, 0 if incomplete.
static int complete(conn *c) {
  c->buf[c->len] = 0;
  char *e = strstr(c->buf, "\r\n\r\n"); if (!e) return 0;
  int hl = e + 4 - c->buf; long cl = 0;
  char *p = strcasestr(c->buf, "\r\ncontent-length:");
  if (p && p < e) cl = strtol(p + 17, NULL, 10);
  if (c->len < hl + cl) return 0;
  return hl + cl;
}

static void *worker(void *arg) {
  stats *s = arg; int ep = epoll_create1(0);
  conn *cs = calloc(per, sizeof(conn));
  for (int i = 0; i < per; i++) {
    cs[i].fd = dial();
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    if (write(cs[i].fd, req, reqlen) != reqlen) s->err++;
  }
  double end = now() + dur; struct epoll_event evs[64];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 64, 100);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      int r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
      if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; s->err++; close(c->fd); c->fd = dial(); c->len = 0;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c }; epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        write(c->fd, req, reqlen); continue; }
      c->len += r;
      int l;
      while ((l = complete(c)) > 0) {
        if (c->len >= 12 && c->buf[9] == '2') s->ok++; else s->bad++;
        memmove(c->buf, c->buf + l, c->len - l); c->len -= l;
        if (now() < end && write(c->fd, req, reqlen) != reqlen) s->err++;
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 8) { fprintf(stderr, "usage: hload THREADS CONNS SECONDS HOST PORT PATH BODY\n"); return 2; }
  int th = atoi(argv[1]), cn = atoi(argv[2]); dur = atof(argv[3]); per = cn / th;
  addr.sin_family = AF_INET; addr.sin_port = htons(atoi(argv[5])); inet_pton(AF_INET, argv[4], &addr.sin_addr);
  reqlen = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
    argv[6], argv[4], argv[5], strlen(argv[7]), argv[7]);
  pthread_t t[64]; stats s[64] = {0}; double t0 = now();
  for (int i = 0; i < th; i++) pthread_create(&t[i], NULL, worker, &s[i]);
  for (int i = 0; i < th; i++) pthread_join(t[i], NULL);
  double el = now() - t0; long ok = 0, bad = 0, err = 0;
  for (int i = 0; i < th; i++) { ok += s[i].ok; bad += s[i].bad; err += s[i].err; }
  printf("%ld requests in %.2fs\nRequests/sec: %.2f\n", ok + bad, el, (ok + bad) / el);
  if (bad || err) printf("Non-2xx or 3xx responses: %ld, errors %ld\n", bad, err);
  return 0;
}
