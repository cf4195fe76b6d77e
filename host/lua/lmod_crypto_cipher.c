/*
** lmod_crypto_cipher.c — the `crypto` module, second part (wippy-compat.md §3.18), on
** OpenSSL's EVP interface:
**   encrypt.aes(data, key [, aad])      AES-GCM, key 16/24/32 bytes (AES-128/192/256)
**   encrypt.chacha20(data, key [, aad]) ChaCha20-Poly1305, key 32 bytes
**       → nonce (12 random bytes) .. ciphertext .. tag (16 bytes), as Go's AEAD Seal with the
**         nonce prepended (Wippy's format)
**   decrypt.aes / decrypt.chacha20(sealed, key [, aad]) → plaintext; a wrong key, aad or a
**       changed byte → nil, INVALID ("authentication failed")
**   pbkdf2(password, salt, iterations, key_len [, hash]) → key_len raw bytes; hash "sha256"
**       (default), "sha1" or "sha512"; iterations 1..CRYPTO_PBKDF2_MAX_ITER, key_len 1..1024
** Bad sizes are nil, INVALID; wrong argument types raise. Data is at most 64 MiB per call.
** Threads: none of its own; runs on the thread that owns the lua_State (pbkdf2's work is
** CPU time on that thread: the iteration bound keeps it to about a second).
*/
#include "lmod_crypto.h"
#include "value/errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define DATA_MAX ((size_t)64 << 20)
#define CRYPTO_PBKDF2_MAX_ITER 2000000

typedef const EVP_CIPHER *(*cipher_fn)(void);

static const struct { const char *name; size_t keylen[3]; cipher_fn fn[3]; } ciphers[] = {
  {"aes", {16, 24, 32}, {EVP_aes_128_gcm, EVP_aes_192_gcm, EVP_aes_256_gcm}},
  {"chacha20", {32, 0, 0}, {EVP_chacha20_poly1305, NULL, NULL}},
};

/* The cipher for upvalue 1 (an index into ciphers) and a key of klen bytes, or NULL. */
static const EVP_CIPHER *pick(lua_State *L, size_t klen, const char **name) {
  size_t c = (size_t)lua_tointeger(L, lua_upvalueindex(1));
  *name = ciphers[c].name;
  for (int i = 0; i < 3; i++)
    if (ciphers[c].fn[i] && ciphers[c].keylen[i] == klen) return ciphers[c].fn[i]();
  return NULL;
}

/* Runs one AEAD pass. enc: out gets len bytes of ciphertext and tag gets the tag; else tag
** is checked. Returns 0, or -1 (authentication failed or an EVP error). */
static int aead(const EVP_CIPHER *ci, int enc, const unsigned char *key, const unsigned char *nonce,
                const unsigned char *aad, size_t aadlen, const unsigned char *in, size_t len,
                unsigned char *out, unsigned char *tag) {
  EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
  int n = 0, ok = x && EVP_CipherInit_ex(x, ci, NULL, NULL, NULL, enc) == 1 &&
          EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
          EVP_CipherInit_ex(x, NULL, NULL, key, nonce, enc) == 1 &&
          (!aadlen || EVP_CipherUpdate(x, NULL, &n, aad, (int)aadlen) == 1) &&
          (!len || EVP_CipherUpdate(x, out, &n, in, (int)len) == 1) &&
          (enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) == 1) &&
          EVP_CipherFinal_ex(x, out + (len ? n : 0), &n) == 1 &&
          (!enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) == 1);
  EVP_CIPHER_CTX_free(x);
  return ok ? 0 : -1;
}

static int l_encrypt(lua_State *L) {
  size_t len, klen, aadlen = 0;
  const char *data = luaL_checklstring(L, 1, &len), *key = luaL_checklstring(L, 2, &klen);
  const char *aad = luaL_optlstring(L, 3, NULL, &aadlen), *name;
  const EVP_CIPHER *ci = pick(L, klen, &name);
  if (!ci) return errors_fail(L, EK_INVALID, "encrypt.%s: a key of %zu bytes does not fit", name, klen);
  if (len > DATA_MAX || aadlen > DATA_MAX)
    return errors_fail(L, EK_INVALID, "encrypt.%s: data over %zu bytes", name, DATA_MAX);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, NONCE_LEN + len + TAG_LEN);
  if (RAND_bytes(out, NONCE_LEN) != 1) return errors_fail(L, EK_INTERNAL, "random source failed");
  if (aead(ci, 1, (const unsigned char *)key, out, (const unsigned char *)aad, aadlen,
           (const unsigned char *)data, len, out + NONCE_LEN, out + NONCE_LEN + len) != 0)
    return errors_fail(L, EK_INTERNAL, "encrypt.%s failed", name);
  luaL_pushresultsize(&b, NONCE_LEN + len + TAG_LEN);
  return 1;
}

