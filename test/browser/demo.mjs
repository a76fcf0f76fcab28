// Drives the uploadgate demo pages in headless Chromium (Debian's chromium
// package, never a downloaded browser) and prints one JSON line with what the
// page reported.
//
//   node demo.mjs --mode tus|offline|reload|uppy --page URL [--slot URL]
//                 --file PATH [--file PATH]... [--screenshot PATH]
//                 [--throttle BYTES_PER_SECOND] [--offline-ms MS]
//
// tus:     upload --file through the tus-js-client page with --slot.
// offline: the same, with the browser offline for --offline-ms mid-upload.
// reload:  the same, with the page reloaded mid-upload and the file chosen again.
// uppy:    upload every --file at once through the Uppy page (slots minted by the gateway).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    mode: { type: 'string', default: 'tus' },
    page: { type: 'string' },
    slot: { type: 'string', default: '' },
    file: { type: 'string', multiple: true, default: [] },
    screenshot: { type: 'string', default: '' },
    throttle: { type: 'string', default: '0' },
    'offline-ms': { type: 'string', default: '5000' },
    'chunk-size': { type: 'string', default: '' },
    executable: { type: 'string', default: '/usr/bin/chromium' },
  },
});

const result = { ok: false, error: '', mode: opt.mode, events: [], consoleErrors: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => result.events.push(`${new Date().toISOString()} ${msg}`);

const userDataDir = mkdtempSync(join(tmpdir(), 'uploadgate-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opt.executable,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error') result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.consoleErrors.push(String(e)));

  const throttle = Number(opt.throttle);
  async function applyThrottle() {
    if (!throttle) return;
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: throttle,
    });
  }

  let pageURL = opt.page;
  if (opt['chunk-size']) {
    const u = new URL(pageURL);
    u.searchParams.set('chunkSize', opt['chunk-size']);
    pageURL = u.href;
  }
  await page.goto(pageURL);
  await applyThrottle();

  if (opt.mode === 'uppy') {
    await page.waitForFunction(() => window.uppy !== undefined);
    await page.locator('input.uppy-Dashboard-input[type=file]').first().setInputFiles(opt.file);
    await page.waitForFunction((n) => window.uppy.getFiles().length === n, opt.file.length);
    log('files added');
    await page.evaluate(() => { window.uppy.upload(); });
    if (opt.screenshot) {
      await page.waitForFunction(() => window.uppy.getFiles().some((f) => f.progress.bytesUploaded > 0), null, { polling: 50 });
      await page.screenshot({ path: opt.screenshot, fullPage: true });
      log('screenshot taken');
    }
    await page.waitForFunction(() => window.uploadgateUppyState.complete, null, { timeout: 180000 });
    result.uppy = await page.evaluate(() => window.uploadgateUppyState);
    result.ok = result.uppy.failed.length === 0 && result.uppy.done.length === opt.file.length;
    if (!result.ok) result.error = 'Uppy reported failures';
  } else {
    const choose = async (slot) => {
      await page.fill('#slot', slot);
      await page.setInputFiles('#files', opt.file);
      await page.click('#start');
      await page.waitForFunction(() => window.uploadgateDemo.uploads.length > 0);
    };
    const bytes = () => page.evaluate(() => window.uploadgateDemo.uploads[0].bytes);
    const size = async () => page.evaluate(() => window.uploadgateDemo.uploads[0].size);
    await choose(opt.slot);
    if (opt.screenshot) {
      await page.waitForFunction(() => window.uploadgateDemo.uploads[0].bytes > 0, null, { polling: 50 });
      await page.screenshot({ path: opt.screenshot, fullPage: true });
      log('screenshot taken');
    }
    if (opt.mode === 'offline' || opt.mode === 'reload') {
      const quarter = Math.floor((await size()) / 4);
      await page.waitForFunction((q) => window.uploadgateDemo.uploads[0].bytes >= q, quarter, { polling: 20, timeout: 120000 });
      log(`at ${await bytes()} bytes: ${opt.mode}`);
      if (opt.mode === 'offline') {
        await context.setOffline(true);
        await sleep(Number(opt['offline-ms']));
        result.offlineShown = await page.textContent('#network');
        result.bytesWhileOffline = await bytes();
        await context.setOffline(false);
        log('online again');
      } else {
        result.bytesBeforeReload = await bytes();
        await page.reload();
        await applyThrottle();
        await choose('');
        log('file chosen again');
      }
    }
    await page.waitForFunction(
      () => window.uploadgateDemo.uploads.every((u) => u.done || u.error),
      null, { timeout: 180000 });
    result.state = await page.evaluate(() => window.uploadgateDemo);
    result.networkText = await page.textContent('#network');
    const failed = result.state.uploads.filter((u) => !u.done);
    result.ok = failed.length === 0;
    if (!result.ok) result.error = failed.map((u) => `${u.name}: ${u.error}`).join('; ');
  }
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
