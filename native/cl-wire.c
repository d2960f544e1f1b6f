// cl-wire: one lab link as a userspace "wire" with a fixed one-way delay.
//
// This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off), so delay cannot come from tc.
// Each lab link is therefore two TAP devices, one in each namespace, joined by this process:
// every Ethernet frame read from one TAP is written to the other after DELAY microseconds.
// Bandwidth is still shaped in the kernel by a tbf qdisc on each TAP's egress, so frames reach
// this process already paced; a constant delay keeps their order (one FIFO per direction).
//
// usage: cl-wire NETNS_A DEV_A NETNS_B DEV_B DELAY_FILE
//   NETNS_*: paths such as /run/netns/NAME; DEV_*: persistent TAP devices created beforehand
//   (`ip -n NAME tuntap add dev DEV mode tap`). DELAY_FILE holds the one-way delay in
//   microseconds; it is read at start and again on SIGHUP, so a link's latency can change
//   while connections run. SIGTERM/SIGINT end the process.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384        /* frames queued per direction; beyond that the wire drops */
#define SLOT_BYTES 2048    /* a frame is at most MTU 1500 + Ethernet header */

struct slot { uint64_t due_ns; uint16_t len; unsigned char data[SLOT_BYTES]; };
struct queue { struct slot *slots; unsigned head, count; uint64_t dropped; };

static volatile sig_atomic_t reload = 0, stop = 0;
static void on_hup(int s) { (void)s; reload = 1; }
static void on_term(int s) { (void)s; stop = 1; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t read_delay_us(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) { fprintf(stderr, "cl-wire: cannot open %s: %s\n", path, strerror(errno)); exit(1); }
  unsigned long long us = 0;
  if (fscanf(f, "%llu", &us) != 1) { fprintf(stderr, "cl-wire: %s holds no number\n", path); exit(1); }
  fclose(f);
  return us;
}

/* Opens a TAP device that lives in another network namespace: enter it, attach, come back. */
static int open_tap(const char *netns, const char *dev, int home_ns) {
  int ns = open(netns, O_RDONLY | O_CLOEXEC);
  if (ns < 0) { fprintf(stderr, "cl-wire: %s: %s\n", netns, strerror(errno)); exit(1); }
  if (setns(ns, CLONE_NEWNET) < 0) { fprintf(stderr, "cl-wire: setns %s: %s\n", netns, strerror(errno)); exit(1); }
  close(ns);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) { fprintf(stderr, "cl-wire: /dev/net/tun: %s\n", strerror(errno)); exit(1); }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { fprintf(stderr, "cl-wire: attach %s in %s: %s\n", dev, netns, strerror(errno)); exit(1); }
  if (setns(home_ns, CLONE_NEWNET) < 0) { fprintf(stderr, "cl-wire: setns back: %s\n", strerror(errno)); exit(1); }
  return fd;
}

/* Reads every frame waiting on `from` into the queue, due `delay` from now. */
static void take(int from, struct queue *q, uint64_t delay_ns) {
  for (;;) {
    struct slot *s = &q->slots[(q->head + q->count) % SLOTS];
    unsigned char scratch[SLOT_BYTES];
    int full = q->count == SLOTS;
    ssize_t n = read(from, full ? scratch : s->data, SLOT_BYTES);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      fprintf(stderr, "cl-wire: read: %s\n", strerror(errno));
      exit(1);
    }
    if (full) { q->dropped++; continue; }
    s->len = (uint16_t)n;
    s->due_ns = now_ns() + delay_ns;
    q->count++;
  }
}

/* Writes the frames whose time has come; returns ns until the next one is due (or -1). */
static int64_t give(int to, struct queue *q) {
  uint64_t t = now_ns();
  while (q->count > 0) {
    struct slot *s = &q->slots[q->head];
    if (s->due_ns > t) return (int64_t)(s->due_ns - t);
    if (write(to, s->data, s->len) < 0 && errno != EAGAIN && errno != EIO) {
      fprintf(stderr, "cl-wire: write: %s\n", strerror(errno));
      exit(1);
    }
    q->head = (q->head + 1) % SLOTS;
    q->count--;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: cl-wire NETNS_A DEV_A NETNS_B DEV_B DELAY_FILE\n");
    return 2;
  }
  const char *delay_file = argv[5];
  uint64_t delay_ns = read_delay_us(delay_file) * 1000ull;
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) { perror("cl-wire: /proc/self/ns/net"); return 1; }
  int fd[2] = { open_tap(argv[1], argv[2], home), open_tap(argv[3], argv[4], home) };
  struct queue q[2];  /* q[i]: frames read from fd[i], to be written to fd[1-i] */
  for (int i = 0; i < 2; i++) {
    q[i].slots = calloc(SLOTS, sizeof(struct slot));
    if (!q[i].slots) { perror("cl-wire: calloc"); return 1; }
    q[i].head = q[i].count = 0;
    q[i].dropped = 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  fprintf(stderr, "cl-wire: %s/%s <-> %s/%s, delay %llu us\n", argv[1], argv[2], argv[3], argv[4],
          (unsigned long long)(delay_ns / 1000));

  while (!stop) {
    if (reload) {
      reload = 0;
      delay_ns = read_delay_us(delay_file) * 1000ull;
      fprintf(stderr, "cl-wire: delay now %llu us\n", (unsigned long long)(delay_ns / 1000));
    }
    int64_t wait = -1;
    for (int i = 0; i < 2; i++) {
      int64_t w = give(fd[1 - i], &q[i]);
      if (w >= 0 && (wait < 0 || w < wait)) wait = w;
    }
    struct pollfd p[2] = { { fd[0], POLLIN, 0 }, { fd[1], POLLIN, 0 } };
    struct timespec ts, *tsp = NULL;
    if (wait >= 0) { ts.tv_sec = wait / 1000000000; ts.tv_nsec = wait % 1000000000; tsp = &ts; }
    int r = ppoll(p, 2, tsp, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("cl-wire: ppoll");
      return 1;
    }
    for (int i = 0; i < 2; i++)
      if (p[i].revents & POLLIN) take(fd[i], &q[i], delay_ns);
  }
  fprintf(stderr, "cl-wire: stopping (dropped %llu / %llu frames)\n",
          (unsigned long long)q[0].dropped, (unsigned long long)q[1].dropped);
  return 0;
}
