/*
** uuid.c — see uuid.h.
*/
#include "uuid.h"

#include <sys/random.h>
#include <sys/types.h>

int uuid_v4(char out[UUID_STR_LEN]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) return -1;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);      /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);      /* variant 10 */
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = hex[b[i] >> 4];
    *p++ = hex[b[i] & 15];
  }
  *p = '\0';
  return 0;
}
