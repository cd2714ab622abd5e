"""A small fault-injecting HTTP proxy in front of a real OpenAI-compatible server (loopback only).

Each POST is answered by the upstream server unless the fault plan says otherwise: a status code ('429', '500', '400') answers with that
status, 'drop' closes the connection without an answer, 'delay:S' waits S seconds before forwarding. A request whose
last user message is a key of `replies` is answered with that text instead of being forwarded (a planted response).
Every request is logged (time, path, the last user message, the outcome, whether an Authorization header came
along)."""
import hashlib
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy:
    "Forward 127.0.0.1:<port> to an upstream host:port, injecting the faults of `plan` in turn."

    def __init__(self, upstream_port, plan=("ok",), host="127.0.0.1"):
        self.upstream, self.plan, self.log, self._n, self._lock = (host, upstream_port), list(plan), [], 0, threading.Lock()
        self.replies = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy._forward(self, b"")

            def do_POST(self):
                proxy._handle(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _next(self):
        "The next planned outcome."
        with self._lock:
            out = self.plan[self._n % len(self.plan)]
            self._n += 1
            return out

    def _handle(self, h, body):
        "Apply the next fault (or forward) and log the request."
        outcome = self._next()
        try:
            user = json.loads(body)["messages"][-1]["content"]
        except Exception:
            user = ""
        self.log.append(dict(t=time.time(), path=h.path, user=hashlib.sha1(user.encode()).hexdigest(), outcome=outcome,
                             auth=h.headers.get("Authorization", "")))
        if outcome.isdigit():
            h.send_response(int(outcome))
            h.send_header("Content-Type", "application/json")
            msg = json.dumps({"error": {"message": f"injected {outcome}", "type": "injected"}}).encode()
            h.send_header("Content-Length", str(len(msg)))
            h.end_headers()
            h.wfile.write(msg)
            return
        if outcome == "drop":
            h.close_connection = True
            return
        if outcome.startswith("delay:"):
            time.sleep(float(outcome.split(":")[1]))
        if user in self.replies: return self._reply(h, json.loads(body), self.replies[user])
        self._forward(h, body)

    def _reply(self, h, req, text):
        "Answer a chat completion request with `text` (n choices), as an OpenAI-compatible server would."
        msg = json.dumps({"id": "planted", "object": "chat.completion", "created": int(time.time()), "model": req.get("model"),
                          "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                                      for i in range(req.get("n") or 1)],
                          "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())}}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(msg)))
        h.end_headers()
        h.wfile.write(msg)

    def _forward(self, h, body):
        "Send the request upstream and copy the answer back."
        conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length")}
        conn.request(h.command, h.path, body=body or None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        conn.close()

    def forwarded(self):
        "Log entries that reached the upstream server."
        return [e for e in self.log if e["outcome"] == "ok" or e["outcome"].startswith("delay")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
