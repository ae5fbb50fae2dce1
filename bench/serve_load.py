"""Load on ``seq2seq.serve``: N concurrent clients for S seconds on loopback, each sending K sentences per request.

    python bench/serve_load.py checkpoint=PATH [input=FILE] [clients=32] [seconds=60] [per_request=1] [key=value ...]

The sentences are FILE's lines, or without ``input``, the checkpoint's test split, which ``bench`` times. Starts the
server, takes the expected answers from ``python -m seq2seq.translate`` on the same sentences, and prints
throughput, p50/p99 latency, errors, answers that differ (``per_request`` > 1: ``q`` a list, as LibreTranslate's
clients send several sentences at once), and the server's peak RSS (sampled), then stops the server
with SIGTERM. With ``clients=1`` it also times each sentence translated alone in this process right after the
server's answer, so that a busy machine slows both alike. The tests import ``start_server`` and ``load``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import httptools
import httpx

LISTENING = re.compile(r"Uvicorn running on (http://\S+)")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)  # its standard error, read on by a thread so it never blocks

    def stop(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(checkpoint: str | Path, *overrides: str, timeout: float = 120) -> Server:
    """``python -m seq2seq.serve`` on a free loopback port, once it listens."""
    command = [sys.executable, "-m", "seq2seq.serve", f"checkpoint={checkpoint}", "port=0", *overrides]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if LISTENING.search(line):
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not listening.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not start:\n" + "".join(lines))
    url = next(match[1] for line in lines if (match := LISTENING.search(line)))
    return Server(process, url, lines)


@dataclass
class Report:
    latencies: list[float] = field(default_factory=list)  # seconds, of the requests answered 200
    per_request: int = 1  # sentences in each request
    errors: int = 0  # answers not 200, and requests that got no answer
    differ: int = 0  # answers 200 that are not the expected translation
    seconds: float = 0.0
    rss_kib: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        ms = sorted(1000 * s for s in self.latencies) or [0.0]
        rss = self.rss_kib or [0]
        return [
            f"requests answered: {len(self.latencies)} of {self.per_request} sentences in {self.seconds:.1f} s "
            f"({self.per_request * len(self.latencies) / self.seconds:.1f} sentences/s)",
            f"errors: {self.errors}   answers differing from translate: {self.differ}",
            f"latency p50 {statistics.median(ms):.1f} ms, p99 {ms[int(0.99 * (len(ms) - 1))]:.1f} ms",
            f"server RSS: first {rss[0] / 1024:.0f} MiB, peak {max(rss) / 1024:.0f} MiB, last {rss[-1] / 1024:.0f} MiB",
        ]


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status)[1])


class Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time; httptools (uvicorn's C parser) reads the answers.
    Hand-written because the load client shares the server's two cores: aiohttp spent 0.37 ms of CPU per request
    (httpx's ``AsyncClient`` 15 times that), which under 32 clients lengthened the server's turnaround between
    batches; this spends 0.15 ms (docs/serving.md)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.answer: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.close()
            self.connection_lost(error)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), bytes(self.body)))
        if not self.parser.should_keep_alive():  # "Connection: close": the next request goes on a new connection
            self.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"the connection closed: {error}"))
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def post(self, request: bytes, timeout: float) -> tuple[int, bytes]:
        """``request``'s status and body."""
        self.body, self.answer = bytearray(), asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.answer, timeout)


def post_request(host: str, path: str, values: dict) -> bytes:
    body = json.dumps(values).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def load(
    url: str,
    expected: dict[str, str],
    clients: int,
    seconds: float,
    pair: tuple[str, str],
    pid: int | None = None,
    per_request: int = 1,
) -> Report:
    """``clients`` concurrent clients sending the sentences of ``expected`` round-robin to LibreTranslate's
    ``/translate``, ``per_request`` at a time (a list when more than one), for ``seconds``; stops by itself."""
    report, texts = Report(per_request=per_request), list(expected)
    next_text = iter(range(sys.maxsize))
    deadline = time.monotonic() + seconds
    host, port = url.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()

    async def client() -> None:
        connection = Connection()  # not connected yet
        while time.monotonic() < deadline:
            sent = [texts[next(next_text) % len(texts)] for _ in range(per_request)]
            query = sent if per_request > 1 else sent[0]
            request = post_request(host, "/translate", {"q": query, "source": pair[0], "target": pair[1]})
            start = time.perf_counter()
            try:
                if connection.transport is None:
                    _, connection = await loop.create_connection(Connection, host, int(port))
                status, body = await connection.post(request, timeout=60)
            except (OSError, asyncio.TimeoutError):
                report.errors += 1
                connection.close()  # a late answer must not be read as the next one's
                continue
            if status != 200:
                report.errors += 1
                continue
            report.latencies.append(time.perf_counter() - start)
            translations = json.loads(body)["translatedText"]
            translations = translations if per_request > 1 else [translations]
            report.differ += sum(got != expected[text] for got, text in zip(translations, sent, strict=True))
        connection.close()

    async def sample() -> None:
        while pid is not None and time.monotonic() < deadline:
            report.rss_kib.append(rss_kib(pid))
            await asyncio.sleep(0.5)

    start = time.perf_counter()
    await asyncio.gather(sample(), *(client() for _ in range(clients)))
    report.seconds = time.perf_counter() - start
    return report


