// The documentation is a map that leads somewhere: every relative link in
// README.md and docs/*.md names a file that exists, and a link to a heading
// (#anchor) names a heading that is there; the README stays a map (under 300
// lines) and lists every page of docs/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const PAGES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N}\- ]/gu, '')
    .replace(/ /g, '-');
}

function headings(text: string): Set<string> {
  // Fenced code is not a heading, whatever its lines start with.
  const prose = text.replace(/^```[\s\S]*?^```/gm, '');
  return new Set([...prose.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1] as string)));
}

test('every relative link in README.md and docs/*.md resolves, to the file and to the heading', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    const text = readFileSync(join(ROOT, page), 'utf8').replace(/^```[\s\S]*?^```/gm, '');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = m[1] as string;
      if (/^[a-z]+:/i.test(link)) continue; // https:, mailto:
      const [path = '', hash] = link.split('#');
      const target = path === '' ? join(ROOT, page) : resolve(dirname(join(ROOT, page)), path);
      if (!existsSync(target)) {
        broken.push(`${page}: ${link} (no such file)`);
        continue;
      }
      if (hash !== undefined && target.endsWith('.md') && !headings(readFileSync(target, 'utf8')).has(hash)) broken.push(`${page}: ${link} (no such heading)`);
    }
  }
  assert.deepEqual(broken, []);
});

test('the README is a map: under 300 lines, listing every page of docs/', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.split('\n').length < 300, `${readme.split('\n').length} lines`);
  for (const page of PAGES.filter((p) => p.startsWith('docs/'))) assert.ok(readme.includes(`](${page})`), `README links ${page}`);
});
