"""The uuid, hash, base64 and crypto modules through the real binary: a terminal process
requires each one (listed in `modules:`), and its output is checked against Python's own
hashlib, hmac, base64 and uuid; error paths give nil, err or raise; unlisted, they are not
there."""
import base64
import hashlib
import hmac
import uuid

import th

MODS = "[io, uuid, hash, base64, crypto]"

SCRIPT = r"""
local io = require("io")
local uuid, hash = require("uuid"), require("hash")
local base64, crypto = require("base64"), require("crypto")
local function main(data, key)
  io.print("md5=" .. hash.md5(data))
  io.print("sha1=" .. hash.sha1(data))
  io.print("sha256=" .. hash.sha256(data))
  io.print("sha512=" .. hash.sha512(data))
  io.print("hmac_sha256=" .. hash.hmac_sha256(data, key))
  io.print("hmac_md5_raw_b64=" .. base64.encode(hash.hmac_md5(data, key, true)))
  io.print("crypto_hmac_sha512=" .. crypto.hmac.sha512(key, data))
  io.print(string.format("fnv32=%08x", hash.fnv32(data)))
  io.print(string.format("fnv64=%016x", hash.fnv64(data)))
  io.print("b64=" .. base64.encode(data))
  io.print("b64back=" .. base64.decode(base64.encode(data)))
  local id = uuid.v7()
  io.print("v7=" .. id .. " " .. uuid.version(id) .. " " .. uuid.variant(id))
  io.print("v7ts=" .. uuid.parse(id).timestamp)
  io.print("v4=" .. uuid.v4())
  io.print("v1=" .. uuid.v1())
  io.print("v5=" .. uuid.v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", data))
  io.print("urn=" .. uuid.format(id, "urn"))
  io.print("rnd=" .. #crypto.random.bytes(64) .. " " .. crypto.random.string(24, "01"))
  io.print("ruuid=" .. crypto.random.uuid())
  io.print("cmp=" .. tostring(crypto.constant_time_compare(key, key)) .. " "
           .. tostring(crypto.constant_time_compare(key, key .. "x")))
  -- runtime failures: nil, err
  local r, err = base64.decode("Zm9v!")
  io.print("bad_b64=" .. tostring(r) .. " " .. err:kind())
  r, err = uuid.parse("not-a-uuid")
  io.print("bad_uuid=" .. tostring(r) .. " " .. err:kind() .. " " .. tostring(uuid.validate("x")))
  r, err = crypto.random.bytes(2 * 1024 * 1024)
  io.print("big_bytes=" .. tostring(r) .. " " .. err:kind())
  -- misuse raises
  io.print("raise_hash=" .. tostring(pcall(hash.sha256, {})))
  io.print("raise_format=" .. tostring(pcall(uuid.format, id, "weird")))
  io.print("raise_alpha=" .. tostring(pcall(crypto.random.string, 4, "")))
  return 0
end
return { main = main }
"""


def lines_of(out):
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