OWN = ("checkpoint", "input", "clients", "seconds", "per_request")  # this script's keys; the rest are the server's


def alone(
    url: str, texts: list[str], checkpoint: str, seconds: float, pair: tuple[str, str], threads: int | None
) -> list[str]:
    """One client, one sentence at a time: the server's latency against ``Translator`` alone on the same sentence,
    in turn, with the server's ``threads``."""
    from seq2seq.api import Translator
    from seq2seq.commands.common import use_threads

    use_threads(threads)
    translator = Translator.load(checkpoint, device="cpu")
    served, local = [], []
    deadline = time.monotonic() + seconds
    host, port = url.removeprefix("http://").split(":")
    http = HTTPConnection(host, int(port))  # the standard library's, kept alive: the least a client adds
    for text in itertools.cycle(texts):
        if time.monotonic() > deadline:
            break
        body = json.dumps({"q": text, "source": pair[0], "target": pair[1]})
        start = time.perf_counter()
        http.request("POST", "/translate", body, {"Content-Type": "application/json"})
        answer = http.getresponse()
        answer.read()
        middle = time.perf_counter()
        assert answer.status == 200, answer.status
        translator.translate([text])
        served.append(1000 * (middle - start))
        local.append(1000 * (time.perf_counter() - middle))
    http.close()
    p50, alone_p50 = statistics.median(served), statistics.median(local)
    return [f"one client, {len(served)} sentences in turn: served p50 {p50:.1f} ms, the Translator alone p50 "
            f"{alone_p50:.1f} ms ({100 * (p50 / alone_p50 - 1):+.0f}%)"]  # fmt: skip


def decoder_ceiling(texts: list[str], checkpoint: str, batch: int, seconds: float, threads: int | None) -> str:
    """The most the server could answer: the ``Translator`` alone on batches of ``batch`` sentences drawn at random,
    as the server's batches are (``bench`` sorts the whole split by length, so its batches pad less)."""
    from seq2seq.api import Translator
    from seq2seq.commands.common import use_threads

    use_threads(threads)
    translator = Translator.load(checkpoint, device="cpu")
    shuffled = random.Random(0).sample(texts, len(texts))
    translator.translate(shuffled[:batch])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = [shuffled[(done + i) % len(shuffled)] for i in range(batch)]
        translator.translate(chunk)
        done += batch
    rate = done / (time.perf_counter() - start)
    return f"the Translator alone on random batches of {batch}: {rate:.1f} sentences/s"


def test_sources(checkpoint: str) -> list[str]:
    """The checkpoint's test split's source sentences, found as ``bench`` finds them (its ``paths``)."""
    from seq2seq.checkpoint import load_checkpoint
    from seq2seq.data.prepare import corpus_split
    from seq2seq.settings.presets import composed

    paths = composed("bench", f"checkpoint={checkpoint}").paths
    return [source for source, _ in corpus_split(load_checkpoint(checkpoint), "test", paths)]


def main(argv: list[str]) -> None:
    own = dict(arg.split("=", 1) for arg in argv if arg.split("=", 1)[0] in OWN)
    overrides = [arg for arg in argv if arg.split("=", 1)[0] not in OWN]
    if "input" in own:
        texts = [line.strip() for line in Path(own["input"]).read_text(encoding="utf-8").splitlines()]
    else:
        texts = test_sources(own["checkpoint"])
    translate = [sys.executable, "-m", "seq2seq.translate", f"checkpoint={own['checkpoint']}",
                 *(arg for arg in overrides if not arg.startswith("limits."))]  # fmt: skip
    translations = subprocess.run(translate, input="\n".join(texts) + "\n", capture_output=True, text=True, check=True)
    expected = dict(zip(texts, translations.stdout.splitlines()))
    clients, seconds, per_request = (int(own.get("clients", 32)), float(own.get("seconds", 60)),
                                     int(own.get("per_request", 1)))  # fmt: skip
    threads = next((int(arg.split("=")[1]) for arg in overrides if arg.startswith("threads=")), None)
    server = start_server(own["checkpoint"], *overrides)
    try:
        pair = tuple(language["code"] for language in httpx.get(server.url + "/languages").json())
        if clients == 1:
            lines = alone(server.url, texts, own["checkpoint"], seconds, pair, threads)
        else:
            report = asyncio.run(load(server.url, expected, clients, seconds, pair, server.process.pid, per_request))
            lines = report.lines()
    finally:
        status = server.stop()
    print(*lines, f"server exit status after SIGTERM: {status}", sep="\n", flush=True)
    if clients > 1:  # measured once the server has gone, so that neither slows the other
        print(decoder_ceiling(texts, own["checkpoint"], clients * per_request, min(seconds, 30), threads))


if __name__ == "__main__":
    main(sys.argv[1:])
