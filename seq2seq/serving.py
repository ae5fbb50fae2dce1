"""An HTTP translation server: LibreTranslate's API for the clients that speak it, a native endpoint with what the
Python API gives (n-best, scores, decode settings, attention), and a page to try it.

Concurrent requests are gathered into one ``Translator`` call (``Batcher``), so throughput under load approaches
batched decoding. Starlette routes and uvicorn serves (FastAPI's request handling, which nothing here uses, doubled the
event loop's time per request); the batcher is hand-written because LitServe batches whole requests in worker
processes, where a request here holds a list of sentences (docs/serving.md says more).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seq2seq.core.translator import Translation, TranslationModel, Translator
from seq2seq.errors import UserError
from seq2seq.settings import STRATEGIES, DecodeSettings, read
from seq2seq.settings.presets import preset
from seq2seq.settings.serve import Limits
from seq2seq.vocab import EOS

log = logging.getLogger(__name__)

STATIC = files("seq2seq") / "static"

# ISO 639-3 (the corpus's codes) to the ISO 639-1 codes and names LibreTranslate's clients send and show
LANGUAGES = {
    "ara": ("ar", "Arabic"), "deu": ("de", "German"), "eng": ("en", "English"), "fra": ("fr", "French"),
    "ita": ("it", "Italian"), "jpn": ("ja", "Japanese"), "nld": ("nl", "Dutch"), "por": ("pt", "Portuguese"),
    "rus": ("ru", "Russian"), "spa": ("es", "Spanish"), "tur": ("tr", "Turkish"), "ukr": ("uk", "Ukrainian"),
}  # fmt: skip

# the search keys a request may set: the rest (lengths, batching) are the server's, so no request can make the
# decoder run unbounded
REQUEST_DECODE_KEYS = ("strategy", "beam_size", "length_penalty", "n_best")
INTEGER_KEYS = {each.name for each in fields(DecodeSettings) if each.type == "int"}  # as DecodeSettings types them
SERVER_DECODE_KEYS = ("max_length", "min_length", "prefix", "batch_size", "batch_tokens", "sync_every")


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One request's sentences, waiting for the decoder."""

    sentences: list[str]
    decode: tuple[tuple[str, Any], ...]  # requests with equal settings share a batch
    attention: bool
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class Result:
    translations: list[list[Translation]]
    attention: list[torch.Tensor | None]


