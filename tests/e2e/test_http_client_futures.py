"""http_client futures (seed 002's API, beyond Wippy's): http_client.async(method, url, opts)
→ a Future with :result(), :is_complete(), :channel() (usable in channel.select against
time.after) and :cancel(), which aborts the transfer on the wire."""
import th
from httpd_lua import body_json, lua
from test_http_client import WithServer


class Futures(WithServer):
    """http_client.async(method, url, opts) → a Future (seed 002's API)."""

    def test_result_is_complete_and_several_at_once(self):
        out = lua(self, """
            local f = http_client.async("GET", C.echo .. "?f=1")
            local r1 = R(f:result())
            local done = f:is_complete()
            local fs = {}
            for i = 1, 4 do fs[i] = http_client.async("GET", C.base .. "/slow?delay=0.5&tag=fut" .. i) end
            local early = fs[1]:is_complete()
            local ok = 0
            for i = 1, 4 do local res = fs[i]:result() if res and res.status_code == 200 then ok = ok + 1 end end
            local again = R(f:result())
            return {r1 = r1, done = done, early = early, ok = ok, again = again}
        """, self.cfg())
        self.assertEqual(out["r1"]["status_code"], 200, out)
        self.assertEqual(body_json(out["r1"])["query"], {"f": ["1"]})
        self.assertIs(out["done"], True)
        self.assertIs(out["early"], False)
        self.assertEqual(out["ok"], 4)
        self.assertEqual(out["again"]["status_code"], 200, out)   # result() again: the same response

    def test_channel_in_select_against_time_after_and_cancel(self):
        out = lua(self, """
            -- the response wins against a long timer
            local f = http_client.async("GET", C.echo .. "?f=sel")
            local ch = f:channel()
            local r = channel.select{ch:case_receive(), time.after("20s"):case_receive()}
            local won = {response = r.channel == ch, status = r.value and r.value.status_code}
            -- a short timer wins against a server that never answers; cancel reaches the wire
            local g = http_client.async("GET", C.base .. "/hang?tag=fut-cancel")
            local timer = time.after("300ms")
            local gch = g:channel()
            local r2 = channel.select{gch:case_receive(), timer:case_receive()}
            local lost = {timer = r2.channel == timer, complete = g:is_complete()}
            g:cancel()
            lost.after = R(g:result())
            return {won = won, lost = lost}
        """, self.cfg())
        self.assertEqual(out["won"], {"response": True, "status": 200}, out)
        self.assertEqual((out["lost"]["timer"], out["lost"]["complete"]), (True, False), out)
        self.assertEqual(out["lost"]["after"]["err"]["kind"], "CANCELED", out)
        self.assertTrue(self.srv.wait_event("closed", "fut-cancel", timeout=10))


if __name__ == "__main__":
    th.main()
