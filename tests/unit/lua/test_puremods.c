/* test_puremods.c — the uuid, hash, base64 and crypto modules (host/lua/lmod_uuid.c,
** lmod_hash.c, lmod_base64.c, lmod_crypto.c) against published known answers: RFC 1321
** (MD5), FIPS 180 examples (SHA-1/256/512), RFC 2202 and RFC 4231 (HMAC), RFC 4648 §10
** (base64), the FNV-1a reference values, RFC 9562 Appendix A (v3/v5). */
#include "t.h"
#include "lua/lmod.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* A state with the four modules as globals and eq(a, b) raising when a ~= b. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  static const struct { const char *name; lua_CFunction open; } mods[] = {
    {"uuid", luaopen_uuid}, {"hash", luaopen_hash}, {"base64", luaopen_base64},
    {"crypto", luaopen_crypto},
  };
  for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
    luaL_requiref(L, mods[i].name, mods[i].open, 1);
    lua_pop(L, 1);
  }
  const char *eq =
      "function eq(a, b, what)\n"
      "  if a ~= b then error(string.format('%s: got %s, expected %s', what or '?',\n"
      "    tostring(a), tostring(b)), 2) end\n"
      "end\n"
      "function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end\n";
  if (luaL_dostring(L, eq) != LUA_OK) printf("  setup: %s\n", lua_tostring(L, -1));
  return L;
}

/* Runs code; 1 when it ran without error (else prints the error). */
static int run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) == LUA_OK) return 1;
  printf("  %s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

TEST(md5_rfc1321) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local v = {\n"
    "  [''] = 'd41d8cd98f00b204e9800998ecf8427e', a = '0cc175b9c0f1b6a831c399e269772661',\n"
    "  abc = '900150983cd24fb0d6963f7d28e17f72',\n"
    "  ['message digest'] = 'f96b697d7cb7938d525a2f31aaf161d0',\n"
    "  abcdefghijklmnopqrstuvwxyz = 'c3fcd3d76192e4007dfb496cca67e13b',\n"
    "  ['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'] =\n"
    "    'd174ab98d277d9f5a5611c2c9f419d9f',\n"
    "  [('1234567890'):rep(8)] = '57edf4a22be3c955ac49da2e2107b67a',\n"
    "}\n"
    "for msg, want in pairs(v) do eq(hash.md5(msg), want, 'md5 ' .. msg) end\n"
    "eq(hex(hash.md5('abc', true)), v.abc, 'raw')\n"
    "eq(#hash.md5('abc', true), 16, 'raw length')\n"));
  lua_close(L);
}

TEST(sha_fips180) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local m448 = 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'\n"
    "eq(hash.sha1('abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d', 'sha1 abc')\n"
    "eq(hash.sha1(''), 'da39a3ee5e6b4b0d3255bfef95601890afd80709', 'sha1 empty')\n"
    "eq(hash.sha1(m448), '84983e441c3bd26ebaae4aa1f95129e5e54670f1', 'sha1 448')\n"
    "eq(hash.sha256('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sha256 abc')\n"
    "eq(hash.sha256(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'sha256 empty')\n"
    "eq(hash.sha256(m448), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1', 'sha256 448')\n"
    "eq(hash.sha512('abc'), 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a'\n"
    "  .. '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f', 'sha512 abc')\n"
    "eq(hash.sha512(''), 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce'\n"
    "  .. '47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e', 'sha512 empty')\n"
    "eq(hash.sha512(m448), '204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335'\n"
    "  .. '96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445', 'sha512 448')\n"
    "eq(#hash.sha512('abc', true), 64, 'raw length')\n"));
  lua_close(L);
}

