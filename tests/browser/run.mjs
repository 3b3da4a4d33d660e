// Browser test of the web app: serves the built page (target/dist by default), then
//  1. with WebGPU (--enable-unsafe-webgpu, SwiftShader): autostarts MnistCnn training and
//     asserts that steps advance and the loss falls; prints the img/s the page reports;
//  2. without WebGPU: asserts the page shows the clear "no WebGPU" message.
// The page exposes its state as JSON in #nnlab-state (WebGPU canvases screenshot blank in
// headless Chromium, so we read state, not pixels).
// Usage: node run.mjs [dist dir]  (env: STEPS=30 BATCH=64 TIMEOUT_S=240 OUT=dir)
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const dist = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '../../target/dist'));
const STEPS = Number(process.env.STEPS ?? 30);
const BATCH = Number(process.env.BATCH ?? 64);
const TIMEOUT_S = Number(process.env.TIMEOUT_S ?? 240);
const OUT = process.env.OUT;
if (!fs.existsSync(path.join(dist, 'index.html'))) {
  console.error(`no index.html in ${dist}: build the page first (trunk build, or scripts/web-build)`);
  process.exit(2);
}

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const file = path.join(dist, url.pathname === '/' ? 'index.html' : decodeURIComponent(url.pathname));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404); res.end(); return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

const common = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'];

async function withPage(extraFlags, fn) {
  const dir = fs.mkdtempSync('/tmp/nnlab-chromium-');
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...common, ...extraFlags],
    viewport: { width: 1280, height: 800 },
  });
  try {
    const page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.log('  [page]', m.text()); });
    page.on('pageerror', (e) => console.log('  [page error]', e.message));
    return await fn(page);
  } finally {
    await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const state = async (page) => JSON.parse(await page.locator('#nnlab-state').textContent());
function check(cond, msg) { if (!cond) { throw new Error(msg); } }

let failed = false;
async function test(name, fn) {
  const t0 = Date.now();
  try { await fn(); console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`); }
  catch (e) { failed = true; console.log(`FAIL ${name}: ${e.message}`); }
}

await test(`WebGPU: MnistCnn batch ${BATCH} trains, steps advance, loss falls`, () =>
  withPage(['--enable-unsafe-webgpu'], async (page) => {
    await page.goto(`${base}?autostart&model=mnist-cnn&batch=${BATCH}`);
    const deadline = Date.now() + TIMEOUT_S * 1000;
    let s = await state(page), rates = [], lastSteps = -1;
    while (Date.now() < deadline) {
      await page.waitForTimeout(1000);
      s = await state(page);
      check(!['no-webgpu', 'no-gpu', 'error'].includes(s.status), `page says ${JSON.stringify(s)}`);
      check(!s.error, `app error: ${s.error}`);
      if (s.steps !== lastSteps) {
        console.log(`  steps ${s.steps} loss ${s.loss?.toFixed?.(4)} img/s ${s.img_per_s?.toFixed?.(1)} frame ${s.frame_ms?.toFixed?.(1)} ms`);
        lastSteps = s.steps;
      }
      if (s.img_per_s && s.steps > 5) rates.push(s.img_per_s);
      if (s.steps >= STEPS) break;
    }
    check(s.steps >= STEPS, `only ${s.steps} steps in ${TIMEOUT_S} s`);
    check(s.loss < s.first_loss * 0.8, `loss did not fall: first ${s.first_loss}, now ${s.loss}`);
    const rate = rates.length ? rates.reduce((a, b) => a + b) / rates.length : 0;
    console.log(`  browser training: ${rate.toFixed(1)} img/s (MnistCnn, batch ${BATCH}; TF.js here: 30 webgpu, 164 webgl)`);
    if (OUT) {
      fs.mkdirSync(OUT, { recursive: true });
      fs.writeFileSync(path.join(OUT, 'browser.json'), JSON.stringify({ ...s, mean_img_per_s: rate }, null, 1));
    }
  }));

await test('without WebGPU: the page explains what is missing', () =>
  withPage([], async (page) => {
    await page.goto(`${base}?autostart`);
    await page.waitForFunction(() => JSON.parse(document.querySelector('#nnlab-state').textContent).status !== 'loading', null, { timeout: 60000 });
    const s = await state(page);
    check(s.status === 'no-webgpu', `expected no-webgpu, got ${JSON.stringify(s)}`);
    const msg = await page.locator('#nnlab-message').innerText();
    check(await page.locator('#nnlab-message').isVisible(), 'message not visible');
    check(/WebGPU/.test(msg) && /enable-unsafe-webgpu/.test(msg) && /Chrome/.test(msg), `unclear message: ${msg}`);
    check(await page.locator('#nnlab-canvas').count() === 0, 'the blank canvas is still there');
    console.log(`  message: ${msg.split('\n')[1] ?? msg}`);
  }));

server.close();
process.exit(failed ? 1 : 0);
