"""http_client futures (seed 002's API, beyond Wippy's): http_client.async(method, url, opts)
→ a Future with :result(), :is_complete(), :channel() (usable in channel.select against
time.after) and :cancel(), which aborts the transfer on the wire."""
import th
from httpd_lua import body_json, lua
from httpd_misbehave import refused_port
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
            lost.cancel = g:cancel()
            lost.after = R(g:result())
            lost.complete_after = g:is_complete()
            lost.cancel_again = g:cancel()
            -- a failed request delivers its error object on the channel
            local h = http_client.async("GET", C.refused)
            local r3 = channel.select{h:channel():case_receive(), time.after("20s"):case_receive()}
            local failed = {err = E(r3.value), result = R(h:result())}
            return {won = won, lost = lost, failed = failed, done_cancel = f:cancel()}
        """, self.cfg(refused=f"http://127.0.0.1:{refused_port()}/"))
        self.assertEqual(out["won"], {"response": True, "status": 200}, out)
        self.assertEqual((out["lost"]["timer"], out["lost"]["complete"]), (True, False), out)
        self.assertEqual(out["lost"]["after"]["err"]["kind"], "CANCELED", out)
        self.assertEqual((out["lost"]["cancel"], out["lost"]["cancel_again"], out["done_cancel"]),
                         (True, False, False), out)         # true only when it was pending
        self.assertIs(out["lost"]["complete_after"], True, out)
        self.assertEqual(out["failed"]["err"]["kind"], "UNAVAILABLE", out)
        self.assertEqual(out["failed"]["result"]["err"]["kind"], "UNAVAILABLE", out)
        self.assertTrue(self.srv.wait_event("closed", "fut-cancel", timeout=10))


if __name__ == "__main__":
    th.main()