TEST(hmac_rfc2202_rfc4231) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local k16, k20, hi = ('\\11'):rep(16), ('\\11'):rep(20), 'Hi There'\n"
    "local jefe, what = 'Jefe', 'what do ya want for nothing?'\n"
    "eq(hash.hmac_md5(hi, k16), '9294727a3638bb1c13f48ef8158bfc9d', 'md5 1')\n"
    "eq(hash.hmac_md5(what, jefe), '750c783e6ab0b503eaa86e310a5db738', 'md5 2')\n"
    "eq(hash.hmac_sha1(hi, k20), 'b617318655057264e28bc0b6fb378c8ef146be00', 'sha1 1')\n"
    "eq(hash.hmac_sha1(what, jefe), 'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79', 'sha1 2')\n"
    "local s256 = {'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',\n"
    "              '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'}\n"
    "local s512 = {'87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde'\n"
    "           .. 'daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',\n"
    "              '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554'\n"
    "           .. '9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737'}\n"
    "eq(hash.hmac_sha256(hi, k20), s256[1], 'sha256 1')\n"
    "eq(hash.hmac_sha256(what, jefe), s256[2], 'sha256 2')\n"
    "eq(hash.hmac_sha512(hi, k20), s512[1], 'sha512 1')\n"
    "eq(hash.hmac_sha512(what, jefe), s512[2], 'sha512 2')\n"
    "eq(hex(hash.hmac_sha256(what, jefe, true)), s256[2], 'raw')\n"
    "eq(crypto.hmac.sha256(jefe, what), s256[2], 'crypto.hmac.sha256 (key, data)')\n"
    "eq(crypto.hmac.sha512(k20, hi), s512[1], 'crypto.hmac.sha512 (key, data)')\n"));
  lua_close(L);
}

TEST(fnv1a_reference) {
  lua_State *L = new_state();
  CHECK(run(L,
    "eq(hash.fnv32('a'), 0xe40c292c, 'fnv32 a')\n"
    "eq(hash.fnv32(''), 0x811c9dc5, 'fnv32 empty')\n"
    "eq(hash.fnv32('foobar'), 0xbf9cf968, 'fnv32 foobar')\n"
    "eq(hash.fnv64('a'), 0xaf63dc4c8601ec8c, 'fnv64 a')\n"
    "eq(hash.fnv64('foobar'), 0x85944171f73967e8, 'fnv64 foobar')\n"
    "eq(math.type(hash.fnv64('a')), 'integer', 'fnv64 type')\n"));
  lua_close(L);
}

TEST(base64_rfc4648) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local v = {{'', ''}, {'f', 'Zg=='}, {'fo', 'Zm8='}, {'foo', 'Zm9v'}, {'foob', 'Zm9vYg=='},\n"
    "           {'fooba', 'Zm9vYmE='}, {'foobar', 'Zm9vYmFy'}}\n"
    "for _, p in ipairs(v) do\n"
    "  eq(base64.encode(p[1]), p[2], 'encode ' .. p[1])\n"
    "  eq(base64.decode(p[2]), p[1], 'decode ' .. p[2])\n"
    "end\n"
    "local all = {} for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
    "all = table.concat(all)\n"
    "eq(base64.decode(base64.encode(all)), all, 'all bytes round trip')\n"
    "for _, bad in ipairs{'Zg', 'Zg=', 'Z===', 'Zm9v\\n', 'Zm-_', 'Zg=a', '=Zg=', 'Zm\\0v'} do\n"
    "  local s, err = base64.decode(bad)\n"
    "  eq(s, nil, 'decode ' .. bad)\n"
    "  eq(err:kind(), 'INVALID', 'kind ' .. bad)\n"
    "end\n"
    "eq(pcall(base64.encode, {}), false, 'a table raises')\n"));
  lua_close(L);
}