static int l_decrypt(lua_State *L) {
  size_t len, klen, aadlen = 0;
  const char *sealed = luaL_checklstring(L, 1, &len), *key = luaL_checklstring(L, 2, &klen);
  const char *aad = luaL_optlstring(L, 3, NULL, &aadlen), *name;
  const EVP_CIPHER *ci = pick(L, klen, &name);
  if (!ci) return errors_fail(L, EK_INVALID, "decrypt.%s: a key of %zu bytes does not fit", name, klen);
  if (len < NONCE_LEN + TAG_LEN || len > DATA_MAX + NONCE_LEN + TAG_LEN || aadlen > DATA_MAX)
    return errors_fail(L, EK_INVALID, "decrypt.%s: not sealed data (%zu bytes)", name, len);
  size_t n = len - NONCE_LEN - TAG_LEN;
  const unsigned char *s = (const unsigned char *)sealed;
  unsigned char tag[TAG_LEN];
  memcpy(tag, s + NONCE_LEN + n, TAG_LEN);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n ? n : 1);
  if (aead(ci, 0, (const unsigned char *)key, s, (const unsigned char *)aad, aadlen, s + NONCE_LEN, n,
           out, tag) != 0)
    return errors_fail(L, EK_INVALID, "decrypt.%s: authentication failed", name);
  luaL_pushresultsize(&b, n);
  return 1;
}

static int l_pbkdf2(lua_State *L) {
  size_t plen, slen;
  const char *pw = luaL_checklstring(L, 1, &plen), *salt = luaL_checklstring(L, 2, &slen);
  lua_Integer iter = luaL_checkinteger(L, 3), keylen = luaL_checkinteger(L, 4);
  const char *hash = luaL_optstring(L, 5, "sha256");
  static const struct { const char *name; const EVP_MD *(*md)(void); } mds[] = {
    {"sha1", EVP_sha1}, {"sha256", EVP_sha256}, {"sha512", EVP_sha512}};
  const EVP_MD *md = NULL;
  for (size_t i = 0; i < sizeof mds / sizeof mds[0]; i++)
    if (strcmp(mds[i].name, hash) == 0) md = mds[i].md();
  if (!md) return errors_fail(L, EK_INVALID, "pbkdf2: unknown hash \"%s\" (sha1, sha256, sha512)", hash);
  if (iter < 1 || iter > CRYPTO_PBKDF2_MAX_ITER)
    return errors_fail(L, EK_INVALID, "pbkdf2: iterations must be 1..%d", CRYPTO_PBKDF2_MAX_ITER);
  if (keylen < 1 || keylen > 1024) return errors_fail(L, EK_INVALID, "pbkdf2: key_len must be 1..1024");
  if (plen > DATA_MAX || slen > DATA_MAX) return errors_fail(L, EK_INVALID, "pbkdf2: input too long");
  unsigned char out[1024];
  if (PKCS5_PBKDF2_HMAC(pw, (int)plen, (const unsigned char *)salt, (int)slen, (int)iter, md,
                        (int)keylen, out) != 1)
    return errors_fail(L, EK_INTERNAL, "pbkdf2 failed");
  lua_pushlstring(L, (const char *)out, (size_t)keylen);
  return 1;
}

void crypto_open_cipher(lua_State *L) {
  static const struct { const char *field; lua_CFunction fn; } dirs[] = {
    {"encrypt", l_encrypt}, {"decrypt", l_decrypt}};
  for (size_t d = 0; d < 2; d++) {
    lua_createtable(L, 0, 2);
    for (size_t c = 0; c < sizeof ciphers / sizeof ciphers[0]; c++) {
      lua_pushinteger(L, (lua_Integer)c);
      lua_pushcclosure(L, dirs[d].fn, 1);
      lua_setfield(L, -2, ciphers[c].name);
    }
    lua_setfield(L, -2, dirs[d].field);
  }
  lua_pushcfunction(L, l_pbkdf2);
  lua_setfield(L, -2, "pbkdf2");
}
