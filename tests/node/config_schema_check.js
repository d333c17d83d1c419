// Validates config files against config/pgrelay.schema.json with Ajv (JSON Schema
// draft 2020-12), reading them as pgrelay does: // and /* */ comments and trailing
// commas allowed. Usage: node config_schema_check.js SCHEMA FILE...
// Prints one JSON line per file: {"file", "valid", "errors", "paths"}, where paths
// are the instance paths the errors are about (a key the schema does not allow or
// misses included, as in /handlers/h/retries); exits 1 if the schema does not compile.
"use strict";
const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020");

// The file as strict JSON: comments and trailing commas removed, strings untouched.
function strictJson(text) {
  let out = "";
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
    } else {
      if (c === "}" || c === "]") out = out.replace(/,\s*$/, "");  // a trailing comma
      out += c;
      i++;
    }
  }
  return out;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });  // "not": {"required"} pairs
let validate;
try {
  validate = ajv.compile(JSON.parse(fs.readFileSync(process.argv[2], "utf8")));
} catch (e) {
  process.stdout.write(JSON.stringify({ schema_error: String(e.message || e) }) + "\n");
  process.exit(1);
}
for (const file of process.argv.slice(3)) {
  let doc;
  try {
    doc = JSON.parse(strictJson(fs.readFileSync(file, "utf8")));
  } catch (e) {
    process.stdout.write(JSON.stringify({ file, valid: false, errors: "not JSON: " + e.message, paths: [] }) + "\n");
    continue;
  }
  const valid = validate(doc);
  const errors = valid ? "" : ajv.errorsText(validate.errors);
  const paths = (validate.errors || []).map((e) => {
    const key = e.params.additionalProperty || e.params.missingProperty;
    return e.instancePath + (key === undefined ? "" : "/" + key);
  });
  process.stdout.write(JSON.stringify({ file, valid, errors, paths }) + "\n");
}
