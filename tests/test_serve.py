"""``seq2seq.serve``: LibreTranslate's API and the native one answer as the Translator does, concurrent requests share
a batch, and every refusal is one JSON line with its status; live, the real client, SIGTERM's drain and the page."""

import asyncio
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from helpers.runs import SENTENCES, save_tiny_checkpoint
from serve_load import Report, load, start_server
from starlette.requests import Request
from starlette.testclient import TestClient

from seq2seq.api import Translator
from seq2seq.checkpoint import load_checkpoint
from seq2seq.commands.serve import server_parts
from seq2seq.core import translator as core
from seq2seq.errors import SettingsError, UserError
from seq2seq.serving import Batcher, Job, Refused, Result, create_app, read_body
from seq2seq.settings import Limits, ServeSettings, check_command
from seq2seq.settings.presets import composed, decode_preset

PAIR = {"source": "fr", "target": "en"}
JSON = {"Content-Type": "application/json"}
TEXTS = ["Je suis content.", "Il fait froid.", "Nous sommes en retard."]


@pytest.fixture(scope="module")
def attention_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("attention") / "tiny.ckpt", "model.attention=bahdanau")


def serving(checkpoint: Path, decode: str = "greedy", **limits) -> tuple[TestClient, Translator]:
    model = load_checkpoint(checkpoint)
    translator = Translator(model, decode_preset(decode))
    return TestClient(create_app(model, translator, Limits(**limits))), translator


@pytest.fixture
def server(checkpoint):
    client, translator = serving(checkpoint)
    with client:  # runs the lifespan: the batcher
        yield client, translator


def refusal(answer: httpx.Response, status: int) -> str:
    """The error of a refusal, checked to be one JSON line ``{"error": ...}`` with ``status``."""
    assert answer.status_code == status, answer.text
    assert "\n" not in answer.text and list(answer.json()) == ["error"]
    return answer.json()["error"]


def test_translate_answers_in_the_shape_of_q_what_the_translator_gives(server):
    client, translator = server
    expected = translator.translate(TEXTS)
    assert client.post("/translate", json={"q": TEXTS[0], **PAIR}).json() == {"translatedText": expected[0]}
    assert client.post("/translate", json={"q": TEXTS, **PAIR}).json() == {"translatedText": expected}
    form = client.post("/translate", data={"q": TEXTS[1], **PAIR, "format": "text", "api_key": ""})
    assert form.json() == {"translatedText": expected[1]}
    auto = client.post("/translate", json={"q": TEXTS[0], "source": "auto", "target": "eng"}).json()
    assert auto == {"translatedText": expected[0], "detectedLanguage": {"confidence": 100.0, "language": "fr"}}
    autos = client.post("/translate", json={"q": TEXTS[:2], "source": "auto", "target": "en"}).json()
    assert autos["detectedLanguage"] == [{"confidence": 100.0, "language": "fr"}] * 2  # one per sentence
    for empty in ("", None):  # LibreTranslate reads an empty format as text
        answer = client.post("/translate", json={"q": TEXTS[0], **PAIR, "format": empty}).json()
        assert answer == {"translatedText": expected[0]}


