"""`kiln serve` checked with Triton's own clients (tritonclient, HTTP and gRPC) and ONNX Runtime
as the oracle: server and model metadata, inference with JSON, binary tensor data and gRPC on two
real models, requested outputs, 8 concurrent clients, every kind of bad request answered with a
4xx (gRPC: its status code) naming the problem (the server stays up), dynamic batching seen in
/metrics, and SIGTERM."""
import http.client
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("KILN_CACHE", ROOT / ".cache")) / "models"
KILN = ROOT / "target" / "release" / "kiln"
YOLO = MODELS / "yolov8n_320n.onnx"
SQUEEZE = MODELS / "light_squeezenet.onnx"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args):
        for p in (KILN, YOLO, SQUEEZE):
            assert p.exists(), f"{p} is missing: build kiln and run scripts/fetch-data.sh"
        self.port, self.grpc_port = free_port(), free_port()
        # Log lines go to a file: a pipe nobody reads until the end fills up and blocks the
        # server's writes (and with them its workers) once enough requests were logged.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [str(KILN), "serve", "--http-port", str(self.port), "--grpc-port", str(self.grpc_port),
             "--threads", "2", *args],
            stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self.url = f"127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.logged()
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("kiln serve did not become ready")

    def logged(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return self.proc.returncode, self.logged()

    def post(self, path, body, headers=None):
        req = urllib.request.Request(f"http://{self.url}{path}", data=body, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://{self.url}{path}", timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@pytest.fixture(scope="module")
def server():
    s = Server("--model", f"yolov8n={YOLO}", "--model", f"squeezenet={SQUEEZE}",
               "--max-request-bytes", str(8 << 20))
    yield s
    code, err = s.stop()
    assert code == 0, err[-2000:]


def oracle(path, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def close(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.all(np.abs(got - want) <= 1e-4 + 1e-3 * np.abs(want)), np.max(np.abs(got - want))


def test_server_and_model_metadata(server):
    c = httpclient.InferenceServerClient(server.url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("yolov8n") and c.is_model_ready("squeezenet")
    assert not c.is_model_ready("nope")
    meta = c.get_server_metadata()
    assert meta["name"] == "kiln" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata("yolov8n")
    assert m["name"] == "yolov8n" and m["versions"] == ["1"]
    assert m["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    assert m["outputs"][0]["name"] == "output0" and m["outputs"][0]["shape"][:2] == [-1, 22]
    s = c.get_model_metadata("squeezenet")
    assert s["inputs"] == [{"name": "data_0", "datatype": "FP32", "shape": [1, 3, 224, 224]}]
    assert s["outputs"] == [{"name": "softmaxout_1", "datatype": "FP32", "shape": [1, 1000, 1, 1]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model,path,name,shape", [
    ("yolov8n", YOLO, "images", (1, 3, 320, 320)),
    ("squeezenet", SQUEEZE, "data_0", (1, 3, 224, 224)),
], ids=["yolov8n", "squeezenet"])
def test_inference_matches_ort(server, model, path, name, shape, binary):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    want = oracle(path, {name: x})[0]
    c = httpclient.InferenceServerClient(server.url)
    inp = httpclient.InferInput(name, list(shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out_name = c.get_model_metadata(model)["outputs"][0]["name"]
    res = c.infer(model, [inp], outputs=[httpclient.InferRequestedOutput(out_name, binary_data=binary)],
                  request_id="r1")
    close(res.as_numpy(out_name), want)
    assert res.get_response()["id"] == "r1"
    # No outputs named: all of them, as binary data.
    res = c.infer(model, [inp])
    close(res.as_numpy(out_name), want)


def test_grpc_metadata_and_inference(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("yolov8n") and not c.is_model_ready("nope")
    assert c.get_server_metadata().name == "kiln"
    m = c.get_model_metadata("squeezenet")
    assert [(t.name, t.datatype, list(t.shape)) for t in m.inputs] == [("data_0", "FP32", [1, 3, 224, 224])]
    assert [(t.name, t.datatype, list(t.shape)) for t in m.outputs] == [("softmaxout_1", "FP32", [1, 1000, 1, 1])]
    for model, path, name, shape, out in [("yolov8n", YOLO, "images", (1, 3, 320, 320), "output0"),
                                          ("squeezenet", SQUEEZE, "data_0", (1, 3, 224, 224), "softmaxout_1")]:
        x = np.random.default_rng(2).random(shape, dtype=np.float32)
        want = oracle(path, {name: x})[0]
        inp = grpcclient.InferInput(name, list(shape), "FP32")
        inp.set_data_from_numpy(x)
        res = c.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput(out)], request_id="g1")
        close(res.as_numpy(out), want)
        assert res.get_response().id == "g1"
    with pytest.raises(InferenceServerException) as e:
        inp = grpcclient.InferInput("pixels", [1], "FP32")
        inp.set_data_from_numpy(np.zeros(1, np.float32))
        c.infer("squeezenet", [inp])
    assert "INVALID_ARGUMENT" in str(e.value.status()) and "pixels" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("nope")
    assert "NOT_FOUND" in str(e.value.status()) and "nope" in e.value.message()
    assert c.is_server_ready()


def test_concurrent_clients(server):
    x = np.random.default_rng(1).random((1, 3, 320, 320), dtype=np.float32)
    want = oracle(YOLO, {"images": x})[0]
    latencies, errors = [], []
    lock = threading.Lock()

    def client():
        c = httpclient.InferenceServerClient(server.url)
        inp = httpclient.InferInput("images", [1, 3, 320, 320], "FP32")
        inp.set_data_from_numpy(x)
        for _ in range(25):
            t = time.perf_counter()
            try:
                got = c.infer("yolov8n", [inp]).as_numpy("output0")
                close(got, want)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            with lock:
                latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert not errors, errors[:3]
    assert len(latencies) == 200
    q = statistics.quantiles(latencies, n=100)
    print(f"\nyolov8n, 8 clients x 25 requests: {200 / wall:.1f} requests/s, "
          f"p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")


def test_bad_requests_get_4xx_naming_the_problem(server):
    def err(status, body):
        return status, json.loads(body)["error"]

    code, msg = err(*server.post("/v2/models/yolov8n/infer", b"{not json"))
    assert code == 400 and "JSON" in msg
    body = {"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    code, msg = err(*server.post("/v2/models/yolov8n/infer", json.dumps(body).encode()))
    assert code == 400 and "pixels" in msg
    body = {"inputs": [{"name": "images", "shape": [1, 3, 2, 2], "datatype": "INT64", "data": [1] * 12}]}
    code, msg = err(*server.post("/v2/models/yolov8n/infer", json.dumps(body).encode()))
    assert code == 400 and "INT64" in msg
    body = {"inputs": [{"name": "data_0", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.5] * 12}]}
    code, msg = err(*server.post("/v2/models/squeezenet/infer", json.dumps(body).encode()))
    assert code == 400 and "data_0" in msg
    body = {"inputs": [{"name": "data_0", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.5] * 5}]}
    code, msg = err(*server.post("/v2/models/squeezenet/infer", json.dumps(body).encode()))
    assert code == 400 and "12 values" in msg
    body = {"inputs": [{"name": "data_0", "shape": [1, 3, 224, 224], "datatype": "FP32",
                        "parameters": {"binary_data_size": 0}}]}
    code, msg = err(*server.post("/v2/models/squeezenet/infer", json.dumps(body).encode()))
    assert code == 400 and "data_0" in msg
    body = {"inputs": [{"name": "data_0", "shape": [0, 2147483647, 2147483647], "datatype": "FP32", "data": []}]}
    code, msg = err(*server.post("/v2/models/squeezenet/infer", json.dumps(body).encode()))
    assert code == 400 and "too large" in msg
    body = {"inputs": [{"name": "data_0", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.5] * 12}],
            "outputs": [{"name": "softmaxout_1"}, {"name": "softmaxout_1"}]}
    code, msg = err(*server.post("/v2/models/squeezenet/infer", json.dumps(body).encode()))
    assert code == 400 and "twice" in msg
    code, msg = err(*server.post("/v2/models/nope/infer", b"{}"))
    assert code == 404 and "nope" in msg
    code, msg = err(*server.get("/v2/models/nope"))
    assert code == 404 and "nope" in msg
    code, msg = err(*server.post("/v2/models/squeezenet/infer", b"{}", {"Inference-Header-Content-Length": "99"}))
    assert code == 400 and "Inference-Header-Content-Length" in msg
    code, _ = server.post("/v2/models/squeezenet/infer", b"x" * (9 << 20))
    assert code == 413
    c = httpclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="no output"):
        inp = httpclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32))
        c.infer("squeezenet", [inp], outputs=[httpclient.InferRequestedOutput("nothing")])
    assert c.is_server_ready()
    metrics = server.get("/metrics")[1].decode()
    assert 'kiln_inference_failures_total{model="squeezenet",protocol="http"}' in metrics


def test_oversized_bodies_get_413_not_a_reset(server):
    # The server reads a refused body to its end before answering: answering first and closing
    # resets the connection under a client still sending, which then sees a broken pipe.
    def send(body, chunked):
        c = http.client.HTTPConnection(server.url, timeout=30)
        try:
            if chunked:
                c.request("POST", "/v2/models/squeezenet/infer",
                          body=(body[i:i + (1 << 16)] for i in range(0, len(body), 1 << 16)),
                          encode_chunked=True)
            else:
                c.request("POST", "/v2/models/squeezenet/infer", body=body)
            r = c.getresponse()
            return r.status, json.loads(r.read())["error"]
        finally:
            c.close()

    for i in range(12):
        size = (9 << 20) if i % 3 else (40 << 20)
        status, msg = send(b"x" * size, chunked=i % 2 == 1)
        assert status == 413 and "limit" in msg, (i, status, msg)
    assert server.get("/v2/health/ready")[0] == 200


def test_dynamic_batching_happens():
    s = Server("--model", f"yolov8n={YOLO}", "--max-batch", "8", "--batch-delay-ms", "50")
    try:
        xs = [np.random.default_rng(i).random((1, 3, 160, 160), dtype=np.float32) for i in range(8)]
        wants = [oracle(YOLO, {"images": x})[0] for x in xs]
        errors = []

        def one(i):
            try:
                c = httpclient.InferenceServerClient(s.url)
                inp = httpclient.InferInput("images", [1, 3, 160, 160], "FP32")
                inp.set_data_from_numpy(xs[i])
                close(c.infer("yolov8n", [inp]).as_numpy("output0"), wants[i])
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        metrics = s.get("/metrics")[1].decode()
        runs = rows = None
        for line in metrics.splitlines():
            if line.startswith('kiln_inference_batch_size_count{model="yolov8n"}'):
                runs = float(line.split()[-1])
            if line.startswith('kiln_inference_batch_size_sum{model="yolov8n"}'):
                rows = float(line.split()[-1])
        assert rows == 8 and runs is not None and runs < 8, (runs, rows)
    finally:
        code, err = s.stop()
        assert code == 0, err[-2000:]


def test_sigterm_finishes_in_flight_requests():
    s = Server("--model", f"yolov8n={YOLO}")
    x = np.random.default_rng(3).random((1, 3, 640, 640), dtype=np.float32)
    result = {}

    def slow():
        c = httpclient.InferenceServerClient(s.url)
        inp = httpclient.InferInput("images", [1, 3, 640, 640], "FP32")
        inp.set_data_from_numpy(x)
        result["out"] = c.infer("yolov8n", [inp]).as_numpy("output0")

    t = threading.Thread(target=slow)
    t.start()
    # Stop once the request has arrived (it then runs for tens of milliseconds).
    deadline = time.time() + 30
    while time.time() < deadline:
        if 'kiln_inference_requests_total{model="yolov8n",protocol="http"} 1' in s.get("/metrics")[1].decode():
            break
        time.sleep(0.002)
    code, err = s.stop()
    t.join(timeout=60)
    assert code == 0, err[-2000:]
    assert "out" in result and result["out"].shape[:2] == (1, 22)
