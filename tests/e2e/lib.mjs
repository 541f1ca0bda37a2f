// Shared plumbing of the browser tests: the browser, the stack's URL,
// artifacts (screenshots, axe reports), test images, and page helpers.
//
// Environment:
//   PROFILE_WEB_URL        base URL of the running web server (set by
//                          scripts/stack.sh test; default http://127.0.0.1:28080)
//   PROFILE_E2E_ARTIFACTS  where screenshots and axe reports go
//                          (default build/e2e-artifacts)
//   PROFILE_CHROMIUM       the browser (default /usr/bin/chromium, Debian's)
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

export const REPO_ROOT = path.resolve(here, '..', '..');
export const BASE_URL = (process.env.PROFILE_WEB_URL || 'http://127.0.0.1:28080').replace(/\/+$/, '');
export const ARTIFACTS = process.env.PROFILE_E2E_ARTIFACTS || path.join(REPO_ROOT, 'build', 'e2e-artifacts');
export const PASSWORD = 'password123';
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

// Headless Debian chromium; playwright launches it with a fresh temporary
// --user-data-dir of its own (removed on close). No browser download.
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.PROFILE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A new browser context (its own cookies) whose pages record every script
// error and every Content-Security-Policy violation in ctx.problems.
export async function newContext(browser, options = {}) {
  const ctx = await browser.newContext({ baseURL: BASE_URL, viewport: DESKTOP, ...options });
  ctx.problems = [];
  ctx.on('page', (page) => watch(ctx, page));
  return ctx;
}

function watch(ctx, page) {
  page.on('pageerror', (err) => ctx.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to (load|execute|apply)/i.test(text)) ctx.problems.push(`CSP: ${text}`);
  });
}

export async function newPage(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(30000);
  return page;
}

// Logs in through the form; returns the page on /profile.
export async function login(page, username, password = PASSWORD) {
  await page.goto('/');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await Promise.all([page.waitForURL(/\/profile$/), page.getByRole('button', { name: 'Log in' }).click()]);
  return page;
}

export function artifact(...parts) {
  const file = path.join(ARTIFACTS, ...parts);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return file;
}

// Full-page screenshots of the page at phone and desktop widths.
export async function screenshots(page, name) {
  const files = [];
  for (const [label, size] of [['phone', PHONE], ['desktop', DESKTOP]]) {
    await page.setViewportSize(size);
    const file = artifact('screenshots', `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    files.push(file);
  }
  await page.setViewportSize(DESKTOP);
  return files;
}

const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

// Runs axe-core (WCAG 2.x A/AA and best practices) on the page, writes the
// full result to the artifacts and returns its violations. Evaluated
// through the DevTools protocol, so the page's CSP needs no exception.
export async function axeScan(page, name) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    resultTypes: ['violations'],
  }));
  const summary = result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
  fs.writeFileSync(artifact('axe', `${name}.json`), JSON.stringify({ url: page.url(), summary, violations: result.violations }, null, 2));
  return summary;
}

// --- test images -----------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// An RGB PNG (PNG spec, colour type 2, 8 bits) of width x height with a
// colour gradient and a light disc, so a rendered picture is recognisable.
export function pngImage(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const dx = x - width / 2, dy = y - height / 2;
      const disc = dx * dx + dy * dy < (width * width) / 16;
      const i = row + 1 + x * 3;
      raw[i] = disc ? 250 : Math.round((255 * x) / width);
      raw[i + 1] = disc ? 240 : Math.round((180 * y) / height);
      raw[i + 2] = disc ? 200 : 200;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// The path of a file huge.png of `bytes` bytes that starts like a PNG (the
// rest is zeros), written once under the artifacts. A path, not a buffer:
// the browser then reads it from disk instead of receiving megabytes of
// base64 over the DevTools pipe, which is slow on a busy machine.
export function bigFile(bytes) {
  const file = artifact('tmp', String(bytes), 'huge.png');
  if (!fs.existsSync(file) || fs.statSync(file).size !== bytes) {
    const buf = Buffer.alloc(bytes);
    pngImage(8, 8).copy(buf);
    fs.writeFileSync(file, buf);
  }
  return file;
}
