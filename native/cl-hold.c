// cl-hold: keeps the packets of one netfilter queue until told what to do with them.
//
// During a handoff a service's address is routed to the destination before the source
// freezes; an iptables rule sends the packets for that address to this queue while the
// service is restored there. Dropped instead, a client's segment would be sent again only on
// the client's retransmission timer (exponential back-off: 0.2, 0.6, 1.4 s... after the
// first send), so the client would wait for that timer, not for the restore. Kept here and
// let through right after the restore, it reaches the restored socket at once.
//
// usage: cl-hold QUEUE_NUM [MAX_PACKETS]
//   SIGUSR1  release: every held packet goes on (NF_ACCEPT), and so does every later one;
//   SIGUSR2  discard: every held packet is dropped (NF_DROP), and so is every later one;
//   SIGTERM, SIGINT, or the parent's death: held packets are dropped, then the process ends.
// With no process bound to the queue the kernel drops its packets (the rule has no
// --queue-bypass): a packet is never let through to an address whose sockets are not back.
// On exit it prints one JSON line: what was held, for how long, what passed or was dropped.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

enum mode { HOLD, PASS, DROP };

static struct {
  enum mode mode;
  const char *verdict;            /* "release", "discard" or "none" */
  uint32_t last_id;               /* highest packet id seen while holding */
  int holding;                    /* packets without a verdict yet */
  uint64_t held, held_bytes, passed, dropped;
  uint64_t first_held_ns, verdict_ns;
  struct nfq_q_handle *qh;
} st = { HOLD, "none", 0, 0, 0, 0, 0, 0, 0, 0, NULL };

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg; (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  if (st.mode == HOLD) {
    if (st.held == 0) st.first_held_ns = now_ns();
    st.held++;
    st.holding++;
    unsigned char *payload;
    int len = nfq_get_payload(nfa, &payload);
    if (len > 0) st.held_bytes += (uint64_t)len;
    st.last_id = id;
    return 0;
  }
  if (st.mode == PASS) st.passed++; else st.dropped++;
  return nfq_set_verdict(qh, id, st.mode == PASS ? NF_ACCEPT : NF_DROP, 0, NULL);
}

/* One verdict for every packet held so far (ids up to last_id), then the mode for later ones. */
static void settle(enum mode next, const char *what) {
  if (st.mode != HOLD) return;
  if (st.holding > 0) {
    if (nfq_set_verdict_batch(st.qh, st.last_id, next == PASS ? NF_ACCEPT : NF_DROP) < 0) {
      fprintf(stderr, "cl-hold: batch verdict failed: %s\n", strerror(errno));
    }
  }
  if (next == DROP) st.dropped += st.held;
  st.holding = 0;
  st.mode = next;
  st.verdict = what;
  st.verdict_ns = now_ns();
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: cl-hold QUEUE_NUM [MAX_PACKETS]\n");
    return 2;
  }
  char *end;
  long qnum = strtol(argv[1], &end, 10);
  if (*end || qnum < 0 || qnum > 65535) { fprintf(stderr, "cl-hold: bad queue number '%s'\n", argv[1]); return 2; }
  long maxlen = 4096;
  if (argc == 3) {
    maxlen = strtol(argv[2], &end, 10);
    if (*end || maxlen < 1 || maxlen > 1000000) { fprintf(stderr, "cl-hold: bad packet limit '%s'\n", argv[2]); return 2; }
  }
  // A daemon that dies must not leave its packets held: the parent's death ends us.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) return 1;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sfd < 0) { perror("cl-hold: signalfd"); return 1; }

  struct nfq_handle *h = nfq_open();
  if (!h) { perror("cl-hold: nfq_open"); return 1; }
  st.qh = nfq_create_queue(h, (uint16_t)qnum, on_packet, NULL);
  if (!st.qh) { fprintf(stderr, "cl-hold: cannot bind queue %ld: %s\n", qnum, strerror(errno)); return 1; }
  // The headers are enough to count what is held; the packet itself stays in the kernel.
  if (nfq_set_mode(st.qh, NFQNL_COPY_PACKET, 64) < 0) { perror("cl-hold: nfq_set_mode"); return 1; }
  if (nfq_set_queue_maxlen(st.qh, (uint32_t)maxlen) < 0) { perror("cl-hold: nfq_set_queue_maxlen"); return 1; }
  int fd = nfq_fd(h);

  char buf[65536] __attribute__((aligned));
  for (int done = 0; !done;) {
    struct pollfd p[2] = { { fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("cl-hold: poll");
      break;
    }
    if (p[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGUSR1) settle(PASS, "release");
        else if (si.ssi_signo == SIGUSR2) settle(DROP, "discard");
        else { settle(DROP, st.mode == HOLD ? "discard" : st.verdict); done = 1; }
      }
    }
    if (p[0].revents & POLLIN) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) nfq_handle_packet(h, buf, (int)n);
      else if (n < 0 && errno == ENOBUFS) fprintf(stderr, "cl-hold: the kernel dropped queued packets (ENOBUFS)\n");
    }
  }
  double hold_ms = st.held && st.verdict_ns ? (double)(st.verdict_ns - st.first_held_ns) / 1e6 : 0;
  printf("{\"queue\":%ld,\"verdict\":\"%s\",\"held\":%llu,\"heldBytes\":%llu,\"holdMs\":%.1f,\"passed\":%llu,\"dropped\":%llu}\n",
         qnum, st.verdict, (unsigned long long)st.held, (unsigned long long)st.held_bytes, hold_ms,
         (unsigned long long)st.passed, (unsigned long long)st.dropped);
  fflush(stdout);
  nfq_destroy_queue(st.qh);
  nfq_close(h);
  return 0;
}
