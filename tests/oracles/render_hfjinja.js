// Second opinion for chat templates: Hugging Face's JavaScript Jinja (@huggingface/jinja, what
// transformers.js renders with). Reads a JSON array of {template, vars, now} on stdin and prints a
// JSON array of {ok, out} (out: the text, or the error message). strftime_now reads `now` (epoch
// seconds, UTC) like the Python oracle, so both engines see the same date.
// usage: node render_hfjinja.js < cases.json
'use strict';
const fs = require('fs');
const path = require('path');

// The library's strftime_now formats `new Date()` in local time: pin the zone and the clock.
process.env.TZ = 'UTC';
let now = 0;
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...a) { if (a.length) super(...a); else super(now * 1000); }
  static now() { return now * 1000; }
};

async function main() {
  const { Template } = await import(path.join(__dirname, 'node_modules', '@huggingface', 'jinja', 'dist', 'index.js'));
  const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = cases.map((c) => {
    now = c.now;
    try {
      return { ok: true, out: new Template(c.template).render(c.vars) };
    } catch (e) {
      return { ok: false, out: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(2); });
