/*
** lmod_crypto_jwt.c — crypto.jwt (wippy-compat.md §3.18): compact JWS tokens (RFC 7519/7515)
** signed with OpenSSL.
**   jwt.encode(payload, key [, alg]) → token | nil, err
**       payload: a table (encoded as a JSON object; an empty table is {}), alg "HS256"
**       (default), "HS384", "HS512" (key: the secret's bytes) or "RS256" (key: a PEM private key)
**   jwt.verify(token, key [, alg [, check_exp]]) → payload | nil, err
**       the header's alg must be the expected one (default "HS256"): "none" and algorithm
**       swaps are refused; RS256 keys are PEM public keys; with check_exp (default true) a
**       numeric exp in the past or nbf in the future is refused
** Failures are nil, INVALID with the reason ("malformed token", "signature mismatch",
** "token expired", ...). Tokens are at most 64 KiB. Threads: the calling state's only.
*/
#include "lmod_crypto.h"
#include "base/util.h"
#include "value/errors.h"
#include "value/json.h"

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <string.h>
#include <time.h>

#define TOKEN_MAX (64 << 10)

static const struct { const char *name; const EVP_MD *(*md)(void); int rsa; } algs[] = {
  {"HS256", EVP_sha256, 0}, {"HS384", EVP_sha384, 0}, {"HS512", EVP_sha512, 0},
  {"RS256", EVP_sha256, 1}};

static int find_alg(const char *name) {
  for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
    if (strcmp(algs[i].name, name) == 0) return (int)i;
  return -1;
}

/* base64url without padding (RFC 7515 §2), appended to b. */
static void b64url_add(struct buf *b, const unsigned char *p, size_t n) {
  size_t at = b->len;
  buf_reserve(b, 4 * ((n + 2) / 3) + 1);
  int w = EVP_EncodeBlock((unsigned char *)b->data + at, p, (int)n);
  for (int i = 0; i < w; i++) {
    char *c = b->data + at + i;
    if (*c == '+') *c = '-';
    else if (*c == '/') *c = '_';
  }
  while (w > 0 && b->data[at + w - 1] == '=') w--;
  b->len = at + (size_t)w;
}

/* Decodes base64url text s[0..n) into out (capacity n); returns the length or -1. */
static int b64url_decode(const char *s, size_t n, unsigned char *out) {
  if (n % 4 == 1) return -1;
  size_t pad = (4 - n % 4) % 4;
  char *t = xmalloc(n + pad + 1);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (c == '+' || c == '/' || c == '=') { free(t); return -1; }
    t[i] = c;
  }
  memset(t + n, '=', pad);
  unsigned char *tmp = xmalloc(n + pad + 1);
  int m = EVP_DecodeBlock(tmp, (const unsigned char *)t, (int)(n + pad));
  free(t);
  if (m >= 0) {
    m -= (int)pad;
    memcpy(out, tmp, (size_t)m);
  }
  free(tmp);
  return m;
}

static EVP_PKEY *pem_key(const char *pem, size_t len, int private) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k = !bio ? NULL : private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                                      : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  BIO_free(bio);
  return k;
}

/* Signs msg with alg a: the signature into sig (capacity 1024) and its length, or -1. */
static int sign(int a, const char *key, size_t klen, const char *msg, size_t n, unsigned char *sig,
                size_t *siglen) {
  if (!algs[a].rsa) {
    unsigned int len = 0;
    if (!HMAC(algs[a].md(), key, (int)klen, (const unsigned char *)msg, n, sig, &len)) return -1;
    *siglen = len;
    return 0;
  }
  EVP_PKEY *k = pem_key(key, klen, 1);
  EVP_MD_CTX *x = EVP_MD_CTX_new();
  size_t len = 0;
  int ok = k && x && EVP_DigestSignInit(x, NULL, algs[a].md(), NULL, k) == 1 &&
           EVP_DigestSign(x, NULL, &len, (const unsigned char *)msg, n) == 1 && len <= 1024 &&
           EVP_DigestSign(x, sig, &len, (const unsigned char *)msg, n) == 1;
  EVP_MD_CTX_free(x);
  EVP_PKEY_free(k);
  *siglen = len;
  return ok ? 0 : -1;
}

static int check_alg(lua_State *L, int idx) {
  const char *name = luaL_optstring(L, idx, "HS256");
  int a = find_alg(name);
  if (a < 0) luaL_error(L, "jwt: unknown algorithm \"%s\" (HS256, HS384, HS512, RS256)", name);
  return a;
}