class Batcher:
    """Gathers waiting requests of the same decode settings into one ``Translator`` call, in a worker thread (so
    the server keeps answering), one batch at a time: while a batch decodes, the next one gathers.
    """

    def __init__(self, model: TranslationModel, base: Translator, limits: Limits):
        self.model, self.base, self.limits = model, base, limits
        self.waiting: deque[Job] = deque()
        self.queued = 0  # sentences in ``waiting``
        self.arrived = asyncio.Event()
        self.returning = 0  # the last batch's sentences if it held several requests: their clients' next ones

    @lru_cache(maxsize=16)  # noqa: B019 (one batcher per server, alive as long as it)
    def translator(self, decode: tuple[tuple[str, Any], ...]) -> Translator:
        """The base translator with a request's search settings: the same (possibly quantized) model."""
        if not decode:
            return self.base
        settings = OmegaConf.merge(self.base.decode, dict(decode))
        return Translator(replace(self.model, model=self.base.model), settings)

    async def translate(self, job: Job) -> Result:
        if self.queued + len(job.sentences) > self.limits.max_queued:
            raise Refused(503, f"the server is busy ({self.queued} sentences waiting); retry in a moment")
        self.waiting.append(job)
        self.queued += len(job.sentences)
        self.arrived.set()
        return await job.done

    def abandon(self, job: Job) -> None:
        """``job``'s client hung up before its answer: out of the queue, its sentences are never decoded (clients
        that give up would otherwise keep the decoder busy for no one); already decoding, its answer is dropped."""
        if not job.done.done():
            job.done.set_exception(Refused(499, "the client left before its answer"))  # nginx's "closed request"
        for index, waiting in enumerate(self.waiting):
            if waiting is job:
                del self.waiting[index]
                self.queued -= len(job.sentences)
                return

    def _take(self) -> list[Job]:
        """The first waiting job and the later ones of its settings, up to ``decode.batch_size`` sentences."""
        first = self.waiting.popleft()
        taken, size, kept = [first], len(first.sentences), deque()
        while self.waiting:
            job = self.waiting.popleft()
            if job.decode == first.decode and size + len(job.sentences) <= self.base.settings.batch_size:
                taken.append(job)
                size += len(job.sentences)
            else:
                kept.append(job)
        self.waiting = kept
        self.queued -= size
        return taken

    def _decode(self, jobs: list[Job]) -> list[Result]:
        translator = self.translator(jobs[0].decode)
        texts = [text for job in jobs for text in job.sentences]
        found = translator.translate_n_best(texts, attention=any(job.attention for job in jobs))  # what search read
        results = []
        for job in jobs:
            mine, found = found[: len(job.sentences)], found[len(job.sentences) :]
            results.append(Result(mine, [best[0].attention if job.attention else None for best in mine]))
        return results

    async def _gather(self, expected: int, decoded: float) -> None:
        """Wait until ``expected`` sentences wait, for ``batch_wait_ms`` or a quarter of the last batch's decoding
        (``decoded`` seconds), whichever is longer: on a busy machine clients come back as slowly as it decodes.
        Called once a batch of several requests is decoded: their clients, just answered, are sending their next
        ones, which taken as they come would split into a batch of the first few and one of the rest, each paying a
        whole decode's fixed cost (its steps), which is more than the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.limits.batch_wait_ms / 1000, decoded / 4)
        while self.queued < expected and (left := deadline - loop.time()) > 0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    async def _answer(self, jobs: list[Job], decoder: ThreadPoolExecutor) -> None:
        """Decode ``jobs`` together and answer each; if that fails, each alone, so that only a request that fails
        by itself is answered 500 (with the error) and the decoder goes on."""
        try:
            results = await asyncio.get_running_loop().run_in_executor(decoder, self._decode, jobs)
        except Exception as error:
            if len(jobs) > 1:
                for job in jobs:
                    if not job.done.done():  # not a client that went away
                        await self._answer([job], decoder)
                return
            results = [error]
        for job, result in zip(jobs, results):
            if job.done.done():  # a client that went away
                continue
            if isinstance(result, Exception):
                job.done.set_exception(result)
            else:
                job.done.set_result(result)

    async def run(self) -> None:
        # one thread decodes, batch after batch: torch's intra-op threads (one OpenMP team) serve that thread only
        decoder, loop, decoded = ThreadPoolExecutor(1, thread_name_prefix="decoder"), asyncio.get_running_loop(), 0.0
        try:
            while True:
                if self.returning:  # not after a lone request: a lone user's next request would only wait
                    await self._gather(min(self.queued + self.returning, self.base.settings.batch_size), decoded)
                while not self.waiting:  # a request may leave (``abandon``) between its arrival and this
                    self.arrived.clear()
                    await self.arrived.wait()
                jobs = self._take()
                self.returning = sum(len(job.sentences) for job in jobs) if len(jobs) > 1 else 0
                start = loop.time()
                await self._answer(jobs, decoder)
                decoded = loop.time() - start
        finally:
            decoder.shutdown(wait=False)


class RequestLog:
    """One log line per request: what it asked, its size, how it was answered and how long it took (never its
    text). Plain ASGI: Starlette's ``BaseHTTPMiddleware`` would add a task per request, a lone user's wait."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            size = dict(scope["headers"]).get(b"content-length", b"0").decode("latin-1")
            sentences = scope.setdefault("state", {}).get("sentences", 0)
            path = repr(scope["path"])[1:-1]  # a line break in the path would start a line of the client's writing
            log.info("%s %s %d %d sentences %s bytes %.1f ms", scope["method"], path, status, sentences, size,
                     1000 * (time.perf_counter() - start))  # fmt: skip