def test_languages_names_the_models_pair_as_libretranslate_does(server):
    client, _ = server
    assert client.get("/languages").json() == [
        {"code": "fr", "name": "French", "targets": ["en"]},
        {"code": "en", "name": "English", "targets": []},
    ]


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        ({"json": {"q": "a", "source": "de", "target": "en"}}, 400,
         "source=de target=en: this model translates fr to en only; send source=fr target=en"),
        ({"json": {"q": "a", "source": ["fr"], "target": "en"}}, 400, "source=['fr'] target=en: this model translates"),
        ({"json": {"q": "a", **PAIR, "format": "html"}}, 400, "format=html is not translated here"),
        ({"json": {"source": "fr", "target": "en"}}, 400, "q is required"),
        ({"json": {"q": [1], **PAIR}}, 400, "q is required: the text to translate, a string or a list of strings"),
        ({"json": {"q": ["a"] * 65, **PAIR}}, 413, "q holds 65 sentences, over the server's 64"),
        ({"json": {"q": "a" * 1001, **PAIR}}, 413, "a sentence of q holds 1001 characters, over the server's 1000"),
        ({"content": b"x" * (10 << 20), "headers": {"Content-Type": "application/json"}}, 413,
         "the body is 10485760 bytes, over the server's 1048576"),
        ({"content": b'{"q": ', "headers": {"Content-Type": "application/json"}}, 400, "the body is not JSON"),
        ({"content": b"[1]", "headers": {"Content-Type": "application/json"}}, 400, "the JSON body is not an object"),
        ({"content": b"q=a", "headers": {"Content-Type": "text/plain"}}, 400,
         "Content-Type text/plain is not accepted; send application/json or application/x-www-form-urlencoded"),
        ({"content": b'{"q": "\xe9t\xe9"}', "headers": {"Content-Type": "application/json"}}, 400,
         "the body is not UTF-8 (byte 7)"),
        ({"content": b"q=%E9t%E9&source=fr", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400,
         "the body is not UTF-8"),
        ({"content": b'{"q": "a\\ud800", "source": "fr", "target": "en"}', "headers": JSON}, 400,
         "a sentence of q holds '\\ud800', half of a UTF-16 pair, at character 1; send whole characters"),
        ({"content": b'{"q": "a", "x": NaN}', "headers": JSON}, 400,
         "the body's JSON holds NaN or Infinity, which no key takes; send a JSON object"),
        ({"content": b'{"q": "a", "x": ' + b"9" * 5000 + b"}", "headers": JSON}, 400,
         "the body's JSON holds an integer of over 4,300 digits, which no key takes; send a JSON object"),
        ({"content": b'{"q": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": JSON}, 400,
         "the body's JSON is nested deeper than this server reads; send a flatter object"),
    ],
    ids=["pair", "source list", "html", "no q", "q of numbers", "65 sentences", "1001 characters", "10 MB",
         "malformed JSON", "JSON not an object", "text/plain", "JSON not UTF-8", "form not UTF-8", "lone surrogate",
         "NaN", "5000 digits", "nested 100000 deep"],
)  # fmt: skip
def test_each_bad_translate_request_gets_one_json_error_line_naming_the_fix(server, request_, status, error):
    client, _ = server
    assert refusal(client.post("/translate", **request_), status).startswith(error)


def test_a_body_longer_than_its_content_length_claims_is_refused_once_past_the_limit(checkpoint):
    client, _ = serving(checkpoint, max_body_bytes=100)

    def chunks():
        yield b'{"q": "'
        yield b"a" * 200

    with client:
        error = refusal(client.post("/translate", content=chunks(), headers={"Content-Type": "application/json"}), 413)
    assert error == "the body is over the server's 100 bytes; send less per request"


def test_unknown_routes_and_methods_answer_one_json_error_line(server):
    client, _ = server
    assert refusal(client.get("/nowhere"), 404) == "GET /nowhere: Not Found"
    assert refusal(client.get("/translate"), 405) == "GET /translate: Method Not Allowed"
    assert refusal(client.post("/translate/", json={"q": "a", **PAIR}), 404) == "POST /translate/: Not Found"


def test_what_answers_get_answers_head_as_health_probes_send_it(server):
    client, _ = server
    for path in ("/", "/health", "/ready", "/languages"):
        answer = client.head(path)
        assert answer.status_code == 200 and answer.content == b"", path


def test_a_client_that_leaves_before_its_whole_body_came_is_one_refusal_not_the_servers_failure():
    async def left(message: dict = {"type": "http.disconnect"}) -> dict:  # noqa: B006 (what the server is told)
        return message

    request = Request({"type": "http", "method": "POST", "path": "/translate", "headers": []}, left)
    with pytest.raises(Refused) as refused:
        asyncio.run(read_body(request, 100))
    assert (refused.value.status, str(refused.value)) == (400, "the client left after 0 bytes of its body")


