-- wrk script for bench/edge's `post` mode: an API-style POST with a 200-byte form body,
-- the shape of traffic the edge's own HTTP/1.1 server reads whole (bodies up to 16 KiB).
wrk.method = "POST"
wrk.body = string.rep("k=v&", 50)
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
