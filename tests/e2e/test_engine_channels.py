"""Channels that engines hand out (an http_client future's, an events subscription's) work
in a script that never touched the `channel` global or `time` (whose first use used to make
the channel metatable): receiving on them must not fail with "attempt to index a userdata"."""
import th
from httpd_misbehave import refused_port


class EngineChannels(th.TestCase):
    def test_future_and_subscription_channels_without_the_channel_global(self):
        project = th.script_project(r"""
local io, hc, events = require("io"), require("http_client"), require("events")
return { main = function(url)
  local f = hc.async("GET", url)
  local err = f:channel():receive()
  io.print("future=" .. type(err) .. " " .. tostring(err):sub(1, 40))
  return 0
end }
""", modules="[io, http_client, events]")
        r = th.run(["run", project, "-x", "app:main", f"http://127.0.0.1:{refused_port()}/"], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn("future=", r.stdout)
        self.assertNotIn("attempt to index", r.stdout + r.stderr)

    def test_subscription_channel_without_the_channel_global(self):
        project = th.script_project(r"""
local io, events = require("io"), require("events")
return { main = function()
  local sub = events.subscribe("t.*")
  events.send("t.x", "k", "/p", {n = 1})
  local ev = sub:channel():receive()
  io.print("event=" .. ev.system .. " " .. ev.kind .. " " .. ev.path .. " " .. ev.data.n)
  return 0
end }
""", modules="[io, events]")
        r = th.run(["run", project, "-x", "app:main"], timeout=60)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        self.assertIn("event=t.x k /p 1", r.stdout)


if __name__ == "__main__":
    th.main()
