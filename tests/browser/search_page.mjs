// Drives the imgsim search page in a real browser (headless Chromium):
// load it, upload an image, see the results, click one to search by it.
//   node search_page.mjs BASE_URL IMAGE_PATH EXPECTED_FIRST_NAME
import { chromium } from 'playwright-core';

const [base, image, expected] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const fail = async (msg) => {
  console.error(`FAIL: ${msg}`);
  await browser.close();
  process.exit(1);
};
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  await page.goto(base, { waitUntil: 'networkidle' });
  await page.waitForSelector('#collection option', { state: 'attached' });
  // Upload through the file input.
  await page.setInputFiles('#file', image);
  await page.waitForSelector('#results .card', { timeout: 30000 });
  const cards = await page.$$('#results .card');
  if (cards.length < 2) await fail(`expected results, got ${cards.length}`);
  const first = await cards[0].getAttribute('title');
  if (!first.endsWith(expected)) await fail(`first result ${first}, expected ${expected}`);
  const summary = await page.textContent('#summary');
  if (!/recall@\d+ against exact search: 1\.000/.test(summary)) await fail(`summary: ${summary}`);
  // Thumbnails load.
  const loaded = await page.$$eval('#results img', (imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0));
  if (!loaded) await fail('a thumbnail did not load');
  // Click the second result: a search by its id.
  const secondTitle = await cards[1].getAttribute('title');
  await cards[1].click();
  await page.waitForFunction(() => document.querySelector('#summary').textContent.startsWith('more like'));
  const after = await page.textContent('#summary');
  const secondName = secondTitle.split('/').pop();
  if (!after.includes(secondName)) await fail(`after the click: ${after}`);
  const ids = await page.$$eval('#results .card', (cs) => cs.map((c) => c.dataset.id));
  // Browse and stats views render.
  await page.click('button[data-view=browse]');
  await page.waitForSelector('#browse .card');
  await page.click('button[data-view=stats]');
  await page.waitForFunction(() => document.querySelector('#stats').rows.length > 3);
  if (errors.length) await fail(errors.join('; '));
  console.log(`OK: ${cards.length} results, first ${first}; clicked ${secondName}: ${ids.length} results`);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}
