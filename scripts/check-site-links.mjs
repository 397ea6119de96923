#!/usr/bin/env node
// Checks the documentation site that `pnpm run docs` builds (typedoc, out: site/):
//   - every local href and src of every HTML page names a file of the site (a folder: its
//     index.html), without leaving the site or starting with "/" (the site must work from any
//     folder it is served or opened from);
//   - a #fragment on a link to a page names an id (or name) on that page;
//   - no link points at a raw Markdown copy (media/*.md: a Markdown file that a page links to but
//     the site does not render; typedoc copies such files as they are);
//   - every guide docs/*.md is a page of the site (documents/<name>.html; docs/index.md is the
//     front page), so a new guide cannot be left out of typedoc.json's projectDocuments.
// Prints one line per problem and, last, "check-site-links: N pages, N local links, N broken".
// Exits 1 on any problem.
//
//   node scripts/check-site-links.mjs [SITE_DIR] [--guides DOCS_DIR]   (defaults: site, docs)
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

const args = process.argv.slice(2);
let siteArg = "site";
let guidesArg = "docs";
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--guides") guidesArg = args[++i];
  else if (args[i].startsWith("-")) usage(`unknown option ${args[i]}`);
  else siteArg = args[i];
}
if (guidesArg === undefined) usage("--guides needs a folder");

function usage(msg) {
  console.error(`check-site-links: ${msg} — usage: node scripts/check-site-links.mjs [SITE_DIR] [--guides DOCS_DIR]`);
  process.exit(2);
}

const site = path.resolve(siteArg);
if (!existsSync(path.join(site, "index.html"))) {
  console.error(`check-site-links: no ${path.join(siteArg, "index.html")} — build the site first (pnpm run docs)`);
  process.exit(1);
}

/** Every file under `dir`, as absolute paths. */
function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

const ENTITIES = { "&amp;": "&", "&quot;": '"', "&#39;": "'", "&lt;": "<", "&gt;": ">" };
const decodeEntities = (s) => s.replace(/&(amp|quot|#39|lt|gt);/g, (m) => ENTITIES[m]);
const ATTR = /\s(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
const ID = /\s(?:id|name)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;
// A URL with a scheme (https:, mailto:, data:, javascript:) or protocol-relative: not ours to check.
const EXTERNAL = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

const idCache = new Map();
function idsOf(file) {
  let ids = idCache.get(file);
  if (!ids) {
    ids = new Set();
    for (const m of readFileSync(file, "utf8").matchAll(ID)) ids.add(decodeEntities(m[1] ?? m[2]));
    idCache.set(file, ids);
  }
  return ids;
}

const rel = (p) => path.relative(site, p) || ".";
const problems = [];
const pages = walk(site).filter((f) => f.endsWith(".html"));
let links = 0;
for (const page of pages) {
  const html = readFileSync(page, "utf8");
  for (const m of html.matchAll(ATTR)) {
    const raw = decodeEntities(m[1] ?? m[2]).trim();
    if (raw === "" || EXTERNAL.test(raw)) continue;
    links++;
    const hash = raw.indexOf("#");
    const beforeHash = hash < 0 ? raw : raw.slice(0, hash);
    const fragment = hash < 0 ? "" : raw.slice(hash + 1);
    const urlPath = beforeHash.split("?")[0];
    const where = `${rel(page)}: ${raw}`;
    if (urlPath.startsWith("/")) {
      problems.push(`${where} — starts with "/": use a path relative to the page`);
      continue;
    }
    let decoded;
    try {
      decoded = decodeURIComponent(urlPath);
    } catch {
      problems.push(`${where} — not a valid URL path`);
      continue;
    }
    let target = urlPath === "" ? page : path.resolve(path.dirname(page), decoded);
    if (target !== site && !target.startsWith(site + path.sep)) {
      problems.push(`${where} — points outside the site`);
      continue;
    }
    if (existsSync(target) && statSync(target).isDirectory()) target = path.join(target, "index.html");
    if (!existsSync(target)) {
      problems.push(`${where} — no such file in the site (${rel(target)})`);
      continue;
    }
    const r = rel(target);
    if (r.startsWith(`media${path.sep}`) && /\.(md|markdown)$/i.test(r)) {
      problems.push(`${where} — links to a raw copy of a Markdown file: render it in the site (typedoc.json projectDocuments, or the "children" front matter of the guide that links it)`);
      continue;
    }
    if (fragment !== "" && target.endsWith(".html")) {
      let id;
      try {
        id = decodeURIComponent(fragment);
      } catch {
        id = fragment;
      }
      if (!idsOf(target).has(id)) problems.push(`${where} — ${r} has no id "${id}"`);
    }
  }
}

const guides = path.resolve(guidesArg);
if (!existsSync(guides)) problems.push(`guides folder ${guidesArg} does not exist`);
else {
  for (const name of readdirSync(guides).filter((n) => n.endsWith(".md")).sort()) {
    if (name === "index.md") continue; // the front page (typedoc.json "readme"): site/index.html
    const page = path.join(site, "documents", `${name.slice(0, -3)}.html`);
    if (!existsSync(page)) {
      problems.push(`${path.join(guidesArg, name)} is not in the site (no ${rel(page)}): add it to projectDocuments in typedoc.json`);
    }
  }
}

for (const p of problems) console.log(`broken: ${p}`);
console.log(`check-site-links: ${pages.length} pages, ${links} local links, ${problems.length} broken`);
process.exit(problems.length > 0 ? 1 : 0);
