"""A bounded request fuzzer for `kiln serve`: random bytes, mutated JSON requests (datatypes,
shapes, data of the wrong length, kind or nesting, missing and unknown fields, huge declared
sizes, requested outputs), binary tensor data with lying headers, truncated bodies, random paths
and methods, and many connections at once. Every well-formed HTTP request must get an answer,
200 only for a request that is valid, otherwise a 4xx naming the problem (a 5xx only for a
kernel's own failure); the server stays up, answers a valid request right afterwards (against
ONNX Runtime), and its memory does not grow from one fuzzing round to the next.

`KILN_FUZZ_REQUESTS` sets the requests per round (default 400, three rounds, CI); run this
file directly with `--requests N --rounds R --seed S` for longer hunts.
"""
import http.client
import json
import os
import random
import socket
import struct
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_serve import SQUEEZE, YOLO, Server, close, oracle  # noqa: E402

DTYPES = ["FP32", "FP16", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
          "UINT64", "BOOL", "BYTES", "BF16", "fp32", "", "FP128", None, 7]
MODELS = {"yolov8n": ("images", [1, 3, 32, 32]), "squeezenet": ("data_0", [1, 3, 224, 224])}
ALLOWED = {200, 400, 404, 405, 411, 413, 415, 422, 500, 503}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def valid_request(rng, model):
    name, shape = MODELS[model]
    if model == "yolov8n":
        shape = [1, 3, 32 * rng.randint(1, 2), 32 * rng.randint(1, 2)]
    n = int(np.prod(shape))
    return {"inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                        "data": [round(rng.random(), 3) for _ in range(n)]}]}


def weird_value(rng):
    return rng.choice([None, True, -1, 0, 2 ** 31, 2 ** 63, -(2 ** 63), 1e308, float("nan"), "x", "",
                       [], {}, [[1, 2], [3]], {"a": 1}, "9" * 400, [None], 3.5])


def mutate(rng, req):
    """One to three random changes to a request object (in place; returns it)."""
    inp = req["inputs"][0] if req.get("inputs") else {}
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(16)
        if k == 0:
            inp["datatype"] = rng.choice(DTYPES)
        elif k == 1:
            inp["shape"] = [rng.choice([0, 1, 3, -1, -7, 2 ** 31, 2 ** 40, 2 ** 62, 10 ** 6])
                            for _ in range(rng.randint(0, 9))]
        elif k == 2 and isinstance(inp.get("data"), list):
            d = inp["data"]
            inp["data"] = d[: rng.randint(0, len(d))] if rng.random() < 0.5 else d + d[: rng.randint(1, 50)]
        elif k == 3:
            inp["data"] = weird_value(rng)
        elif k == 4 and isinstance(inp.get("data"), list) and inp["data"]:
            inp["data"][rng.randrange(len(inp["data"]))] = weird_value(rng)
        elif k == 5:
            inp.pop(rng.choice(["name", "shape", "datatype", "data"]), None)
        elif k == 6:
            inp["name"] = rng.choice(["", "nope", "images", "data_0", "x" * 3000, 5, None])
        elif k == 7:
            req["outputs"] = [{"name": rng.choice(["output0", "softmaxout_1", "nope", "", None])}
                              for _ in range(rng.randint(0, 3))]
        elif k == 8:
            inp["parameters"] = {"binary_data_size": weird_value(rng)}
        elif k == 9 and isinstance(req.get("inputs"), list):
            req["inputs"] = req["inputs"] * rng.randint(0, 3)
        elif k == 10:
            req[rng.choice(["id", "parameters", "unknown"])] = weird_value(rng)
        elif k == 11 and isinstance(inp.get("data"), list):
            # Nested as rows, as the protocol allows, sometimes ragged.
            d = inp["data"]
            cut = max(1, len(d) // 3)
            inp["data"] = [d[i:i + cut] for i in range(0, len(d), cut)]
        elif k == 12:
            req["inputs"] = weird_value(rng)
        elif k == 13:
            req["parameters"] = {"binary_data_output": weird_value(rng)}
        elif k == 14 and isinstance(inp.get("shape"), list):
            inp["shape"] = list(reversed(inp["shape"]))
        else:
            inp["datatype"] = rng.choice(["FP16", "FP64", "INT64", "UINT8", "BOOL"])
    return req


def binary_request(rng, model):
    """JSON header + raw tensor bytes, with the header length or the sizes sometimes lying."""
    name, shape = MODELS[model]
    if model == "yolov8n":
        shape = [1, 3, 32, 32]
    raw = np.random.default_rng(rng.randrange(1 << 30)).random(shape, dtype=np.float32).tobytes()
    size = len(raw)
    lie = rng.randrange(8)
    if lie == 1:
        size = rng.choice([0, 1, size - 4, size + 4, 2 ** 40, -5])
    elif lie == 2:
        raw = raw[: rng.randrange(len(raw))]
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": rng.choice(["FP32", "FP32", "INT8", "FP16"]),
                                     "parameters": {"binary_data_size": size}}],
                         "parameters": {"binary_data_output": rng.random() < 0.5}}).encode()
    hlen = str(len(header))
    if lie == 3:
        hlen = rng.choice(["-1", "0", "abc", str(len(header) + len(raw) + 10), "99999999999999999999", ""])
    elif lie == 4:
        header = header[: rng.randrange(len(header))]
    body = header + raw
    if lie == 5:
        body = body[: rng.randrange(len(body) + 1)]
    return body, {"Inference-Header-Content-Length": hlen, "Content-Type": "application/octet-stream"}