TEST(uuid_v4_v7_bits_and_order) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local pat = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'\n"
    "for _, v in ipairs{4, 7} do\n"
    "  local id = uuid['v' .. v]()\n"
    "  assert(id:match(pat), id)\n"
    "  eq(id:sub(15, 15), tostring(v), 'version digit')\n"
    "  assert(('89ab'):find(id:sub(20, 20), 1, true), 'variant digit ' .. id)\n"
    "  eq(uuid.version(id), v, 'version()')\n"
    "  eq(uuid.variant(id), 'RFC4122', 'variant()')\n"
    "  eq(uuid.validate(id), true, 'validate')\n"
    "end\n"
    "local prev, seen = uuid.v7(), {}\n"
    "for i = 1, 20000 do\n"
    "  local id = uuid.v7()\n"
    "  assert(id > prev, 'v7 not increasing: ' .. prev .. ' then ' .. id)\n"
    "  prev = id\n"
    "  local v4 = crypto.random.uuid()\n"
    "  assert(not seen[v4], 'v4 repeated') seen[v4] = true\n"
    "end\n"
    "local t = uuid.parse(uuid.v7())\n"
    "local now = os.time() * 1000\n"
    "assert(t.timestamp > now - 3600000 and t.timestamp < now + 3600000, 'v7 time')\n"
    "eq(t.version, 7, 'parse version') eq(t.variant, 'RFC4122', 'parse variant')\n"
    "eq(uuid.version(crypto.random.uuid()), 4, 'crypto.random.uuid is a v4')\n"));
  lua_close(L);
}

/* v1: version/variant bits, the node's multicast bit (random node), one clock sequence and
** node per process, timestamps that never repeat, near the wall clock. */
TEST(uuid_v1) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local first, seen = uuid.v1(), {}\n"
    "eq(uuid.version(first), 1, 'version') eq(uuid.variant(first), 'RFC4122', 'variant')\n"
    "assert(tonumber(first:sub(25, 26), 16) & 1 == 1, 'multicast bit ' .. first)\n"
    "local now = os.time() * 1000\n"
    "local ts = uuid.parse(first).timestamp\n"
    "assert(ts > now - 3600000 and ts < now + 3600000, 'v1 time ' .. ts)\n"
    "for i = 1, 20000 do\n"
    "  local id = uuid.v1()\n"
    "  assert(not seen[id], 'v1 repeated ' .. id) seen[id] = true\n"
    "  eq(id:sub(20), first:sub(20), 'clock sequence and node')\n"
    "end\n"));
  lua_close(L);
}

TEST(uuid_name_based_rfc9562) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local dns = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'\n"
    "eq(uuid.v3(dns, 'www.example.com'), '5df41881-3aed-3515-88a7-2f4a814cf09e', 'v3')\n"
    "eq(uuid.v5(dns, 'www.example.com'), '2ed6657d-e927-568b-95e1-2665a8aea6a2', 'v5')\n"
    "local s, err = uuid.v5('nope', 'x')\n"
    "eq(s, nil, 'bad namespace') eq(err:kind(), 'INVALID', 'bad namespace kind')\n"));
  lua_close(L);
}

