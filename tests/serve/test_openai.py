"""`kiln serve --llm` checked with OpenAI's own Python client (`openai`) on the decoder models of
scripts/gen-llm-models.sh: /v1/models; greedy completions equal to `kiln generate` (itself held
to onnxruntime-genai's tokens by tests/python/test_generate.py); streamed chunks that add up to
the whole answer; chat completions through the folder's chat template; stop sequences; seeded
sampling; concurrent requests, each with its own cache, answering as they would alone; bad
requests answered with OpenAI's 4xx errors while the server stays up."""
import concurrent.futures
import subprocess

import openai
import pytest

from test_serve import KILN, ROOT, Server

PROMPTS = ["Ta shou mend pla stai. Grea tol ving", "Chou plea", "stai grea", "mend pla ving tol"]


@pytest.fixture(scope="module")
def llm():
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gen-llm-models.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


class LlmServer(Server):
    def __init__(self, llm):
        super().__init__("--llm", f"fp32={llm}/llama_fp32", "--llm", f"int4={llm}/llama_int4")


@pytest.fixture(scope="module")
def server(llm):
    s = LlmServer(llm)
    yield s
    code, log = s.stop()
    assert code == 0, log[-3000:]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_listed(client):
    assert sorted(m.id for m in client.models.list().data) == ["fp32", "int4"]


def test_greedy_completion_equals_kiln_generate(client, llm):
    r = client.completions.create(model="fp32", prompt=PROMPTS[0], max_tokens=24, temperature=0)
    text = r.choices[0].text
    assert r.usage.completion_tokens == 24 and r.choices[0].finish_reason == "length"
    n = r.usage.prompt_tokens
    cli = subprocess.run([str(KILN), "generate", f"{llm}/llama_fp32", "--prompt", PROMPTS[0], "--greedy",
                          "--threads", "2", "--max-length", str(n + 24)], capture_output=True, text=True, check=True)
    assert text == cli.stdout.rstrip("\n")


def test_stream_adds_up_to_the_whole_answer(client):
    whole = client.completions.create(model="int4", prompt=PROMPTS[1], max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model="int4", prompt=PROMPTS[1], max_tokens=20, temperature=0, stream=True))
    assert len(chunks) > 2
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    chat = list(client.chat.completions.create(model="fp32", messages=[{"role": "user", "content": PROMPTS[2]}],
                                               max_tokens=12, temperature=0, stream=True))
    full = client.chat.completions.create(model="fp32", messages=[{"role": "user", "content": PROMPTS[2]}],
                                          max_tokens=12, temperature=0)
    assert "".join(c.choices[0].delta.content or "" for c in chat) == full.choices[0].message.content
    assert full.choices[0].message.role == "assistant"


def test_chat_uses_the_template(client, llm):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[3]}]
    r = client.chat.completions.create(model="fp32", messages=msgs, max_tokens=16, temperature=0)
    # The folder's chat_template.jinja, rendered by hand.
    rendered = "<|system|>\nBe brief.</s>\n<|user|>\n" + PROMPTS[3] + "</s>\n<|assistant|>\n"
    n = r.usage.prompt_tokens
    cli = subprocess.run([str(KILN), "generate", f"{llm}/llama_fp32", "--prompt", rendered, "--greedy",
                          "--threads", "2", "--max-length", str(n + 16)], capture_output=True, text=True, check=True)
    assert r.choices[0].message.content == cli.stdout.rstrip("\n")


def test_stop_sequences(client):
    whole = client.completions.create(model="fp32", prompt=PROMPTS[0], max_tokens=32, temperature=0).choices[0].text
    stop = whole[10:14]
    cut = whole[:whole.find(stop)]
    for stream in (False, True):
        r = client.completions.create(model="fp32", prompt=PROMPTS[0], max_tokens=32, temperature=0, stop=[stop, "\u2603"],
                                      stream=stream)
        if stream:
            chunks = list(r)
            text, finish = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            text, finish = r.choices[0].text, r.choices[0].finish_reason
        assert (text, finish) == (cut, "stop")


def test_seeded_sampling(client):
    run = lambda seed: client.completions.create(model="fp32", prompt=PROMPTS[1], max_tokens=16, temperature=1.2,  # noqa: E731
                                                 top_p=0.95, seed=seed).choices[0].text
    assert run(11) == run(11)
    assert run(11) != run(12)


def test_concurrent_requests_answer_as_alone(client):
    def ask(p):
        return client.completions.create(model="int4", prompt=p, max_tokens=24, temperature=0).choices[0].text
    alone = [ask(p) for p in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        together = list(ex.map(ask, PROMPTS * 2))
    assert together == alone * 2


def test_bad_requests(client, server):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    for kwargs, param in [({"n": 2}, "n"), ({"max_tokens": 5000}, "max_tokens"), ({"temperature": 3.0}, "temperature"),
                          ({"top_p": 0.0}, "top_p"), ({"logprobs": 2}, "logprobs"), ({"max_tokens": -1}, "max_tokens"),
                          ({"stop": ["a", "b", "c", "d", "e"]}, "stop")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="fp32", prompt="x", **dict({"max_tokens": 2}, **kwargs))
        assert e.value.body["param"] == param, (kwargs, e.value.body)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="fp32", messages=[], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model="fp32", messages=[{"content": "x"}], max_tokens=2)
    status, body = server.post("/v1/completions", b"{not json")
    assert status == 400 and b"not JSON" in body
    # Still serving.
    assert client.completions.create(model="fp32", prompt="x", max_tokens=2, temperature=0).usage.completion_tokens == 2
