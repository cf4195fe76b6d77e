/*
** uuid.c — see uuid.h.
*/
#include "uuid.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

static int fill_random(void *p, size_t n) {
  return getrandom(p, n, 0) == (ssize_t)n ? 0 : -1;
}

void uuid_set_version(unsigned char b[16], int version) {
  b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);      /* variant 10 */
}

int uuid_v4_bytes(unsigned char b[16]) {
  if (fill_random(b, 16) != 0) return -1;
  uuid_set_version(b, 4);
  return 0;
}

void uuid_to_str(const unsigned char b[16], char out[UUID_STR_LEN]) {
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = hex[b[i] >> 4];
    *p++ = hex[b[i] & 15];
  }
  *p = '\0';
}

int uuid_v4(char out[UUID_STR_LEN]) {
  unsigned char b[16];
  if (uuid_v4_bytes(b) != 0) return -1;
  uuid_to_str(b, out);
  return 0;
}

/* The last (ms, counter) handed out; both only grow. */
static pthread_mutex_t v7_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t v7_ms;
static unsigned v7_counter;

int uuid_v7_bytes(unsigned char b[16]) {
  unsigned char r[10];
  if (fill_random(r, sizeof r) != 0) return -1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  pthread_mutex_lock(&v7_lock);
  if (now > v7_ms) {
    v7_ms = now;
    v7_counter = ((unsigned)r[0] << 8 | r[1]) & 0x7ff;      /* top bit clear: room to count */
  } else if (++v7_counter > 0xfff) {                         /* same ms (or clock went back) */
    v7_ms++;
    v7_counter = 0;
  }
  uint64_t ms = v7_ms;
  unsigned counter = v7_counter;
  pthread_mutex_unlock(&v7_lock);
  for (int i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (40 - 8 * i));
  b[6] = (unsigned char)(counter >> 8);
  b[7] = (unsigned char)counter;
  memcpy(b + 8, r + 2, 8);
  uuid_set_version(b, 7);
  return 0;
}

/* The last v1 timestamp handed out, and the process's clock sequence and node. */
static pthread_mutex_t v1_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t v1_last;
static unsigned char v1_seq_node[8];           /* clock_seq (2 bytes), node (6 bytes) */
static int v1_ready;

#define GREGORIAN_TO_UNIX_100NS 122192928000000000ull   /* 1582-10-15 .. 1970-01-01 */

int uuid_v1_bytes(unsigned char b[16]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t t = GREGORIAN_TO_UNIX_100NS + (uint64_t)ts.tv_sec * 10000000u +
               (uint64_t)ts.tv_nsec / 100u;
  pthread_mutex_lock(&v1_lock);
  if (!v1_ready) {
    if (fill_random(v1_seq_node, sizeof v1_seq_node) != 0) {
      pthread_mutex_unlock(&v1_lock);
      return -1;
    }
    v1_seq_node[2] |= 0x01;                    /* multicast bit: not a MAC address */
    v1_ready = 1;
  }
  if (t <= v1_last) t = v1_last + 1;
  v1_last = t;
  memcpy(b + 8, v1_seq_node, 8);
  pthread_mutex_unlock(&v1_lock);
  uint32_t low = (uint32_t)t;
  uint16_t mid = (uint16_t)(t >> 32), high = (uint16_t)((t >> 48) & 0x0fff);
  for (int i = 0; i < 4; i++) b[i] = (unsigned char)(low >> (24 - 8 * i));
  b[4] = (unsigned char)(mid >> 8);
  b[5] = (unsigned char)mid;
  b[6] = (unsigned char)(high >> 8);
  b[7] = (unsigned char)high;
  uuid_set_version(b, 1);                      /* also the variant bits in b[8] */
  return 0;
}

/* 32 hex digits from s, a hyphen required at the standard places when dashed. */
static int scan_hex(const char *s, size_t len, int dashed, unsigned char b[16]) {
  if (len != (dashed ? 36u : 32u)) return -1;
  size_t k = 0;
  for (int i = 0; i < 16; i++) {
    if (dashed && (i == 4 || i == 6 || i == 8 || i == 10) && s[k++] != '-') return -1;
    int hi = hex_digit(s[k]), lo = hex_digit(s[k + 1]);
    if (hi < 0 || lo < 0) return -1;
    b[i] = (unsigned char)(hi << 4 | lo);
    k += 2;
  }
  return 0;
}

int uuid_from_str(const char *s, size_t len, unsigned char b[16]) {
  if (len == 36 + 9 && strncasecmp(s, "urn:uuid:", 9) == 0) return scan_hex(s + 9, 36, 1, b);
  if (len == 38 && s[0] == '{' && s[37] == '}') return scan_hex(s + 1, 36, 1, b);
  return scan_hex(s, len, len == 36, b);
}
