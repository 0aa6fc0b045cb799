// The size budget of herald.js: the main module, minified (esbuild, as the
// README's figure is measured) and gzipped at level 9, must stay within
// 5 KB (5,120 bytes). The shared mode's worker is a second file, loaded
// only by tabs that ask for it; its size is reported, not budgeted.
// Usage: node size.mjs [BUDGET_BYTES]; prints "FILE: RAW raw, MIN min, GZ min+gzip".
import { transform } from "esbuild";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { check, main } from "./lib.mjs";

const dir = new URL("../../js/", import.meta.url);

async function measure(name) {
  const src = readFileSync(new URL(name, dir), "utf8");
  const { code } = await transform(src, { minify: true, format: "esm", loader: "js" });
  const gz = gzipSync(code, { level: 9 }).length;
  console.log(`${name}: ${src.length} raw, ${code.length} min, ${gz} min+gzip`);
  return gz;
}

main(async ([budget = "5120"]) => {
  const got = await measure("herald.js");
  await measure("herald-worker.js");
  check(got <= +budget, `herald.js is ${got} bytes minified and gzipped, over the budget of ${budget}: move code out of the main module (the shared mode's belongs in herald-worker.js)`);
});
