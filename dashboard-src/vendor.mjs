// Copies the chart library's browser build (and its licence) from node_modules into the Python
// package, where it is committed: pip users get the dashboard without Node. Run after `npm ci`.
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "fastgw", "analytics", "dashboard", "vendor");
const uplot = join(here, "node_modules", "uplot");
const files = [
  ["dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["dist/uPlot.min.css", "uPlot.min.css"],
  ["LICENSE", "uPlot.LICENSE"],
];
mkdirSync(out, { recursive: true });
for (const [from, to] of files) copyFileSync(join(uplot, from), join(out, to));
const version = JSON.parse(readFileSync(join(uplot, "package.json"), "utf8")).version;
console.log(`vendored uPlot ${version} into ${out}`);
