// Reads deliveries (a JSON array of {"headers": {...}, "body": "..."}, as a webhook
// receiver or a NATS subscriber saw them) from the file named by argv[2], parses each
// with the CloudEvents SDK's HTTP binding (binary or structured mode, told apart by the
// SDK itself) and validates it against the CloudEvents 1.0 spec. Prints a JSON array of
// the parsed events' attributes, or the first failure and exits 1.
"use strict";
const fs = require("fs");
const { HTTP } = require("cloudevents");

// RFC 3339 date-time, the grammar CloudEvents requires of `time` (the SDK itself
// replaces a time it cannot read with the current one instead of refusing it).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

const deliveries = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const parsed = [];
deliveries.forEach((d, i) => {
  try {
    const ev = HTTP.toEvent({ headers: d.headers, body: d.body });
    if (Array.isArray(ev)) throw new Error("a batch, not one event");
    ev.validate();
    const type = String(d.headers["content-type"] || "");
    const rawTime = type.startsWith("application/cloudevents+json") ? JSON.parse(d.body).time : d.headers["ce-time"];
    if (!RFC3339.test(rawTime) || Number.isNaN(Date.parse(rawTime))) throw new Error("time is not RFC 3339: " + rawTime);
    parsed.push({
      specversion: ev.specversion, id: ev.id, source: ev.source, type: ev.type,
      subject: ev.subject === undefined ? null : ev.subject, time: ev.time,
      datacontenttype: ev.datacontenttype, data: ev.data,
      traceparent: ev.traceparent === undefined ? null : ev.traceparent,
      tracestate: ev.tracestate === undefined ? null : ev.tracestate,
    });
  } catch (e) {
    const detail = e.errors ? " " + JSON.stringify(e.errors) : "";
    process.stdout.write(JSON.stringify({ failed: i, error: String(e.message || e) + detail }) + "\n");
    process.exit(1);
  }
});
process.stdout.write(JSON.stringify(parsed) + "\n");