TEST(uuid_parse_format_validate) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local id = '5DF41881-3AED-3515-88A7-2F4A814CF09E'\n"
    "local low = id:lower()\n"
    "eq(uuid.format(id), low, 'standard default')\n"
    "eq(uuid.format(id, 'simple'), (low:gsub('-', '')), 'simple')\n"
    "eq(uuid.format(id, 'urn'), 'urn:uuid:' .. low, 'urn')\n"
    "for _, form in ipairs{low, (low:gsub('-', '')), 'urn:uuid:' .. low, '{' .. low .. '}'} do\n"
    "  eq(uuid.validate(form), true, 'validate ' .. form)\n"
    "  eq(uuid.parse(form).uuid, low, 'parse ' .. form)\n"
    "end\n"
    "local t = uuid.parse(id)\n"
    "eq(t.version, 3, 'version') eq(t.variant, 'RFC4122', 'variant') eq(t.timestamp, nil, 'no ts')\n"
    "eq(uuid.variant('00000000-0000-0000-0000-000000000000'), 'Reserved', 'NCS')\n"
    "eq(uuid.variant('00000000-0000-0000-c000-000000000000'), 'Microsoft', 'Microsoft')\n"
    "eq(uuid.variant('00000000-0000-0000-e000-000000000000'), 'Future', 'Future')\n"
    "eq(uuid.parse('017f22e2-79b0-7cc3-98c4-dc0c0c07398f').timestamp, 0x017f22e279b0, 'v7 ts')\n"
    "eq(uuid.parse('C232AB00-9414-11EC-B3C8-9F6BDECED846').timestamp, 1645557742000, 'v1 ts')\n"
    "for _, bad in ipairs{'', 'x', low:sub(2), low .. '0', (low:gsub('-', '_')),\n"
    "                     low:sub(1, 35) .. 'g', '{' .. low, 'urn:uuid:' .. low:sub(2)} do\n"
    "  eq(uuid.validate(bad), false, 'validate ' .. bad)\n"
    "  local r, err = uuid.parse(bad)\n"
    "  eq(r, nil, 'parse ' .. bad) eq(err:kind(), 'INVALID', 'kind ' .. bad)\n"
    "  eq(select(2, uuid.version(bad)):kind(), 'INVALID', 'version ' .. bad)\n"
    "end\n"
    "eq(pcall(uuid.format, low, 'braces'), false, 'unknown form raises')\n"
    "eq(pcall(uuid.validate, {}), false, 'a table raises')\n"));
  lua_close(L);
}

TEST(crypto_random_and_compare) {
  lua_State *L = new_state();
  CHECK(run(L,
    "eq(#crypto.random.bytes(0), 0, 'zero') eq(#crypto.random.bytes(33), 33, 'bytes n')\n"
    "eq(#crypto.random.bytes(1 << 20), 1 << 20, 'bytes max')\n"
    "for _, n in ipairs{-1, (1 << 20) + 1} do\n"
    "  local s, err = crypto.random.bytes(n)\n"
    "  eq(s, nil, 'bytes ' .. n) eq(err:kind(), 'INVALID', 'bytes kind ' .. n)\n"
    "  eq(select(2, crypto.random.string(n)):kind(), 'INVALID', 'string kind ' .. n)\n"
    "end\n"
    "eq(pcall(crypto.random.bytes, 'x'), false, 'non-number raises')\n"
    "local s = crypto.random.string(4000)\n"
    "eq(#s, 4000, 'string n') assert(s:match('^[A-Za-z0-9]+$'), 'alnum')\n"
    "eq(crypto.random.string(50, 'a'), ('a'):rep(50), 'one-letter alphabet')\n"
    "local counts = {a = 0, b = 0, c = 0}\n"
    "for c in crypto.random.string(30000, 'abc'):gmatch('.') do counts[c] = counts[c] + 1 end\n"
    "for c, n in pairs(counts) do assert(n > 9000 and n < 11000, c .. ' ' .. n) end\n"
    "eq(pcall(crypto.random.string, 5, ''), false, 'empty alphabet raises')\n"
    "eq(crypto.constant_time_compare('secret', 'secret'), true, 'same')\n"
    "eq(crypto.constant_time_compare('secret', 'secreT'), false, 'differs')\n"
    "eq(crypto.constant_time_compare('secret', 'secret2'), false, 'length')\n"
    "eq(crypto.constant_time_compare('', ''), true, 'empty')\n"
    "eq(pcall(crypto.constant_time_compare, 'a'), false, 'missing raises')\n"));
  lua_close(L);
}

