-- wrk: the same JSON POST for every server
wrk.method = "POST"
wrk.body = '{"name":"bench","duration":0}'
wrk.headers["Content-Type"] = "application/json"
