// The status page's HTML, CSS and script, inline so it works without network access.
#include "http/status_page.hpp"

namespace pgrelay {

const std::string& status_page_html() {
  static const std::string html = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgrelay status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em} h2{font-size:1.05em;margin:1.4em 0 .4em}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.card .n{font-size:1.7em;font-weight:600;font-variant-numeric:tabular-nums}
.card .l{color:#666;font-size:.85em}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176c2a}.bad{color:#b3261e}.warn{color:#9a6700}
#stale{display:none;color:#b3261e;font-weight:600}
</style></head>
<body>
<h1>pgrelay <span id="relay-id"></span></h1>
<div>ready: <span id="ready">…</span> · database: <span id="db">…</span> · listener: <span id="listener">…</span>
 · updated <span id="updated">never</span> <span id="stale">(status.json unreachable)</span></div>
<div class="cards">
 <div class="card"><div class="n" id="backlog">…</div><div class="l">backlog (due events)</div></div>
 <div class="card"><div class="n" id="throughput">…</div><div class="l">delivered / s (this relay, last sample interval)</div></div>
 <div class="card"><div class="n" id="dead">…</div><div class="l">dead letters</div></div>
 <div class="card"><div class="n" id="processing">…</div><div class="l">in flight (leased)</div></div>
 <div class="card"><div class="n" id="oldest">…</div><div class="l">oldest due wait (s)</div></div>
 <div class="card"><div class="n" id="paused-backlog">…</div><div class="l">waiting on paused types</div></div>
</div>
<h2>Handlers</h2>
<table><thead><tr><th>handler</th><th>delivered</th><th>retried</th><th>dead</th><th>deferred</th><th>mean latency ms</th><th>breakers</th></tr></thead>
<tbody id="handlers"></tbody></table>
<h2>Event types</h2>
<table><thead><tr><th>type</th><th>pending</th><th>in flight</th><th>dead</th><th>paused</th></tr></thead>
<tbody id="types"></tbody></table>
<h2>Relays (seen in the last minute)</h2>
<table><thead><tr><th>id</th><th>wake</th><th>listen</th><th>in flight</th><th>delivered</th><th>seen (s ago)</th></tr></thead>
<tbody id="relays"></tbody></table>
<script>
"use strict";
function el(id){return document.getElementById(id);}
function txt(v){return v === null || v === undefined ? "–" : String(v);}
function cell(v, cls){var td=document.createElement("td"); td.textContent=txt(v); if(cls) td.className=cls; return td;}
function rows(id, items, f){
  var body=el(id); while(body.firstChild) body.removeChild(body.firstChild);
  items.forEach(function(it){var tr=document.createElement("tr"); f(it).forEach(function(td){tr.appendChild(td);}); body.appendChild(tr);});
}
function flag(ok, yes, no){var s=document.createElement("span"); s.textContent= ok ? yes : no; s.className= ok ? "ok" : "bad"; return s;}
function render(s){
  el("relay-id").textContent = s.relay.id + " (wake=" + s.relay.wake + ")";
  var r=el("ready"); r.textContent = s.ready.ok ? "yes" : "no: " + s.ready.reason; r.className = s.ready.ok ? "ok" : "bad";
  var d=el("db"); d.textContent = s.database.ok ? "ok" : "down: " + s.database.error; d.className = s.database.ok ? "ok" : "bad";
  var l=el("listener"); l.textContent = s.relay.listener_connected === null ? "not used" : (s.relay.listener_connected ? "connected" : "down");
  l.className = s.relay.listener_connected === false ? "bad" : "ok";
  el("backlog").textContent = txt(s.backlog);
  el("dead").textContent = txt(s.dead);
  el("processing").textContent = txt(s.processing);
  el("oldest").textContent = s.oldest_due_wait_s === null ? "0" : s.oldest_due_wait_s.toFixed(1);
  el("paused-backlog").textContent = txt(s.paused_backlog);
  el("throughput").textContent = s.throughput_per_s.toFixed(1);
  rows("handlers", s.handlers, function(h){
    var b = h.breakers.map(function(x){return (x.destination ? x.destination + ": " : "") + x.state + (x.consecutive_failures ? " (" + x.consecutive_failures + " failures)" : "");}).join(", ");
    var open = h.breakers.some(function(x){return x.state !== "closed";});
    return [cell(h.name), cell(h.delivered,"num"), cell(h.retried,"num"), cell(h.dead, h.dead ? "num bad" : "num"),
            cell(h.deferred,"num"), cell(h.mean_latency_ms === null ? null : h.mean_latency_ms.toFixed(1),"num"),
            cell(b || "–", open ? "bad" : "")];
  });
  var patterns = s.paused.filter(function(p){return p.pattern;}).map(function(p){return {type: p.type, pattern: true};});
  rows("types", s.by_type.concat(patterns), function(t){
    if (t.pattern) return [cell(t.type), cell(""), cell(""), cell(""), cell("paused (every type below " + t.type.slice(0, -1) + ")", "warn")];
    return [cell(t.type), cell(t.pending,"num"), cell(t.processing,"num"), cell(t.dead, t.dead ? "num bad" : "num"), cell(t.paused ? "paused" : "", t.paused ? "warn" : "")];
  });
  rows("relays", s.relays, function(x){
    return [cell(x.id), cell(x.wake), cell(x.listen_alive ? "alive" : (x.wake === "notify" ? "down" : "–"), x.listen_alive || x.wake !== "notify" ? "ok" : "bad"),
            cell(x.in_flight,"num"), cell(x.delivered,"num"), cell(x.seen_age_s.toFixed(1),"num")];
  });
  el("updated").textContent = new Date(now).toLocaleTimeString();
  el("stale").style.display = "none";
}
function tick(){
  fetch("status.json", {cache: "no-store"}).then(function(r){
    if (!r.ok) throw new Error("HTTP " + r.status); return r.json();
  }).then(render).catch(function(){ el("stale").style.display = "inline"; }).then(function(){ setTimeout(tick, 1000); });
}
tick();
</script>
</body></html>
)html";
  return html;
}

}  // namespace pgrelay
