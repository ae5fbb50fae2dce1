// The page: sends the text to /v1/translate, shows the best translation, the alternatives and the attention.
"use strict";

const $ = (id) => document.getElementById(id);

async function languages() {
  const answer = await fetch("/languages");
  const [source] = await answer.json();
  $("pair").textContent = `${source.code} → ${source.targets[0]}`;
}

function drawHeatmap(attention) {
  const canvas = $("heatmap");
  $("no-attention").hidden = attention !== null;
  if (attention === null) {
    canvas.width = canvas.height = 0;
    return;
  }
  const cell = 28, font = "12px system-ui, sans-serif";
  const context = canvas.getContext("2d");
  context.font = font;
  const left = Math.max(...attention.target.map((piece) => context.measureText(piece).width)) + 8;
  const top = Math.max(...attention.source.map((piece) => context.measureText(piece).width)) + 8;
  canvas.width = left + cell * attention.source.length;
  canvas.height = top + cell * attention.target.length;
  context.font = font;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  attention.weights.forEach((row, i) => row.forEach((weight, j) => {
    const shade = Math.round(255 * (1 - weight));
    context.fillStyle = `rgb(${shade},${shade},${shade})`;
    context.fillRect(left + j * cell, top + i * cell, cell, cell);
  }));
  context.fillStyle = "#000";
  attention.target.forEach((piece, i) => context.fillText(piece, 2, top + i * cell + cell * 0.65));
  attention.source.forEach((piece, j) => {
    context.save();
    context.translate(left + j * cell + cell * 0.65, top - 4);
    context.rotate(-Math.PI / 2);
    context.fillText(piece, 0, 0);
    context.restore();
  });
}

async function translate(event) {
  event.preventDefault();
  $("error").textContent = "";
  const beam = $("strategy").value === "beam";
  const decode = beam ? { strategy: "beam", beam_size: 5, length_penalty: 1.0, n_best: 5 } : { strategy: "greedy" };
  const answer = await fetch("/v1/translate", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ q: $("source").value, decode, attention: true }),
  });
  const body = await answer.json();
  if (!answer.ok) {
    $("error").textContent = body.error;
    return;
  }
  const [found] = body.translations;
  $("translation").textContent = found.n_best[0].text;
  $("alternatives").replaceChildren(...found.n_best.map((t) => {
    const item = document.createElement("li");
    item.textContent = `${t.text} (${t.score.toFixed(2)})`;
    return item;
  }));
  drawHeatmap(found.attention);
}

$("form").addEventListener("submit", translate);
$("source").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("form").requestSubmit();
});
languages();