/* AES-GCM: the GCM specification's test cases 1 and 2 (key and IV all zero); ChaCha20-Poly1305:
** RFC 8439 §2.8.2. Sealed text is nonce .. ciphertext .. tag. */
TEST(aead_known_answers) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local function unhex(h) return (h:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) end\n"
    "local z16, z12 = ('\\0'):rep(16), ('\\0'):rep(12)\n"
    "eq(crypto.decrypt.aes(z12 .. unhex('58e2fccefa7e3061367f1d57a4e7455a'), z16), '', 'gcm tc1')\n"
    "eq(crypto.decrypt.aes(z12 .. unhex('0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf'), z16), z16, 'gcm tc2')\n"
    "local bad, err = crypto.decrypt.aes(z12 .. unhex('0388dace60b6a392f328c2b971b2fe79ab6e47d42cec13bdf53a67b21257bddf'), z16)\n"
    "eq(bad, nil, 'flipped bit'); eq(err:kind(), 'INVALID'); assert(err:message():find('authentication failed'))\n"
    "local key = unhex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f')\n"
    "local sealed = unhex('070000004041424344454647') .. unhex('d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116') .. unhex('1ae10b594f09e26a7e902ecbd0600691')\n"
    "eq(crypto.decrypt.chacha20(sealed, key, unhex('50515253c0c1c2c3c4c5c6c7')),\n"
    "   \"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.\", 'rfc8439')\n"
    "eq(crypto.decrypt.chacha20(sealed, key), nil, 'aad missing')\n"));
  lua_close(L);
}

TEST(aead_round_trips_and_sizes) {
  lua_State *L = new_state();
  CHECK(run(L,
    "for _, n in ipairs({16, 24, 32}) do\n"
    "  local key = ('k'):rep(n)\n"
    "  local a, b = crypto.encrypt.aes('secret', key, 'ctx'), crypto.encrypt.aes('secret', key, 'ctx')\n"
    "  eq(#a, 12 + 6 + 16, 'sealed length'); assert(a ~= b, 'a fresh nonce each time')\n"
    "  eq(crypto.decrypt.aes(a, key, 'ctx'), 'secret', 'aes ' .. n)\n"
    "  eq(crypto.decrypt.aes(a, key, 'other'), nil, 'aad mismatch')\n"
    "end\n"
    "local key = ('c'):rep(32)\n"
    "eq(crypto.decrypt.chacha20(crypto.encrypt.chacha20('', key), key), '', 'empty')\n"
    "local big = ('x'):rep(100000)\n"
    "eq(crypto.decrypt.chacha20(crypto.encrypt.chacha20(big, key, 'a'), key, 'a'), big, 'big')\n"
    "local v, err = crypto.encrypt.aes('x', ('k'):rep(20)); eq(v, nil); eq(err:kind(), 'INVALID')\n"
    "v, err = crypto.encrypt.chacha20('x', ('k'):rep(16)); eq(v, nil); eq(err:kind(), 'INVALID')\n"
    "v, err = crypto.decrypt.aes('short', ('k'):rep(16)); eq(v, nil); assert(err:message():find('not sealed data'))\n"
    "assert(not pcall(crypto.encrypt.aes, {}, key))\n"));
  lua_close(L);
}

/* RFC 6070 (PBKDF2-HMAC-SHA1) and the usual SHA-256 vector. */
TEST(pbkdf2_rfc6070) {
  lua_State *L = new_state();
  CHECK(run(L,
    "eq(hex(crypto.pbkdf2('password', 'salt', 1, 20, 'sha1')), '0c60c80f961f0e71f3a9b524af6012062fe037a6', 'c=1')\n"
    "eq(hex(crypto.pbkdf2('password', 'salt', 2, 20, 'sha1')), 'ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957', 'c=2')\n"
    "eq(hex(crypto.pbkdf2('password', 'salt', 4096, 20, 'sha1')), '4b007901b765489abead49d926f721d065a429c1', 'c=4096')\n"
    "eq(hex(crypto.pbkdf2('password', 'salt', 1, 32)), '120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b', 'sha256')\n"
    "eq(#crypto.pbkdf2('p', 's', 1, 64, 'sha512'), 64)\n"
    "for _, args in ipairs({{'p', 's', 0, 16}, {'p', 's', 1, 0}, {'p', 's', 1, 1025}, {'p', 's', 1, 16, 'md5'}, {'p', 's', 2000001, 16}}) do\n"
    "  local v, err = crypto.pbkdf2(table.unpack(args)); eq(v, nil); eq(err:kind(), 'INVALID')\n"
    "end\n"));
  lua_close(L);
}