static int l_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t klen;
  const char *key = luaL_checklstring(L, 2, &klen);
  int a = check_alg(L, 3);
  struct buf js, tok;
  char err[128];
  buf_init(&js);
  buf_init(&tok);
  lua_pushnil(L);
  int empty = !lua_next(L, 1);
  if (!empty) lua_pop(L, 2);
  if (empty) buf_adds(&js, "{}");
  else if (json_encode(L, 1, &js, err, sizeof err) != 0) {
    buf_free(&js);
    return errors_fail(L, EK_INVALID, "jwt.encode: payload: %s", err);
  } else if (js.data[0] != '{') {
    buf_free(&js);
    return errors_fail(L, EK_INVALID, "jwt.encode: the payload must be an object (string keys)");
  }
  char head[48];
  int hn = snprintf(head, sizeof head, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[a].name);
  b64url_add(&tok, (const unsigned char *)head, (size_t)hn);
  buf_addc(&tok, '.');
  b64url_add(&tok, (const unsigned char *)js.data, js.len);
  buf_free(&js);
  unsigned char sig[1024];
  size_t siglen;
  if (sign(a, key, klen, tok.data, tok.len, sig, &siglen) != 0) {
    buf_free(&tok);
    return errors_fail(L, EK_INVALID, "jwt.encode: cannot sign with this key (%s)", algs[a].name);
  }
  buf_addc(&tok, '.');
  b64url_add(&tok, sig, siglen);
  lua_pushlstring(L, tok.data, tok.len);
  buf_free(&tok);
  return 1;
}

static int verify_sig(int a, const char *key, size_t klen, const char *msg, size_t n,
                      const unsigned char *sig, size_t siglen) {
  if (!algs[a].rsa) {
    unsigned char want[EVP_MAX_MD_SIZE];
    size_t wl;
    return sign(a, key, klen, msg, n, want, &wl) == 0 && wl == siglen && CRYPTO_memcmp(want, sig, wl) == 0;
  }
  EVP_PKEY *k = pem_key(key, klen, 0);
  EVP_MD_CTX *x = EVP_MD_CTX_new();
  int ok = k && x && EVP_DigestVerifyInit(x, NULL, algs[a].md(), NULL, k) == 1 &&
           EVP_DigestVerify(x, sig, siglen, (const unsigned char *)msg, n) == 1;
  EVP_MD_CTX_free(x);
  EVP_PKEY_free(k);
  return ok;
}

/* Decodes part [s, s+n) as base64url JSON and pushes it (a table); 0 or -1 (nothing pushed). */
static int push_part(lua_State *L, const char *s, size_t n) {
  unsigned char *raw = xmalloc(n + 1);
  int m = b64url_decode(s, n, raw);
  char err[64];
  int rc = m > 0 && raw[0] == '{' && json_decode(L, (const char *)raw, (size_t)m, err, sizeof err) == 0 ? 0 : -1;
  free(raw);
  if (rc == 0 && !lua_istable(L, -1)) { lua_pop(L, 1); rc = -1; }
  return rc;
}

static int l_verify(lua_State *L) {
  size_t n, klen;
  const char *tok = luaL_checklstring(L, 1, &n), *key = luaL_checklstring(L, 2, &klen);
  int a = check_alg(L, 3);
  int check_exp = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  const char *d1 = memchr(tok, '.', n), *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
  if (n > TOKEN_MAX || !d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok)))
    return errors_fail(L, EK_INVALID, "jwt.verify: malformed token");
  if (push_part(L, tok, (size_t)(d1 - tok)) != 0)
    return errors_fail(L, EK_INVALID, "jwt.verify: malformed token header");
  lua_getfield(L, -1, "alg");
  const char *alg = lua_tostring(L, -1);
  if (!alg || strcmp(alg, algs[a].name) != 0)
    return errors_fail(L, EK_INVALID, "jwt.verify: the token's algorithm is %s, expected %s",
                       alg ? alg : "missing", algs[a].name);
  lua_pop(L, 2);
  size_t slen = n - (size_t)(d2 + 1 - tok);
  unsigned char *sig = xmalloc(slen + 1);
  int sl = b64url_decode(d2 + 1, slen, sig);
  int ok = sl > 0 && verify_sig(a, key, klen, tok, (size_t)(d2 - tok), sig, (size_t)sl);
  free(sig);
  if (!ok) return errors_fail(L, EK_INVALID, "jwt.verify: signature mismatch");
  if (push_part(L, d1 + 1, (size_t)(d2 - d1 - 1)) != 0)
    return errors_fail(L, EK_INVALID, "jwt.verify: malformed token payload");
  if (check_exp) {
    double now = (double)time(NULL);
    int has_exp = lua_getfield(L, -1, "exp") == LUA_TNUMBER, has_nbf = lua_getfield(L, -2, "nbf") == LUA_TNUMBER;
    double exp = lua_tonumber(L, -2), nbf = lua_tonumber(L, -1);
    lua_pop(L, 2);
    if (has_exp && now >= exp) return errors_fail(L, EK_INVALID, "jwt.verify: token expired");
    if (has_nbf && now < nbf) return errors_fail(L, EK_INVALID, "jwt.verify: token not valid yet");
  }
  return 1;
}

void crypto_open_jwt(lua_State *L) {
  static const luaL_Reg funcs[] = {{"encode", l_encode}, {"verify", l_verify}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "jwt");
}