class PureModules(th.TestCase):
    def test_each_module_against_python(self):
        data, key = "The quick brown fox jumps over the lazy dog", "s3cret key"
        project = th.script_project(SCRIPT, modules=MODS)
        r = th.run(["run", project, "-x", "app:main", data, key], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        got = lines_of(r.stdout)
        d, k = data.encode(), key.encode()
        for name in ("md5", "sha1", "sha256", "sha512"):
            self.assertEqual(got[name], hashlib.new(name, d).hexdigest(), name)
        self.assertEqual(got["hmac_sha256"], hmac.new(k, d, "sha256").hexdigest())
        self.assertEqual(got["hmac_md5_raw_b64"],
                         base64.b64encode(hmac.new(k, d, "md5").digest()).decode())
        self.assertEqual(got["crypto_hmac_sha512"], hmac.new(k, d, "sha512").hexdigest())
        h32, h64 = 0x811C9DC5, 0xCBF29CE484222325
        for b in d:
            h32 = ((h32 ^ b) * 0x01000193) % 2**32
            h64 = ((h64 ^ b) * 0x100000001B3) % 2**64
        self.assertEqual(got["fnv32"], "%08x" % h32)
        self.assertEqual(got["fnv64"], "%016x" % h64)
        self.assertEqual(got["b64"], base64.b64encode(d).decode())
        self.assertEqual(got["b64back"], data)
        v7, version, variant = got["v7"].split()
        u7 = uuid.UUID(v7)
        self.assertEqual((u7.version, u7.variant, version, variant),
                         (7, uuid.RFC_4122, "7", "RFC4122"))
        self.assertEqual(int(got["v7ts"]), u7.int >> 80)
        self.assertEqual(got["urn"], u7.urn)
        self.assertEqual(uuid.UUID(got["v4"]).version, 4)
        u1 = uuid.UUID(got["v1"])
        self.assertEqual((u1.version, u1.variant), (1, uuid.RFC_4122))
        self.assertEqual(u1.node & (1 << 40), 1 << 40)       # multicast bit: a random node
        self.assertEqual(got["v5"], str(uuid.uuid5(uuid.NAMESPACE_DNS, data)))
        n, bits = got["rnd"].split()
        self.assertEqual(n, "64")
        self.assertRegex(bits, r"^[01]{24}$")
        self.assertEqual(uuid.UUID(got["ruuid"]).version, 4)
        self.assertEqual(got["cmp"], "true false")
        self.assertEqual(got["bad_b64"], "nil INVALID")
        self.assertEqual(got["bad_uuid"], "nil INVALID false")
        self.assertEqual(got["big_bytes"], "nil INVALID")
        for name in ("raise_hash", "raise_format", "raise_alpha"):
            self.assertEqual(got[name], "false", name)

    def test_jwt_and_pbkdf2_against_openssl_and_python(self):
        import json
        import os
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="taskhost-jwt-")
        priv, pub = os.path.join(d, "priv.pem"), os.path.join(d, "pub.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", priv], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub], check=True,
                       capture_output=True, timeout=60)
        project = th.script_project(r"""
local io = require("io")
local crypto = require("crypto")
local function main(priv, pub)
  local t = assert(crypto.jwt.encode({sub = "u1", n = 7}, priv, "RS256"))
  io.print("rs=" .. t)
  io.print("rs_ok=" .. assert(crypto.jwt.verify(t, pub, "RS256")).sub)
  local v, err = crypto.jwt.verify(t, pub)
  io.print("rs_as_hs=" .. tostring(v) .. " " .. err:message())
  io.print("hs=" .. crypto.jwt.encode({sub = "u2"}, "k3y"))
  local key = crypto.pbkdf2("pass word", "NaCl", 1000, 32)
  io.print("pbkdf2=" .. (key:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
  local sealed = crypto.encrypt.aes("hello", key, "hdr")
  io.print("aes=" .. tostring(crypto.decrypt.aes(sealed, key, "hdr")) .. " " .. #sealed)
  return 0
end
return { main = main }
""", modules="[io, crypto]")
        r = th.run(["run", project, "-x", "app:main", open(priv).read(), open(pub).read()], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        got = lines_of(r.stdout)
        head, payload, sig = got["rs"].split(".")
        unb64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        self.assertEqual(json.loads(unb64(head)), {"alg": "RS256", "typ": "JWT"})
        self.assertEqual(json.loads(unb64(payload)), {"sub": "u1", "n": 7})
        with open(os.path.join(d, "in"), "w") as f:
            f.write(head + "." + payload)
        with open(os.path.join(d, "sig"), "wb") as f:
            f.write(unb64(sig))
        v = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                            os.path.join(d, "sig"), os.path.join(d, "in")], capture_output=True,
                           text=True, timeout=60)
        self.assertIn("Verified OK", v.stdout, v.stderr)
        self.assertEqual(got["rs_ok"], "u1")
        self.assertIn("nil", got["rs_as_hs"])
        self.assertIn("algorithm is RS256, expected HS256", got["rs_as_hs"])
        head, payload, sig = got["hs"].split(".")
        want = hmac.new(b"k3y", (head + "." + payload).encode(), "sha256").digest()
        self.assertEqual(unb64(sig), want)
        self.assertEqual(got["pbkdf2"], hashlib.pbkdf2_hmac("sha256", b"pass word", b"NaCl", 1000, 32).hex())
        self.assertEqual(got["aes"], "hello 33")

    def test_not_there_unless_listed(self):
        project = th.script_project(r"""
local io = require("io")
local function main()
  io.print("globals=" .. tostring(rawget(_G, "hash")) .. " " .. tostring(rawget(_G, "uuid")))
  local ok, err = pcall(require, "crypto")
  io.print("require=" .. tostring(ok))
  return 0
end
return { main = main }
""", modules="[io]")
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        got = lines_of(r.stdout)
        self.assertEqual(got["globals"], "nil nil")
        self.assertEqual(got["require"], "false")


if __name__ == "__main__":
    th.main()