def one_request(server, rng, stats):
    """Sends one fuzzed request; returns (kind, status) or raises on a protocol violation."""
    model = rng.choice(list(MODELS))
    kind = rng.randrange(10)
    path = f"/v2/models/{model}/infer"
    headers = {"Content-Type": "application/json"}
    method = "POST"
    if kind == 0:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    elif kind in (1, 2, 3, 4):
        req = mutate(rng, valid_request(rng, model))
        body = json.dumps(req, allow_nan=True).encode()
        if rng.random() < 0.1:
            body = body[: rng.randrange(len(body) + 1)]
    elif kind in (5, 6):
        body, headers = binary_request(rng, model)
    elif kind == 7:
        body = json.dumps(valid_request(rng, model)).encode()
    elif kind == 8:
        method = rng.choice(["GET", "PUT", "DELETE", "POST", "PATCH"])
        path = rng.choice(["/v2", "/v2/models/nope/infer", "/v2/models/yolov8n/versions/7/infer",
                           "/v2/models/%ff/infer", "/v2/models//infer", "/" + "a/" * 200, "/metrics",
                           f"/v2/models/{model}", f"/v2/models/{model}/ready", "/v2/health/live"])
        body = b"{}"
    else:
        # A valid request with a huge body: over --max-request-bytes.
        body = b'{"inputs": [' + b" " * (9 << 20) + b"]}"
    try:
        status, data = send(server, method, path, body, headers)
    except (OSError, http.client.HTTPException) as e:
        raise AssertionError(f"kind {kind}: no answer ({e!r}) to {method} {path} {body[:200]!r}")
    if status not in ALLOWED:
        raise AssertionError(f"kind {kind}: status {status} for {body[:200]!r}")
    if status == 500:
        stats["500"] = stats.get("500", 0) + 1
    if status >= 400 and method == "POST" and path.endswith("/infer"):
        # Errors are JSON {"error": ...} naming the problem, 413 included.
        try:
            msg = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            raise AssertionError(f"kind {kind}: status {status} without a JSON error: {data[:300]!r} "
                                 f"for {body[:200]!r}")
        assert isinstance(msg, str) and msg, data[:200]
    if kind == 7:
        assert status == 200, data[:300]
    stats[kind] = stats.get(kind, 0) + 1
    return status


def send(server, method, path, body, headers):
    """One HTTP/1.1 request on its own connection; (status, body). A server may answer before
    reading all of a body it refuses (413) and close: the answer is read even when sending the
    rest failed."""
    host, port = server.url.split(":")
    head = f"{method} {path} HTTP/1.1\r\nHost: {server.url}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        try:
            sock.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        return resp.status, resp.read()


def truncated(server, rng):
    """A request whose body stops short of its Content-Length, then the socket closes."""
    host, port = server.url.split(":")
    body = json.dumps(valid_request(rng, "yolov8n")).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = (f"POST /v2/models/yolov8n/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body) + rng.randint(1, 5000)}\r\n\r\n").encode()
        s.sendall(head + body[: rng.randrange(len(body))])
        if rng.random() < 0.5:
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            try:
                s.recv(1 << 16)
            except OSError:
                pass


def fuzz_round(server, seed, n, workers=8):
    stats = {}
    errors = []
    lock = threading.Lock()
    counter = iter(range(n))

    def work(w):
        rng = random.Random(seed * 1000 + w)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                if rng.random() < 0.05:
                    truncated(server, rng)
                else:
                    one_request(server, rng, stats)
            except (AssertionError, json.JSONDecodeError, KeyError, TypeError) as e:
                errors.append(f"request {i}: {e}")
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"request {i}: no answer: {e!r}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, errors


def check_alive_and_right(server):
    code, body = server.get("/v2/health/ready")
    assert code == 200
    x = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    req = {"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    code, body = server.post("/v2/models/yolov8n/infer", json.dumps(req).encode(), {"Content-Type": "application/json"})
    assert code == 200, body[:300]
    out = json.loads(body)["outputs"][0]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    close(got, oracle(YOLO, {"images": x})[0])


def run(n, seed, rounds=2, log=print):
    s = Server("--model", f"yolov8n={YOLO}", "--model", f"squeezenet={SQUEEZE}",
               "--max-request-bytes", str(8 << 20))
    try:
        t0 = time.time()
        fuzz_round(server=s, seed=seed, n=min(n, 200))  # warm the allocator's pools
        rss = []
        total_stats, total_errors = {}, []
        for r in range(rounds):
            stats, errors = fuzz_round(s, seed + 1 + r, n)
            for k, v in stats.items():
                total_stats[k] = total_stats.get(k, 0) + v
            total_errors += errors
            rss.append(rss_kib(s.proc.pid))
            check_alive_and_right(s)
        log(f"server fuzz: {rounds * n} requests in {time.time() - t0:.0f} s, answered by kind "
            f"{sorted(total_stats.items(), key=str)}, RSS after each round {[r // 1024 for r in rss]} MiB")
        assert not total_errors, "\n".join(total_errors[:20])
        # The allocator keeps freed blocks for reuse, so the first rounds may grow; a leak keeps
        # growing by the same amount every round.
        assert rss[-1] - rss[-2] < 64 * 1024, f"memory grew from {rss[-2]} to {rss[-1]} KiB over the last round"
    finally:
        code, err = s.stop()
    assert code == 0, err[-2000:]


def test_fuzzed_requests_are_answered_and_the_server_survives():
    n = int(os.environ.get("KILN_FUZZ_REQUESTS", "400"))
    run(n, seed=int(os.environ.get("KILN_FUZZ_SEED", "1")), rounds=3)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2500, help="per round")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    run(a.requests, a.seed, a.rounds)