def language(code: str) -> tuple[str, str]:
    """A corpus's language code as LibreTranslate's (ISO 639-1) and its name; an unknown one as itself."""
    return LANGUAGES.get(code, (code, code))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is longer than ``limit``, whatever its ``Content-Length`` says."""
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"the body is {declared} bytes, over the server's {limit}; send less per request")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"the body is over the server's {limit} bytes; send less per request")
    except ClientDisconnect as error:  # answered to no one, but logged as a refusal, not as the server's failure
        raise Refused(400, f"the client left after {len(body)} bytes of its body") from error
    return bytes(body)


def not_json(constant: str) -> None:
    """``json.loads`` reads NaN and Infinity, which JSON has not: no setting or text takes them."""
    raise ValueError(f"{constant} is not JSON")


async def parameters(request: Request, limit: int, form: bool = True) -> dict[str, Any]:
    """A JSON object body, or (as LibreTranslate takes) a form-encoded one: a repeated form field is a list."""
    body = await read_body(request, limit)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            values = json.loads(body.decode("utf-8"), parse_constant=not_json)
            if not isinstance(values, dict):
                raise Refused(400, 'the JSON body is not an object; send {"q": ..., ...}')
            return values
        if form and kind == "application/x-www-form-urlencoded":
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
            return {key: values[0] if len(values) == 1 else values for key, values in fields.items()}
    except UnicodeDecodeError as error:
        raise Refused(400, f"the body is not UTF-8 (byte {error.start}); encode the text as UTF-8") from error
    except json.JSONDecodeError as error:
        raise Refused(400, f"the body is not JSON ({error.msg}, character {error.pos}); send a JSON object") from error
    except RecursionError as error:
        raise Refused(400, "the body's JSON is nested deeper than this server reads; send a flatter object") from error
    except ValueError as error:  # NaN or Infinity, an integer of thousands of digits
        what = "NaN or Infinity" if "is not JSON" in str(error) else "an integer of over 4,300 digits"
        raise Refused(400, f"the body's JSON holds {what}, which no key takes; send a JSON object") from error
    accepted = "application/json" + (" or application/x-www-form-urlencoded" if form else "")
    raise Refused(400, f"Content-Type {kind or 'none'} is not accepted; send {accepted}")


def sentences(values: Mapping[str, Any], limits: Limits) -> tuple[list[str], bool]:
    """``q`` as a list of stripped sentences (as ``translate`` reads lines), and whether it was one string."""
    q = values.get("q")
    single = isinstance(q, str)
    if not single and not (isinstance(q, list) and all(isinstance(text, str) for text in q)):
        raise Refused(400, "q is required: the text to translate, a string or a list of strings")
    texts = [q] if single else q
    if len(texts) > limits.max_sentences:
        raise Refused(413, f"q holds {len(texts)} sentences, over the server's {limits.max_sentences}; split it")
    if (longest := max(map(len, texts), default=0)) > limits.max_chars:
        raise Refused(413, f"a sentence of q holds {longest} characters, over the server's {limits.max_chars}; "
                           "split it")  # fmt: skip
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # JSON's "\ud800": a half of a character, which no tokenizer reads
            raise Refused(400, f"a sentence of q holds {text[error.start]!r}, half of a UTF-16 pair, at character "
                               f"{error.start}; send whole characters") from error  # fmt: skip
    return [text.strip() for text in texts], single


def request_decode(values: Any, limits: Limits, base: DictConfig) -> tuple[tuple[str, Any], ...]:
    """A request's ``decode`` object, checked by the command line's rules (``DecodeSettings``' rules) on top of the
    server's settings; as a key that groups requests by their settings."""
    if values is None:
        return ()
    if not isinstance(values, dict) or not set(values) <= set(REQUEST_DECODE_KEYS):
        raise Refused(400, f"decode is an object of {', '.join(REQUEST_DECODE_KEYS)}; the rest are the server's")
    for key, value in values.items():  # literal values only: a string is never read as ${...}, OmegaConf's
        if key == "strategy" and value not in STRATEGIES:
            raise Refused(400, f"decode.strategy={value!r} is not one of {STRATEGIES}")
        number = int if key in INTEGER_KEYS else int | float
        if key != "strategy" and (isinstance(value, bool) or not isinstance(value, number)):
            kind = "an integer" if key in INTEGER_KEYS else "a number"
            raise Refused(400, f"decode.{key}={value!r} is not {kind}; send a JSON {kind.split()[-1]}")
    strategy = values.get("strategy", base.strategy)
    try:  # another strategy starts from its preset's search settings (not the server's ``decode=beam`` beam_size,
        # nor its sampling temperature), the server's lengths and batching kept
        search = {key: value for key, value in preset(strategy).items() if key not in SERVER_DECODE_KEYS}
        merged = OmegaConf.merge(base, search if strategy != base.strategy else {}, values)
        read(DecodeSettings, merged, "decode")
    except (OmegaConfBaseException, ValueError, UserError) as error:
        raise Refused(400, str(error).splitlines()[0]) from error
    if merged.beam_size > limits.max_beam_size:
        raise Refused(400, f"decode.beam_size={merged.beam_size} is over the server's {limits.max_beam_size}")
    chosen, server = ({key: value for key, value in config.items() if key not in SERVER_DECODE_KEYS}
                      for config in (merged, base))  # fmt: skip
    return () if chosen == server else tuple(chosen.items())


def check_pair(values: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The model's source code, once ``source`` and ``target`` name its pair (either code; ``auto``: the source)."""
    data = config["data"]
    pair = {side: (data[key], language(data[key])[0]) for side, key in (("source", "src_lang"), ("target", "tgt_lang"))}
    source, target = values.get("source"), values.get("target")
    if values.get("format") not in ("text", "", None):  # LibreTranslate reads an empty format as text
        raise Refused(400, f"format={values['format']} is not translated here; send plain text with format=text")
    if (source not in pair["source"] and source != "auto") or target not in pair["target"]:
        code, to = language(data["src_lang"])[0], language(data["tgt_lang"])[0]
        raise Refused(400, f"source={source} target={target}: this model translates {code} to {to} only; "
                           f"send source={code} target={to}")  # fmt: skip
    return language(data["src_lang"])[0]


def attention_json(model: TranslationModel, best: Translation, weights: torch.Tensor | None) -> dict[str, Any] | None:
    if weights is None:
        return None
    return {
        "source": model.source_tokenizer.id_to_piece(best.source),
        "target": model.target_tokenizer.id_to_piece([*best.tokens, EOS]),
        "weights": [[round(w, 4) for w in row] for row in weights.tolist()],
    }


async def abandoned_on_hang_up(request: Request, batcher: Batcher, job: Job) -> None:
    """Abandon ``job`` if its client hangs up first: once a request's body is read, the ASGI server's next message
    is ``http.disconnect``, sent when the client leaves (or once the answer is out, when this no longer waits)."""
    if (await request.receive())["type"] == "http.disconnect":
        batcher.abandon(job)


def create_app(model: TranslationModel, base: Translator, limits: Limits) -> Starlette:
    """The server's routes around ``base`` (a ``Translator`` of ``model``), whose decode settings are the default."""
    batcher = Batcher(model, base, limits)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        state["ready"] = True
        yield  # uvicorn answers every request in flight before it gets here (SIGTERM's drain)
        state["ready"] = False
        worker.cancel()

    async def refused(request: Request, error: Refused) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return JSONResponse({"error": str(error)}, error.status, headers)

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{request.method} {request.url.path}: {error.detail}"}, error.status_code)

    async def failed(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"the server failed to translate ({type(error).__name__}); see its log"}, 500)

    async def translated(request: Request, texts: list[str], decode: tuple, attention: bool) -> Result:
        request.state.sentences = len(texts)
        job = Job(texts, decode, attention)
        gone = asyncio.create_task(abandoned_on_hang_up(request, batcher, job))
        try:
            return await batcher.translate(job)
        finally:
            gone.cancel()

    async def page(request: Request) -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    async def health(request: Request) -> JSONResponse:
        """Live: the process answers."""
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        """Ready: the model is loaded and the decoder runs (not while starting or draining)."""
        if not state["ready"]:
            return JSONResponse({"error": "not ready: the server is starting or draining"}, 503)
        return JSONResponse({"status": "ready"})

    async def languages(request: Request) -> JSONResponse:
        """LibreTranslate's shape: each language the model reads, with those it translates into."""
        data = model.config["data"]
        (source, source_name), (target, target_name) = language(data["src_lang"]), language(data["tgt_lang"])
        return JSONResponse([
            {"code": source, "name": source_name, "targets": [target]},
            {"code": target, "name": target_name, "targets": []},
        ])  # fmt: skip

    async def libretranslate(request: Request) -> JSONResponse:
        """LibreTranslate's ``/translate``: ``translatedText`` in the shape of ``q``."""
        values = await parameters(request, limits.max_body_bytes)
        source = check_pair(values, model.config)
        texts, single = sentences(values, limits)
        result = await translated(request, texts, (), attention=False)
        best = [found[0].text for found in result.translations]
        answer: dict[str, Any] = {"translatedText": best[0] if single else best}
        if values.get("source") == "auto":  # one per sentence for a list, as LibreTranslate answers
            detected = {"confidence": 100.0, "language": source}
            answer["detectedLanguage"] = detected if single else [detected] * len(best)
        return JSONResponse(answer)

    async def native(request: Request) -> JSONResponse:
        """Per sentence, the n-best translations with their scores, and with ``attention``, the best one's weights."""
        values = await parameters(request, limits.max_body_bytes, form=False)
        texts, _ = sentences(values, limits)
        decode = request_decode(values.get("decode"), limits, base.decode)
        if not isinstance(attention := values.get("attention", False), bool):
            raise Refused(400, f"attention={attention!r} is not true or false")
        result = await translated(request, texts, decode, attention)
        return JSONResponse({
            "translations": [
                {
                    "n_best": [{"text": t.text, "score": round(t.score, 4)} for t in found],
                    "attention": attention_json(model, found[0], weights) if attention else None,
                }
                for found, weights in zip(result.translations, result.attention)
            ]
        })  # fmt: skip

    routes = [
        Route("/", page),  # GET routes answer HEAD too, as health probes send it
        Route("/health", health),
        Route("/ready", ready),
        Route("/languages", languages),
        Route("/translate", libretranslate, methods=["POST"]),
        Route("/v1/translate", native, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    handlers = {Refused: refused, HTTPException: http_error, Exception: failed}
    app = Starlette(routes=routes, middleware=[Middleware(RequestLog)], exception_handlers=handlers, lifespan=lifespan)
    app.router.redirect_slashes = False  # no redirect (to /translate from /translate/): an answer that is no JSON line
    return app
