// Rust `tokenizers` oracle: encodes each hex-encoded stdin line (bytes decoded as UTF-8, invalid
// sequences replaced by U+FFFD) with a tokenizer.json and prints the ids, one line per input.
// usage: node encode_lines.js TOKENIZER_JSON [--add-special-tokens] [--bench FILE]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers'));

async function main() {
  const args = process.argv.slice(2);
  const file = args[0];
  const special = args.includes('--add-special-tokens');
  const tok = Tokenizer.fromFile(file);
  const bi = args.indexOf('--bench');
  if (bi >= 0) {
    // Throughput of the Rust encoder on one text: MB/s over repeated single-threaded encodes.
    const text = fs.readFileSync(args[bi + 1]).toString('utf8');
    const bytes = Buffer.byteLength(text);
    await tok.encode(text, null, { addSpecialTokens: special });
    // CPU time of the whole process (the binding encodes on a libuv worker thread), so the
    // figure is per core and comparable on a busy machine.
    let n = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let cpu = 0;
    while (cpu < 1.5 || n < 3) {
      await tok.encode(text, null, { addSpecialTokens: special });
      n++;
      const c = process.cpuUsage(c0);
      cpu = (c.user + c.system) / 1e6;
    }
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(JSON.stringify({ mb_per_s: (bytes * n) / cpu / 1e6, wall_mb_per_s: (bytes * n) / wall / 1e6, runs: n, bytes }) + '\n');
    return;
  }
  const lines = fs.readFileSync(0).toString('latin1').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const out = [];
  for (const line of lines) {
    const text = Buffer.from(line, 'hex').toString('utf8');
    const enc = await tok.encode(text, null, { addSpecialTokens: special });
    out.push(Array.from(enc.getIds()).join(' '));
  }
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
}
main().catch((e) => { console.error(e); process.exit(1); });
