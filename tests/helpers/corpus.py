"""Synthetic corpora, mirrors of them, the data settings that read one, one hash of what they prepare into, and a
local HTTP server to download from."""

from __future__ import annotations

import hashlib
import http.server
import io
import random
import threading
import zipfile
from types import SimpleNamespace

from seq2seq.data.prepare import prepare


def write_mirror(directory, pairs: list[tuple[str, str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fra.txt", "".join(f"{e}\t{f}\tCC-BY attribution #{i}\n" for i, (e, f) in enumerate(pairs)))
    (directory / "fra-eng.zip").write_bytes(buffer.getvalue())


def synthetic_corpus(n: int = 400) -> list[tuple[str, str]]:
    rng = random.Random(0)
    words_en = ["cat", "dog", "house", "tree", "red", "big", "runs", "sees", "the", "a", "small", "eats"]
    words_fr = ["chat", "chien", "maison", "arbre", "rouge", "grand", "court", "voit", "le", "un", "petit"]
    pairs = []
    for i in range(n):
        eng = " ".join(rng.choice(words_en) for _ in range(rng.randint(1, 8))).capitalize() + f" {i}."
        fra = " ".join(rng.choice(words_fr) for _ in range(rng.randint(1, 8))).capitalize() + f" {i}."
        pairs.append((eng, fra))
        if i % 10 == 0:  # another French translation of the same English sentence
            pairs.append((eng, fra.replace(".", " !")))
        if i % 15 == 0:  # and another English sentence for the same French one
            pairs.append((eng.replace(".", " !"), fra))
    return pairs


def data_cfg(tmp_path, src_lang="eng", tgt_lang="fra", **overrides):
    settings = dict(
        source="tatoeba",
        pair="fra-eng",
        url="http://127.0.0.1:1/fra-eng.zip",
        cache_dir=str(tmp_path / "cache"),
        mirror=str(tmp_path / "mirror"),
        sha256=None,
        subset=None,
        valid_fraction=0.1,
        test_fraction=0.1,
        split_seed=0,
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        vocab_size=60,
        spm_model_type="unigram",
        character_coverage=1.0,
        joint_vocab=False,
        max_tokens=30,
        max_archive_bytes=1 << 27,
        input_sentence_size=1_000_000,
    )
    settings.update(overrides)
    return SimpleNamespace(**settings)


def prepared_digest(settings: dict) -> str:
    """One hash of what ``prepare`` gives for these data settings: both tokenizers and every encoded split."""
    encoded, src, tgt = prepare(SimpleNamespace(**settings))
    digest = hashlib.sha256(src.model_proto + tgt.model_proto)
    for name in sorted(encoded):
        digest.update(encoded[name].source_ids.flat.numpy().tobytes() + encoded[name].target_ids.flat.numpy().tobytes())
    return digest.hexdigest()


class LocalServer:
    """Serves ``files`` (url path -> bytes) and records every request's path and User-Agent."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lie_about_length = False  # announce the full length, send only half the bytes
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("User-Agent")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.lie_about_length else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # polled every 10 ms for the stop, not every 500: each test's stop would otherwise wait half a second
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def url(self, name: str = "fra-eng.zip") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
