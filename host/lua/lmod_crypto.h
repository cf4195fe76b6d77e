/*
** lmod_crypto.h — the parts of the `crypto` module kept in their own files; each sets its
** fields in the module table at the top of the stack (luaopen_crypto in lmod_crypto.c).
** Threads: the caller's lua_State only.
*/
#ifndef TASKHOST_LMOD_CRYPTO_H
#define TASKHOST_LMOD_CRYPTO_H

#include <stddef.h>

typedef struct lua_State lua_State;

void crypto_open_cipher(lua_State *L);   /* encrypt, decrypt, pbkdf2 (lmod_crypto_cipher.c) */
void crypto_open_jwt(lua_State *L);      /* jwt (lmod_crypto_jwt.c) */

/* The libcrypto in use, as it reports itself at run time (OpenSSL_version), into buf:
** "3.0.11". Returns 0. Any thread (lmod_crypto.c). */
int crypto_openssl_version(char *buf, size_t n);

#endif