def test_native_endpoint_gives_the_n_best_with_scores_of_the_requests_decode_settings(server, checkpoint):
    client, _ = server
    beam = Translator(load_checkpoint(checkpoint), decode_preset("beam", n_best=3))
    expected = beam.translate_n_best(TEXTS[:2])
    decode = {"strategy": "beam", "beam_size": 5, "length_penalty": 1.0, "n_best": 3}
    answer = client.post("/v1/translate", json={"q": TEXTS[:2], "decode": decode}).json()
    assert [[t["text"] for t in found["n_best"]] for found in answer["translations"]] == [
        [t.text for t in found] for found in expected
    ]
    assert [[t["score"] for t in found["n_best"]] for found in answer["translations"]] == [
        [round(t.score, 4) for t in found] for found in expected
    ]
    assert all(found["attention"] is None for found in answer["translations"])


@pytest.mark.parametrize(
    ("decode", "error"),
    [
        ({"n_best": 2}, "decode.n_best=2 is more than decode.strategy=greedy finds; use decode=beam"),
        ({"strategy": "sampling"}, "decode.strategy='sampling' is not one of ('greedy', 'beam', 'sample')"),
        ({"beam_size": 5}, "decode.beam_size=5 is a beam search setting, but decode.strategy=greedy"),
        ({"strategy": "beam", "beam_size": 17}, "decode.beam_size=17 is over the server's 16"),
        ({"max_length": 10000}, "decode is an object of strategy, beam_size, length_penalty, n_best"),
        ({"beam_size": "five"}, "decode.beam_size='five' is not an integer; send a JSON integer"),
        ({"beam_size": True}, "decode.beam_size=True is not an integer; send a JSON integer"),
        ({"strategy": "beam", "beam_size": 2.0}, "decode.beam_size=2.0 is not an integer; send a JSON integer"),
        # a request's strings are never read as OmegaConf's ${...}: the server's environment stays its own
        ({"strategy": "${oc.env:HOME}"}, "decode.strategy='${oc.env:HOME}' is not one of ('greedy', 'beam', 'sample')"),
        ({"length_penalty": "${oc.env:HOME}"}, "decode.length_penalty='${oc.env:HOME}' is not a number"),
    ],
)
def test_native_decode_settings_are_checked_by_the_command_lines_rules(server, decode, error):
    client, _ = server
    assert refusal(client.post("/v1/translate", json={"q": "a", "decode": decode}), 400).startswith(error)


@pytest.mark.parametrize("server", [decode_preset("beam"), decode_preset("sample", temperature=0.7)])
def test_a_request_naming_another_strategy_starts_from_its_presets_search_settings_not_the_servers(checkpoint, server):
    """decode=beam's beam_size 5, a sampling server's temperature: greedy search would refuse either."""
    model = load_checkpoint(checkpoint)
    client = TestClient(create_app(model, Translator(model, server), Limits()))
    greedy = Translator(model, decode_preset("greedy")).translate(TEXTS)
    with client:
        answer = client.post("/v1/translate", json={"q": TEXTS, "decode": {"strategy": "greedy"}}).json()
    assert [found["n_best"][0]["text"] for found in answer["translations"]] == greedy


def test_native_endpoint_takes_json_only(server):
    client, _ = server
    error = refusal(client.post("/v1/translate", data={"q": "a"}), 400)
    assert error == "Content-Type application/x-www-form-urlencoded is not accepted; send application/json"


def test_native_endpoint_gives_the_attention_of_the_best_translation(attention_checkpoint):
    client, translator = serving(attention_checkpoint)
    with client:
        found = client.post("/v1/translate", json={"q": TEXTS[0], "attention": True}).json()["translations"][0]
    best = translator.translate_n_best([TEXTS[0]])[0][0]
    attention = found["attention"]
    assert attention["source"] == translator.source_tokenizer.id_to_piece(best.source)
    assert attention["target"][-1] == "</s>" and len(attention["target"]) == len(best.tokens) + 1
    assert [len(row) for row in attention["weights"]] == [len(best.source)] * len(attention["target"])
    assert all(sum(row) == pytest.approx(1, abs=1e-3) for row in attention["weights"])


@pytest.fixture
def decoder(monkeypatch) -> SimpleNamespace:
    """The Translator's decoding, each call held until ``release`` is set; ``calls``: each one's strategy and size."""
    held = SimpleNamespace(calls=[], decoding=threading.Event(), release=threading.Event())
    original = core.Translator.translate_n_best  # the base class: the server makes core Translators per setting

    def translate_n_best(self, sentences, *args, **keys):
        held.calls.append((self.decode.strategy, len(sentences)))
        held.decoding.set()
        held.release.wait(10)
        return original(self, sentences, *args, **keys)

    monkeypatch.setattr(core.Translator, "translate_n_best", translate_n_best)
    return held


