// The demo page: a person can store, get, announce, look up and watch their peers.

import { createPageApi, optionsFromUrl } from "./lib/page-api.js";

const $ = (id) => document.getElementById(id);
const options = optionsFromUrl(location.href);
const api = createPageApi(options);
window.dhtPeer = api; // the same API as peer.html, for the console
$("signal").textContent = options.signal;

function show(el, text, ok) {
  el.textContent = text;
  el.className = `result ${ok ? "ok" : "err"}`;
}

function log(text) {
  const line = `${new Date().toLocaleTimeString()}  ${text}\n`;
  const box = $("log");
  box.textContent += line;
  box.scrollTop = box.scrollHeight;
}

function refresh() {
  const peers = api.peers();
  $("peer-count").textContent = String(peers.length);
  $("peers").replaceChildren(...peers.map((p) => {
    const li = document.createElement("li");
    li.textContent = p;
    return li;
  }));
  const s = api.stats();
  $("rt-size").textContent = String(s.routing_table_size ?? 0);
  $("records").textContent = String(s.store_size ?? 0);
  $("providers").textContent = String(s.providers_held ?? 0);
  for (const ev of api.drainEvents()) {
    const { topic, ts, ...rest } = ev;
    log(`${topic} ${Object.entries(rest).map(([k, v]) => `${k}=${String(v).slice(0, 16)}`).join(" ")}`);
  }
}

async function guarded(el, fn) {
  try { await fn(); } catch (e) { show(el, `error: ${e.message}`, false); }
}

$("store-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded($("store-result"), async () => {
    const r = await api.store($("store-key").value, $("store-value").value);
    show($("store-result"), r.ok ? `stored on ${r.stored} peers (quorum ${r.quorum})`
      : `not stored: ${r.stored} acks, quorum ${r.quorum}`, r.ok);
  });
});

$("get-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded($("get-result"), async () => {
    const r = await api.get($("get-key").value);
    show($("get-result"), r.found ? `${r.value}   (by ${r.publisher.slice(0, 12)}…)` : "not found", r.found);
  });
});

$("topic-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const topic = $("topic").value;
  guarded($("topic-result"), async () => {
    if (ev.submitter?.name === "announce") {
      const r = await api.announce(topic);
      show($("topic-result"), r.ok ? `announced on ${r.stored} peers` : "announce failed", r.ok);
    } else {
      const r = await api.lookup(topic);
      show($("topic-result"), r.peers.length ? r.peers.join("\n") : "nobody announced this topic",
        r.peers.length > 0);
    }
  });
});

api.ready().then(({ id }) => {
  $("id").textContent = id;
  log(`joined as ${id}`);
}, (e) => { $("id").textContent = `failed: ${e.message}`; });
setInterval(refresh, 500);
