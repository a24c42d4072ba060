"""``adaptlab serve`` answers the official ``openai`` client (chat, streaming) and httpx (classify, score) with
what the runs answer through adaptlab's own API; bad requests get a 4xx JSON error naming the field."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

import adaptlab

from ..conftest import toy_rows, toy_translations
from ..tasks.test_preference import toy_pairs

PROMPTS = [r["prompt"] for r in toy_translations(24, seed=5)]


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def expected(runs) -> list[str]:
    """``adaptlab generate``'s answers (greedy, the run's 8 tokens) from a separately loaded copy of the run."""
    out = adaptlab.load(runs["policy"]).generate(PROMPTS)
    assert len(set(out)) > len(out) // 2, "answers that differ by prompt, so that a mix-up in a batch would show"
    return out


def test_models_are_the_runs_by_folder_name_with_what_each_answers(client, server):
    assert sorted(m.id for m in client.models.list()) == ["policy", "rm", "sentiment"]
    kinds = {m["id"]: (m["kind"], m["strategy"]) for m in httpx.get(f"{server}/v1/models").json()["data"]}
    assert kinds == {"policy": ("chat", "lora"), "sentiment": ("classify", "lora"), "rm": ("score", "reward_model")}
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_chat_answers_are_adaptlab_generates_greedy_answers(client, expected):
    answers = [client.chat.completions.create(model="policy", messages=[{"role": "user", "content": p}]) for p in PROMPTS[:6]]
    assert [a.choices[0].message.content for a in answers] == expected[:6]
    assert any(expected[:6]), "the tiny policy answers something"
    first = answers[0]
    assert first.choices[0].finish_reason in ("stop", "length") and first.usage.completion_tokens <= 8
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens > 0


def test_max_tokens_and_stop_strings_cut_the_answer(client, expected):
    prompt, full = next((p, e) for p, e in zip(PROMPTS, expected) if len(e.split()) >= 2)
    one = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": prompt}], max_tokens=1, temperature=0)
    assert one.choices[0].finish_reason == "length" and one.usage.completion_tokens == 1 and full.startswith(one.choices[0].message.content)
    word = full.split()[1]
    cut = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": prompt}], stop=[word])
    assert cut.choices[0].message.content == full[: full.index(word)] and cut.choices[0].finish_reason == "stop"


def test_streamed_answers_are_the_same_text(client, expected):
    for prompt, answer in list(zip(PROMPTS, expected))[:4]:
        chunks = list(client.chat.completions.create(model="policy", messages=[{"role": "user", "content": prompt}], stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_sampling_is_seeded_and_differs_from_greedy(client):
    ask = {"model": "policy", "messages": [{"role": "user", "content": PROMPTS[0]}], "temperature": 1.5, "seed": 3, "max_tokens": 8}
    first, again = (client.chat.completions.create(**ask).choices[0].message.content for _ in range(2))
    assert first == again
    others = {client.chat.completions.create(**{**ask, "seed": s}).choices[0].message.content for s in range(6)}
    assert len(others) > 1


def test_classify_and_score_answer_what_the_runs_answer(server, runs):
    texts = [r["text"] for r in toy_rows(10, seed=3)]
    body = httpx.post(f"{server}/v1/classify", json={"model": "sentiment", "input": texts}).json()
    expected = adaptlab.load(runs["sentiment"]).predict(texts)
    assert [d["label"] for d in body["data"]] == [p.label for p in expected]
    for served, local in zip(body["data"], expected):
        assert served["probs"] == pytest.approx(local.probs, abs=1e-5)
    pairs = toy_pairs(6, seed=9)
    prompts, responses = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    scores = httpx.post(f"{server}/v1/score", json={"model": "rm", "prompt": prompts, "response": responses}).json()["data"]
    assert [s["score"] for s in scores] == pytest.approx(adaptlab.load(runs["rm"]).score(prompts, responses), abs=1e-4)


CHAT = {"model": "policy", "messages": [{"role": "user", "content": "translate : good film"}]}


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/chat/completions", {"model": "policy"}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "model": "nobody"}, 404, "model"),
    ("/v1/chat/completions", {**CHAT, "model": "sentiment"}, 400, "model"),
    ("/v1/chat/completions", {**CHAT, "temperature": 7}, 400, "temperature"),
    ("/v1/chat/completions", {**CHAT, "n": 3}, 400, "n"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": 4000}, 400, "messages"),  # more than the model's context
    ("/v1/chat/completions", {**CHAT, "tools": [{"type": "function"}]}, 400, None),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}, 400, None),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ("/v1/classify", {"model": "sentiment", "input": []}, 400, None),
    ("/v1/classify", {"model": "sentiment", "input": ["a"], "input_pair": ["b"]}, 400, "input_pair"),
    ("/v1/classify", {"model": "policy", "input": "a"}, 400, "model"),
    ("/v1/score", {"model": "rm", "prompt": ["a", "b"], "response": ["x", "y", "z"]}, 400, None),
    ("/v1/score", {"model": "rm", "prompt": "a"}, 400, "response"),
    ("/v1/nothing", {}, 404, None),
])
def test_bad_requests_get_a_4xx_json_error_naming_the_field(server, path, body, status, param):
    reply = httpx.post(f"{server}{path}", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["message"] and "Traceback" not in error["message"] and error["param"] == param


def test_a_body_that_is_not_json_is_a_400(server):
    reply = httpx.post(f"{server}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]["message"]


def test_the_openai_client_raises_its_own_errors(client):
    with pytest.raises(NotFoundError, match="not served"):
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(BadRequestError, match="it answers /v1/classify"):
        client.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": "hi"}])


def test_200_requests_from_16_clients_all_answered_in_batches(client, server, expected):
    """Every request answered, each answer the one ``adaptlab generate`` gives its prompt, fewer batches than
    requests (the server batched concurrent requests)."""
    before = httpx.get(f"{server}/health").json()["batches"]
    jobs = [i % len(PROMPTS) for i in range(200)]

    def ask(i: int) -> str:
        reply = client.chat.completions.create(model="policy", messages=[{"role": "user", "content": PROMPTS[i]}])
        return reply.choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, jobs))
    assert answers == [expected[i] for i in jobs]
    batches = httpx.get(f"{server}/health").json()["batches"] - before
    assert batches < 100, f"{batches} batches for 200 concurrent requests: nothing was batched"


def test_the_stream_is_server_sent_events_ending_in_done(server):
    with httpx.stream("POST", f"{server}/v1/chat/completions", json={**CHAT, "stream": True}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in reply.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_serve_refuses_a_taken_port_and_a_bad_folder_in_one_line(cli, runs, server):
    port = server.rsplit(":", 1)[1]
    code, _, err = cli("serve", str(runs["policy"]), "--port", port)
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1:") and "choose another --port" in err
    assert err.count("\n") == 1
    code, _, err = cli("serve", str(runs["policy"]), str(runs["policy"].parent / "missing"))
    assert code == 2 and err.strip() == f"error: run folder not found: {runs['policy'].parent / 'missing'}"
