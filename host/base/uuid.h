/*
** uuid.h — UUIDs (RFC 9562): random version 4, time-ordered version 7, and
** version 1 with a random node, from the kernel's
** random source (getrandom), and the text forms (standard 8-4-4-4-12, simple 32 hex digits,
** urn:uuid:, {braced}) to and from 16 bytes.
** Threads: any. uuid_v7 and uuid_v1 keep one process-wide last value each under a mutex (monotonic order);
** the rest have no state.
*/
#ifndef TASKHOST_UUID_H
#define TASKHOST_UUID_H

#include <stddef.h>

#define UUID_STR_LEN 37        /* 36 characters and the NUL */

/* Writes a new v4 UUID, lower-case hex with hyphens, into out. Returns 0, or -1 when the
** random source failed (out is then unchanged). */
int uuid_v4(char out[UUID_STR_LEN]);

/* The 16 bytes of a new v4 UUID. Returns 0, or -1 when the random source failed. */
int uuid_v4_bytes(unsigned char b[16]);

/* The 16 bytes of a new v7 UUID: 48-bit Unix time in ms, then a 12-bit counter (rand_a,
** RFC 9562 §6.2 method 1) seeded at random each new ms with its top bit clear, then 62
** random bits. Values made in one process are strictly increasing: within a ms the counter
** goes up, and when it would overflow (or the clock goes back) the timestamp is carried
** forward from the last value. Returns 0, or -1 when the random source failed. */
int uuid_v7_bytes(unsigned char b[16]);

/* The 16 bytes of a new v1 UUID (RFC 9562 §5.1): 60-bit count of 100 ns since 1582-10-15,
** a 14-bit clock sequence and a 48-bit node, both random once per process (the node with
** its multicast bit set, §6.10, as no MAC address is used). Timestamps handed out only
** grow (a repeat or a clock going back takes the last one plus 1). Returns 0 or -1. */
int uuid_v1_bytes(unsigned char b[16]);

/* Sets the version nibble and the RFC 9562 variant bits (10) of b. */
void uuid_set_version(unsigned char b[16], int version);

/* The standard form (lower-case, hyphens) of b into out. */
void uuid_to_str(const unsigned char b[16], char out[UUID_STR_LEN]);

/* Parses s (len bytes, no NUL needed): the standard form, 32 hex digits, "urn:uuid:" and the
** standard form, or the standard form in braces; hex digits of either case. Returns 0 with
** b filled, or -1 (b unspecified). */
int uuid_from_str(const char *s, size_t len, unsigned char b[16]);

#endif
