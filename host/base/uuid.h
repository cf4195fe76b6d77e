/*
** uuid.h — random (version 4) UUIDs, RFC 9562, from the kernel's random source (getrandom).
** Threads: any; no state.
*/
#ifndef TASKHOST_UUID_H
#define TASKHOST_UUID_H

#define UUID_STR_LEN 37        /* 36 characters and the NUL */

/* Writes a new v4 UUID, lower-case hex with hyphens, into out. Returns 0, or -1 when the
** random source failed (out is then unchanged). */
int uuid_v4(char out[UUID_STR_LEN]);

#endif
