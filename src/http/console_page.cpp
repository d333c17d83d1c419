// The console's HTML, CSS and script. It asks for the admin token once (kept in the tab's
// sessionStorage), reads /admin/api/* with it, and draws the charts as inline SVG.
// What it shows is also left in window.pgrelayConsole, for tests and for the curious.
#include "http/console_page.hpp"

namespace pgrelay {

const std::string& console_page_html() {
  static const std::string html = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgrelay console</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em} h2{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176c2a}.bad{color:#b3261e;font-weight:600}.warn{color:#9a6700}
.charts{display:flex;flex-wrap:wrap;gap:1em}
.chart{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.4em .8em}
.chart svg{display:block;width:320px;height:90px} .chart .l{color:#666;font-size:.85em}
pre{white-space:pre-wrap;margin:0;max-width:40em;font-size:.85em}
#error{color:#b3261e;font-weight:600} nav a{margin-right:1em}
</style></head>
<body>
<h1>pgrelay console <span id="relay-id"></span></h1>
<nav><a href="#">overview</a><a href="status">status page</a>
<form id="search-form" style="display:inline"><input id="search" placeholder="event id or key" size="24"> <button id="search-go">find</button></form></nav>
<div id="token-box"><p>The console reads the admin API: enter the admin token (admin.token / admin.token_env).</p>
<input id="token" type="password" size="40"> <button id="token-use">use</button></div>
<div id="error"></div>
<div id="overview">
<h2>Handlers (last <span id="window">–</span> s)</h2>
<table><thead><tr><th>handler</th><th>ok</th><th>failed</th><th>success</th><th>mean ms</th><th>p99 ms</th><th>breaker</th></tr></thead><tbody id="handlers"></tbody></table>
<h2>The last hour</h2>
<div class="charts">
 <div class="chart"><div class="l">throughput (events/s): <span id="now-throughput">–</span></div><svg id="chart-throughput"></svg></div>
 <div class="chart"><div class="l">backlog (due events): <span id="now-backlog">–</span></div><svg id="chart-backlog"></svg></div>
 <div class="chart"><div class="l">oldest due wait (s): <span id="now-oldest">–</span></div><svg id="chart-oldest"></svg></div>
</div>
<h2>Dead letters</h2>
<table><thead><tr><th>id</th><th>type</th><th>key</th><th>attempts</th><th>last error</th><th></th></tr></thead><tbody id="dead"></tbody></table>
<h2>Paused types</h2>
<table><thead><tr><th>type</th><th>reason</th><th>by</th><th>since</th></tr></thead><tbody id="paused"></tbody></table>
<h2>Unrouted types (no live relay routes them)</h2>
<table><thead><tr><th>type</th><th>events set aside</th></tr></thead><tbody id="unrouted"></tbody></table>
<h2 id="found-title" style="display:none">Events found</h2>
<table><tbody id="found"></tbody></table>
</div>
<div id="event" style="display:none">
<h2>Event <span id="event-id"></span>: <span id="event-status"></span></h2>
<div id="event-meta"></div>
<p><button id="event-retry" style="display:none">retry this dead event</button></p>
<table><thead><tr><th>#</th><th>handler</th><th>outcome</th><th>answer</th><th>duration ms</th><th>started</th><th>error / response</th></tr></thead><tbody id="attempts"></tbody></table>
</div>
<script>
"use strict";
var state = window.pgrelayConsole = {overview: null, history: null, dead: null, event: null};
function el(id){return document.getElementById(id);}
function txt(v){return v === null || v === undefined ? "–" : String(v);}
function cell(v, cls){var td=document.createElement("td"); td.textContent=txt(v); if(cls) td.className=cls; return td;}
function rows(id, items, f){
  var body=el(id); while(body.firstChild) body.removeChild(body.firstChild);
  items.forEach(function(it){var tr=document.createElement("tr"); f(it).forEach(function(td){tr.appendChild(td);}); body.appendChild(tr);});
}
function token(){return sessionStorage.getItem("pgrelay-token") || "";}
function api(path, opts){
  opts = opts || {};
  opts.headers = {"Authorization": "Bearer " + token(), "Content-Type": "application/json"};
  opts.cache = "no-store";
  return fetch(path, opts).then(function(r){
    return r.json().then(function(j){
      if (r.status === 401) { el("token-box").style.display = "block"; }
      if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
      el("error").textContent = ""; return j;
    });
  });
}
function fail(e){el("error").textContent = String(e.message || e);}
function chart(id, points, field){
  var svg = el(id), w = 320, h = 90, vals = points.map(function(p){return p[field] === null ? 0 : p[field];});
  var max = Math.max.apply(null, vals.concat([1]));
  var pts = vals.map(function(v, i){return (vals.length < 2 ? 0 : i * w / (vals.length - 1)).toFixed(1) + "," + (h - 4 - v * (h - 8) / max).toFixed(1);});
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.innerHTML = '<polyline fill="none" stroke="#2a6cb3" stroke-width="1.5" points="' + pts.join(" ") + '"></polyline>' +
                  '<text x="2" y="10" font-size="9" fill="#666">max ' + max.toFixed(1) + '</text>';
  svg.setAttribute("data-points", String(vals.length));
  svg.setAttribute("data-last", vals.length ? String(vals[vals.length - 1]) : "");
}
function act(path, id){
  return api(path, {method: "POST", body: JSON.stringify({ids: [id]})}).then(refresh).catch(fail);
}
function renderOverview(){
  var o = state.overview, hs = state.history, d = state.dead;
  if (o) {
    el("relay-id").textContent = o.relay;
    el("window").textContent = o.window_s.toFixed(0);
    rows("handlers", o.handlers, function(h){
      return [cell(h.name), cell(h.ok,"num"), cell(h.failed, h.failed ? "num bad" : "num"),
              cell(h.success_rate === null ? null : (100 * h.success_rate).toFixed(1) + " %", h.success_rate !== null && h.success_rate < 0.9 ? "num bad" : "num"),
              cell(h.mean_latency_ms === null ? null : h.mean_latency_ms.toFixed(1), "num"),
              cell(h.p99_latency_ms === null ? null : h.p99_latency_ms.toFixed(1), "num"),
              cell(h.breaker, h.breaker === "closed" ? "ok" : "bad")];
    });
    rows("paused", o.paused, function(p){return [cell(p.type, "warn"), cell(p.reason || "–"), cell(p.paused_by || "–"), cell(p.paused_at)];});
    rows("unrouted", o.unrouted, function(u){return [cell(u.type, "bad"), cell(u.events, "num")];});
  }
  if (hs) {
    chart("chart-throughput", hs.points, "throughput_per_s");
    chart("chart-backlog", hs.points, "backlog");
    chart("chart-oldest", hs.points, "oldest_due_wait_s");
    var last = hs.points[hs.points.length - 1] || {};
    el("now-throughput").textContent = txt(last.throughput_per_s);
    el("now-backlog").textContent = txt(last.backlog);
    el("now-oldest").textContent = txt(last.oldest_due_wait_s);
  }
  if (d) {
    rows("dead", d.dead, function(x){
      var id = document.createElement("td"), a = document.createElement("a");
      a.href = "#event/" + x.id; a.textContent = String(x.id); a.className = "event-link"; id.appendChild(a);
      var b = document.createElement("td");
      [["retry", "/admin/dead/retry"], ["purge", "/admin/dead/purge"]].forEach(function(k){
        var btn = document.createElement("button"); btn.textContent = k[0]; btn.className = k[0];
        btn.onclick = function(){ if (k[0] !== "purge" || confirm("Delete event " + x.id + " for good?")) act(k[1], x.id); };
        b.appendChild(btn);
      });
      return [id, cell(x.type), cell(x.key), cell(x.attempts, "num"), cell(x.last_error, "bad"), b];
    });
  }
}
function renderEvent(){
  var e = state.event; if (!e) return;
  el("event-id").textContent = String(e.id);
  var s = el("event-status"); s.textContent = e.status;
  s.className = e.status === "done" ? "ok" : (e.status === "dead" || e.status === "purged" ? "bad" : "warn");
  el("event-meta").textContent = "type " + txt(e.type) + " · key " + txt(e.key) + " · attempts " + txt(e.attempts) +
    " · created " + txt(e.created_at) + " · finished " + txt(e.finished_at) + (e.last_error ? " · last error: " + e.last_error : "");
  el("event-retry").style.display = e.status === "dead" ? "inline" : "none";
  rows("attempts", e.attempt_log, function(a){
    var answer = a.http_status !== null ? "HTTP " + a.http_status : (a.exit_code !== null ? "exit " + a.exit_code : "–");
    var detail = document.createElement("td"), pre = document.createElement("pre");
    pre.textContent = [a.error, a.response_head].filter(function(x){return x;}).join("\n"); detail.appendChild(pre);
    return [cell(a.attempt, "num"), cell(a.handler), cell(a.outcome, a.outcome === "ok" ? "ok" : "bad"), cell(answer, "answer"),
            cell(a.duration_ms, "num"), cell(a.started_at), detail];
  });
}
function eventId(){var m = /^#event\/(\d+)$/.exec(location.hash); return m ? m[1] : null;}
function refresh(){
  var id = eventId();
  el("overview").style.display = id ? "none" : "block";
  el("event").style.display = id ? "block" : "none";
  if (!token()) { el("token-box").style.display = "block"; return Promise.resolve(); }
  el("token-box").style.display = "none";
  if (id) return api("admin/api/event?id=" + id).then(function(j){state.event = j; renderEvent();}).catch(fail);
  return Promise.all([api("admin/api/overview"), api("admin/api/history"), api("admin/api/dead?limit=100")]).then(function(r){
    state.overview = r[0]; state.history = r[1]; state.dead = r[2]; renderOverview();
  }).catch(fail);
}
el("token-use").onclick = function(){ sessionStorage.setItem("pgrelay-token", el("token").value); refresh(); };
el("event-retry").onclick = function(){ act("/admin/dead/retry", Number(eventId())); };
el("search-form").onsubmit = function(ev){
  ev.preventDefault();
  var q = el("search").value.trim(); if (!q) return;
  if (/^\d+$/.test(q)) { location.hash = "#event/" + q; return; }
  location.hash = "";
  api("admin/api/events?key=" + encodeURIComponent(q)).then(function(j){
    el("found-title").style.display = "block";
    rows("found", j.events, function(x){
      var td = document.createElement("td"), a = document.createElement("a"); a.href = "#event/" + x.id; a.textContent = String(x.id); td.appendChild(a);
      return [td, cell(x.type), cell(x.key), cell(x.status), cell(x.attempts, "num")];
    });
  }).catch(fail);
};
window.addEventListener("hashchange", refresh);
function tick(){ refresh().then(function(){ setTimeout(tick, 1000); }); }
tick();
</script>
</body></html>
)html";
  return html;
}

}  // namespace pgrelay