/* RFC 7515 Appendix A.1 (HS256, a header and payload with CR LF inside), then round trips
** and the refusals. */
TEST(jwt_rfc7515) {
  lua_State *L = new_state();
  CHECK(run(L,
    "local b64 = 'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow'\n"
    "local key = base64.decode(b64:gsub('-', '+'):gsub('_', '/') .. '==')\n"
    "local tok = 'eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'\n"
    "local p = assert(crypto.jwt.verify(tok, key, 'HS256', false))\n"
    "eq(p.iss, 'joe'); eq(p.exp, 1300819380); eq(p['http://example.com/is_root'], true)\n"
    "local v, err = crypto.jwt.verify(tok, key); eq(v, nil); assert(err:message():find('token expired'))\n"
    "v, err = crypto.jwt.verify(tok, key .. 'x', 'HS256', false); assert(err:message():find('signature mismatch'))\n"
    "v, err = crypto.jwt.verify(tok, key, 'HS512', false); assert(err:message():find('algorithm is HS256, expected HS512'))\n"
    "for _, alg in ipairs({'HS256', 'HS384', 'HS512'}) do\n"
    "  local t = assert(crypto.jwt.encode({sub = 'u1', n = 3, exp = os.time() + 60}, 'secret', alg))\n"
    "  local q = assert(crypto.jwt.verify(t, 'secret', alg)); eq(q.sub, 'u1'); eq(q.n, 3)\n"
    "  eq(select(2, t:gsub('%.', '')), 2, 'three parts'); assert(not t:find('[=+/]'), 'base64url')\n"
    "end\n"
    "local none = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'\n"
    "v, err = crypto.jwt.verify(none, 'secret'); eq(v, nil); assert(err:message():find('algorithm is none'))\n"
    "local t = crypto.jwt.encode({nbf = os.time() + 3600}, 's')\n"
    "v, err = crypto.jwt.verify(t, 's'); assert(err:message():find('not valid yet'))\n"
    "assert(crypto.jwt.verify(t, 's', 'HS256', false))\n"
    "local h, pl, sg = t:match('^([^.]+)%.([^.]+)%.(.+)$')\n"
    "v, err = crypto.jwt.verify(h .. '.' .. pl .. 'A.' .. sg, 's'); eq(v, nil)\n"
    "for _, bad in ipairs({'', 'a.b', 'a.b.c.d', '!!.!!.!!', ('a'):rep(70000)}) do\n"
    "  v, err = crypto.jwt.verify(bad, 's'); eq(v, nil, bad:sub(1, 10)); eq(err:kind(), 'INVALID')\n"
    "end\n"
    "eq(select(2, crypto.jwt.encode({1, 2}, 's')):kind(), 'INVALID')\n"
    "local e = crypto.jwt.encode({}, 's'); assert(crypto.jwt.verify(e, 's'))\n"
    "v, err = crypto.jwt.encode({a = 1}, 'not a pem', 'RS256'); eq(v, nil); eq(err:kind(), 'INVALID')\n"
    "assert(not pcall(crypto.jwt.encode, {}, 's', 'XX1'))\n"));
  lua_close(L);
}

int main(void) {
  RUN(md5_rfc1321);
  RUN(sha_fips180);
  RUN(hmac_rfc2202_rfc4231);
  RUN(fnv1a_reference);
  RUN(base64_rfc4648);
  RUN(uuid_v4_v7_bits_and_order);
  RUN(uuid_v1);
  RUN(uuid_name_based_rfc9562);
  RUN(uuid_parse_format_validate);
  RUN(crypto_random_and_compare);
  RUN(aead_known_answers);
  RUN(aead_round_trips_and_sizes);
  RUN(pbkdf2_rfc6070);
  RUN(jwt_rfc7515);
  return T_DONE();
}