async def behind_a_held_batch(app, decoder: SimpleNamespace, requests: list[tuple[str, dict]]) -> list:
    """``requests`` sent at once, in this process, while the decoder holds a first one; then let go: their answers
    (a 500 too: the server's error is logged, as uvicorn logs it, not raised here)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://s") as http:
        first = asyncio.create_task(http.post("/translate", json={"q": "a", **PAIR}))
        await asyncio.to_thread(decoder.decoding.wait, 10)
        sent = [asyncio.create_task(http.post(path, json=body)) for path, body in requests]
        await asyncio.sleep(0.1)  # all of them arrive
        decoder.release.set()
        assert (await first).status_code == 200
        return await asyncio.gather(*sent)


def test_requests_that_arrive_while_a_batch_decodes_are_decoded_together_grouped_by_settings(checkpoint, decoder):
    client, translator = serving(checkpoint)
    greedy = [("/translate", {"q": text, **PAIR}) for text in SENTENCES[:8]]
    beam = [("/v1/translate", {"q": text, "decode": {"strategy": "beam", "beam_size": 2}}) for text in SENTENCES[:4]]
    answers = asyncio.run(behind_a_held_batch(client.app, decoder, greedy + beam))
    assert decoder.calls == [("greedy", 1), ("greedy", 8), ("beam", 4)]
    expected = translator.translate(SENTENCES[:8])
    assert [a.json()["translatedText"] for a in answers[:8]] == expected


def test_a_lone_users_requests_do_not_wait_for_company(checkpoint):
    client, _ = serving(checkpoint, batch_wait_ms=5000)
    with client:
        start = time.monotonic()
        for text in TEXTS:
            assert client.post("/translate", json={"q": text, **PAIR}).status_code == 200
    assert time.monotonic() - start < 5  # each would otherwise wait 5 s


def test_after_a_batch_of_several_requests_the_decoder_waits_for_their_next_ones_but_no_longer(checkpoint, decoder):
    client, translator = serving(checkpoint, batch_wait_ms=10_000)
    app, texts = client.app, SENTENCES[:8]

    async def two_rounds() -> tuple[list[str], float]:
        """A batch of 8 requests; then their clients' next 8, half of them 0.3 s late: their answers and the
        seconds they took."""
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s")
        async with app.router.lifespan_context(app), http:
            first = asyncio.create_task(http.post("/translate", json={"q": "a", **PAIR}))
            await asyncio.to_thread(decoder.decoding.wait, 10)
            sent = [asyncio.create_task(http.post("/translate", json={"q": text, **PAIR})) for text in texts]
            await asyncio.sleep(0.1)  # all of them arrive
            decoder.release.set()
            await asyncio.gather(first, *sent)
            start = time.monotonic()
            early = [asyncio.create_task(http.post("/translate", json={"q": text, **PAIR})) for text in texts[:4]]
            await asyncio.sleep(0.3)
            late = [http.post("/translate", json={"q": text, **PAIR}) for text in texts[4:]]
            answers = await asyncio.gather(*early, *late)
            return [answer.json()["translatedText"] for answer in answers], time.monotonic() - start

    translations, seconds = asyncio.run(two_rounds())
    assert decoder.calls == [("greedy", 1), ("greedy", 8), ("greedy", 8)]  # not 4 and 4
    assert seconds < 5  # the wait ended once all 8 were in, not after batch_wait_ms
    assert translations == translator.translate(texts)


def test_a_request_that_fails_to_decode_fails_alone_not_its_batch_mates(checkpoint, decoder, monkeypatch):
    client, translator = serving(checkpoint)
    held = core.Translator.translate_n_best

    def failing(self, sentences, *args, **keys):
        if "boom" in sentences:
            raise RuntimeError("boom")
        return held(self, sentences, *args, **keys)

    monkeypatch.setattr(core.Translator, "translate_n_best", failing)
    requests = [("/translate", {"q": text, **PAIR}) for text in (TEXTS[0], "boom", TEXTS[1])]
    answers = asyncio.run(behind_a_held_batch(client.app, decoder, requests))
    assert [answer.status_code for answer in answers] == [200, 500, 200]
    assert decoder.calls == [("greedy", 1), ("greedy", 1), ("greedy", 1)]  # the batch of 3 failed: each alone
    assert [answers[0].json()["translatedText"], answers[2].json()["translatedText"]] == translator.translate(TEXTS[:2])
    assert refusal(answers[1], 500) == "the server failed to translate (RuntimeError); see its log"


def test_a_request_whose_client_hangs_up_before_its_answer_is_never_decoded(checkpoint, decoder, caplog):
    client, translator = serving(checkpoint)
    app, body = client.app, json.dumps({"q": "b", **PAIR}).encode()
    said = iter([{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}])
    answer: list[dict] = []

    async def receive() -> dict:  # the body, then the hang-up: what an ASGI server tells of a client that left
        return next(said)

    async def send(message: dict) -> None:
        answer.append(message)

    async def hung_up_while_a_batch_decodes() -> httpx.Response:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s")
        async with app.router.lifespan_context(app), http:
            first = asyncio.create_task(http.post("/translate", json={"q": "a", **PAIR}))
            await asyncio.to_thread(decoder.decoding.wait, 10)
            scope = {"type": "http", "method": "POST", "path": "/translate", "query_string": b"", "root_path": "",
                     "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1)}  # fmt: skip
            await app(scope, receive, send)  # answered at once: it no longer waits for the held decoder
            decoder.release.set()
            assert (await first).status_code == 200
            return await http.post("/translate", json={"q": "c", **PAIR})

    with caplog.at_level(logging.INFO, logger="seq2seq.serving"):
        after = asyncio.run(hung_up_while_a_batch_decodes())
    assert decoder.calls == [("greedy", 1), ("greedy", 1)]  # "a", then "c": "b" never
    assert after.json()["translatedText"] == translator.translate(["c"])[0]
    assert (answer[0]["status"], json.loads(answer[1]["body"])) == (499, {"error": "the client left before its answer"})
    assert any(" 499 1 sentences " in record.getMessage() for record in caplog.records)


def test_a_request_that_leaves_before_the_decoder_wakes_for_it_leaves_the_decoder_waiting_for_the_next(checkpoint):
    """The decoder, woken by a request that has left by the time it runs, finds the queue empty: it waits again
    (before, it took from the empty queue and died, and no request was answered after)."""
    model = load_checkpoint(checkpoint)
    batcher = Batcher(model, Translator(model, decode_preset("greedy")), Limits())

    async def arrive_and_leave_then_another() -> Result:
        decoder = asyncio.create_task(batcher.run())
        await asyncio.sleep(0)  # the decoder waits for a request
        gone = Job(["b"], (), False)
        left = asyncio.create_task(batcher.translate(gone))
        await asyncio.sleep(0)  # it has arrived and woken the decoder, which runs after this
        batcher.abandon(gone)
        with pytest.raises(Refused):
            await left
        answer = await asyncio.wait_for(batcher.translate(Job(["c"], (), False)), 10)
        decoder.cancel()
        return answer

    result = asyncio.run(arrive_and_leave_then_another())
    assert [found[0].text for found in result.translations] == Translator(model, decode_preset("greedy")).translate(
        ["c"]
    )
    assert batcher.queued == 0


def test_a_full_queue_answers_503_at_once_and_the_waiting_requests_are_answered(checkpoint, decoder):
    client, _ = serving(checkpoint, max_queued=2)
    requests = [("/translate", {"q": text, **PAIR}) for text in ("b", "c", "d")]
    *answered, refused = asyncio.run(behind_a_held_batch(client.app, decoder, requests))
    assert refusal(refused, 503) == "the server is busy (2 sentences waiting); retry in a moment"
    assert refused.headers["Retry-After"] == "1"
    assert [answer.status_code for answer in answered] == [200, 200]


def test_health_is_live_and_ready_only_while_the_decoder_runs(checkpoint):
    client, _ = serving(checkpoint)
    assert client.get("/health").json() == {"status": "ok"}
    assert refusal(client.get("/ready"), 503) == "not ready: the server is starting or draining"
    with client:
        assert client.get("/ready").json() == {"status": "ready"}


def test_each_request_is_logged_in_one_line_with_its_size_and_latency_but_not_its_text(server, caplog):
    client, _ = server
    with caplog.at_level(logging.INFO, logger="seq2seq.serving"):
        client.post("/translate", json={"q": TEXTS[:2], **PAIR})
    [line] = [r.getMessage() for r in caplog.records if r.name == "seq2seq.serving"]
    assert line.startswith("POST /translate 200 2 sentences ") and line.endswith(" ms")
    assert not any(word in line for word in ("Je", "froid"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seq2seq.serving"):
        client.get("/x%0AINFO seq2seq.serving: POST /translate 200 1 sentences 42 bytes 1.0 ms")
    [line] = [r.getMessage() for r in caplog.records if r.name == "seq2seq.serving"]
    assert line.startswith("GET /x\\nINFO seq2seq.serving: POST") and "\n" not in line  # no line of the client's


def test_the_page_and_everything_it_loads_are_served_by_the_server(server):
    client, _ = server
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'name="viewport"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    assert "http" not in page.text  # no CDN: every address is the server's own


@pytest.mark.slow
def test_the_libretranslate_client_translates_and_lists_the_pair_on_a_live_server(checkpoint, live_server):
    from libretranslatepy import LibreTranslateAPI

    expected = Translator.load(checkpoint).translate(TEXTS)
    client = LibreTranslateAPI(live_server.url + "/")
    assert client.translate(TEXTS[0], "fr", "en") == expected[0]
    assert client.languages()[0]["code"] == "fr"
    listed = httpx.post(live_server.url + "/translate", json={"q": TEXTS, **PAIR}).json()  # a list is sent as JSON
    assert listed == {"translatedText": expected}


@pytest.fixture(scope="module")
def live_server(checkpoint):
    """A live server of the tiny model as ``python -m seq2seq.serve checkpoint=...`` starts it, shared by the tests
    that only send it requests; it must stop with exit status 0."""
    server = start_server(checkpoint)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def busy_server(checkpoint):
    """A live server whose batches each decode 200 steps (the untrained tiny model writes until ``max_length``), with
    room for one request of ``SENTENCES`` waiting behind the batch decoding."""
    server = start_server(checkpoint, f"limits.max_queued={len(SENTENCES)}", "decode.max_length=200", "threads=1")
    yield server
    assert server.stop() == 0


SERVED = re.compile(r"POST /translate (\d+) \d+ sentences \d+ bytes ([\d.]+) ms")


@pytest.mark.slow
def test_a_flood_past_the_queue_limit_is_refused_at_once_and_the_server_answers_the_rest(busy_server):
    body = {"q": SENTENCES, **PAIR}
    expected = httpx.post(busy_server.url + "/translate", json=body, timeout=60).json()
    logged = len(busy_server.log)

    async def flood() -> list[tuple[int, dict, str | None]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=60) as http:

            async def send() -> tuple[int, dict, str | None]:
                answer = await http.post(busy_server.url + "/translate", json=body)
                return answer.status_code, answer.json(), answer.headers.get("Retry-After")

            return await asyncio.gather(*(send() for _ in range(64)))

    answers = asyncio.run(flood())
    answered = [json for status, json, _ in answers if status == 200]
    refused = [(json, retry) for status, json, retry in answers if status == 503]
    assert len(answered) + len(refused) == 64 and answered and refused
    assert all(json == expected for json in answered)
    assert all(json["error"].startswith("the server is busy (") and retry == "1" for json, retry in refused)
    deadline = time.monotonic() + 10  # the server's own times, from its log: one line per request
    while len(lines := [SERVED.search(line) for line in busy_server.log[logged:] if SERVED.search(line)]) < 64:
        assert time.monotonic() < deadline, busy_server.log[logged:]
        time.sleep(0.1)
    milliseconds = {status: [float(match[2]) for match in lines if match[1] == status] for status in ("200", "503")}
    assert max(milliseconds["503"]) < min(milliseconds["200"])  # no refusal waited for a batch to decode
    assert httpx.post(busy_server.url + "/translate", json=body, timeout=60).json() == expected  # still serving


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "content_type", "status", "error"),
    [
        (b"x" * (10 << 20), "application/json", 413, "the body is 10485760 bytes, over the server's 1048576"),
        (b'{"q": ', "application/json", 400, "the body is not JSON"),
        (b"q=a&source=fr&target=en", "text/plain", 400, "Content-Type text/plain is not accepted"),
        ('{"q": "été"}'.encode("latin-1"), "application/json", 400, "the body is not UTF-8"),
    ],
    ids=["10 MB", "malformed JSON", "another content type", "not UTF-8"],
)
def test_a_live_server_answers_each_bad_body_with_one_json_error_line(busy_server, content, content_type, status,
                                                                      error):  # fmt: skip
    answer = httpx.post(busy_server.url + "/translate", content=content, headers={"Content-Type": content_type})
    assert refusal(answer, status).startswith(error)


@pytest.mark.slow
def test_sigterm_answers_the_32_requests_in_flight_cuts_off_a_stalled_client_after_drain_s_and_exits_0(checkpoint):
    texts = SENTENCES[:16] * 2
    expected = Translator.load(checkpoint).translate(texts)
    server = start_server(checkpoint, "limits.drain_s=5")  # the 32 are answered within a fraction of it
    host, port = server.url.removeprefix("http://").split(":")

    async def answer_after_sigterm(text: str, signalled: asyncio.Event) -> tuple[int, dict]:
        """A request whose body is half sent at SIGTERM (so it is in flight), and finished after."""
        body = json.dumps({"q": text, **PAIR}).encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /translate HTTP/1.1\r\nHost: serve\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:5]))  # fmt: skip
        await writer.drain()
        await signalled.wait()
        writer.write(body[5:])
        head, payload = (await asyncio.wait_for(reader.read(), 30)).split(b"\r\n\r\n", 1)  # closed once answered
        writer.close()
        return int(head.split()[1]), json.loads(payload)

    async def in_flight() -> list[tuple[int, dict]]:
        signalled = asyncio.Event()
        sent = [asyncio.create_task(answer_after_sigterm(text, signalled)) for text in texts]
        await asyncio.sleep(1)  # every request's head has arrived, and the stalled client's
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # the server is draining
        signalled.set()
        return await asyncio.gather(*sent)

    with socket.create_connection((host, int(port)), timeout=30) as stalled:
        head = b"POST /translate HTTP/1.1\r\nHost: serve\r\nContent-Type: application/json\r\nContent-Length: 100"
        stalled.sendall(head + b'\r\n\r\n{"q": ')  # and never the rest
        answers = asyncio.run(in_flight())
        assert server.process.wait(20) == 0  # without drain_s: never, while the stalled client stays
    assert answers == [(200, {"translatedText": translation}) for translation in expected]
    assert any("SIGTERM: drained; exiting" in line for line in server.log)
    assert any("timeout graceful shutdown exceeded" in line for line in server.log)  # the stalled client, cut off


@pytest.mark.slow
def test_a_short_load_of_single_sentences_and_of_lists_gets_every_answer_right_and_stops_by_itself(
    checkpoint, live_server
):
    expected = dict(zip(SENTENCES, Translator.load(checkpoint).translate(SENTENCES)))
    reports = [asyncio.run(load(live_server.url, expected, 8, 1.0, ("fr", "en"), live_server.process.pid, per_request))
               for per_request in (1, 3)]  # fmt: skip
    for report in reports:
        assert (report.errors, report.differ) == (0, 0)
        assert len(report.latencies) >= 8 and report.rss_kib  # each client answered, however busy the machine


ANSWERS = {  # what a misbehaving server sends a request, then it hangs up
    "a refusal": b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
    "no HTTP": b"garbage\r\n\r\n",
    "a cut answer": b'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"translatedText"',
    "a wrong answer": b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 23\r\n\r\n{"translatedText":"no"}',
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_the_load_client_counts_every_request_not_answered_right_and_reconnects_after_a_hang_up(answer):
    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1]))  # all read: the close is no reset
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def run() -> Report:
        async with await asyncio.start_server(misbehave, "127.0.0.1", 0) as server:
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            return await load(url, {"Il a froid.": "He is cold."}, 2, 0.3, ("fr", "en"))

    report = asyncio.run(run())
    requests = len(report.latencies) + report.errors
    assert requests >= 4  # each client went on, on a new connection each time
    if answer == ANSWERS["a wrong answer"]:
        assert report.errors == 0 and report.differ == len(report.latencies)
    else:
        assert report.latencies == [] and report.errors == requests


class DevTools:
    """A page of a headless Chromium, driven over the DevTools protocol (the page test's browser)."""

    def __init__(self, websocket_url: str):
        from websockets.sync.client import connect

        self.socket = connect(websocket_url, max_size=None)
        self.ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while (message := json.loads(self.socket.recv(timeout=60))).get("id") != number:
            pass  # an event, not our answer
        assert "error" not in message, message
        return message["result"]

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"the page never had {expression}"
            time.sleep(0.1)
        return value


@contextmanager
def chromium_page(tmp_path: Path) -> Iterator[DevTools]:
    """A blank page of Debian's headless chromium; the test skips, saying why, where there is none."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it): no page test")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0"]
    log = tmp_path / "chromium.log"  # a file, not a pipe: a full pipe would stop the browser
    own_tmp = tempfile.mkdtemp(prefix="chromium-")  # its singleton socket's; a test's tmp_path is too long for one
    with log.open("w") as stderr:
        browser = subprocess.Popen([binary, *flags, f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
                                   stderr=stderr, env={**os.environ, "TMPDIR": own_tmp})  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"ws://[\d.]+:(\d+)/", log.read_text())):
            assert browser.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        port = match[1]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        [page] = [target for target in targets if target["type"] == "page"]
        yield DevTools(page["webSocketDebuggerUrl"])
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(own_tmp)


@pytest.mark.slow
def test_the_page_translates_typed_french_on_a_phone_screen_and_draws_its_attention(attention_checkpoint, tmp_path):
    expected = Translator.load(attention_checkpoint).translate([TEXTS[0]])[0]
    server = start_server(attention_checkpoint)
    try:
        with chromium_page(tmp_path) as page:
            page.send("Emulation.setDeviceMetricsOverride", width=375, height=667, deviceScaleFactor=2, mobile=True)
            page.send("Page.navigate", url=server.url + "/")
            page.wait_for("document.getElementById('pair')?.textContent === 'fr → en'")
            page.evaluate("document.getElementById('source').focus()")
            page.send("Input.insertText", text=TEXTS[0])
            for kind in ("rawKeyDown", "keyUp"):  # Ctrl+Enter: the keyboard's translate
                page.send("Input.dispatchKeyEvent", type=kind, modifiers=2, key="Enter", code="Enter",
                          windowsVirtualKeyCode=13)  # fmt: skip
            translation = page.wait_for("document.getElementById('translation').textContent")
            drawn = page.evaluate(NON_WHITE_PIXELS)
            width = page.evaluate("document.documentElement.scrollWidth")
    finally:
        assert server.stop() == 0
    assert translation == expected
    assert drawn > 0
    assert width <= 375  # nothing wider than the phone's screen


NON_WHITE_PIXELS = """(() => {
  const canvas = document.getElementById("heatmap");
  if (!canvas.width) return 0;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) count += pixels[i] < 250;
  return count;
})()"""


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("port=70000", "port=70000 is not an integer from 0 to 65535 (0: any free port)"),
        ("limits.max_queued=0", "limits.max_queued=0 is not an integer >= 1"),
        ("limits.batch_wait_ms=-1", "limits.batch_wait_ms=-1.0 is not a number >= 0"),
    ],
)
def test_serve_settings_out_of_range_are_refused_in_one_line_before_loading(checkpoint, override, error):
    cfg = composed("serve", f"checkpoint={checkpoint}", override)
    with pytest.raises(SettingsError, match=re.escape(error)):
        check_command(ServeSettings, cfg)


def test_serving_without_the_serve_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(UserError) as raised:
        server_parts()
    assert str(raised.value) == 'serving needs uvicorn, not installed here: pip install -e ".[serve]"'
