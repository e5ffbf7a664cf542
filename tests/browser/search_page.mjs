// Drives the imgsim search page in a real browser (headless Chromium):
// load it (nothing hidden shows, no broken query image), upload an image,
// see the results (scores labelled with which way is closer), click one to
// search by it, upload a file that is not an image (the error replaces the
// old results), browse, stats.
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
// Every element with the hidden attribute must not be displayed (a CSS
// display rule must not override it).
const hiddenShown = (page) => page.$$eval('[hidden]', (els) =>
  els.filter((e) => getComputedStyle(e).display !== 'none').map((e) => e.id || e.tagName));
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  await page.goto(base, { waitUntil: 'networkidle' });
  await page.waitForSelector('#collection option', { state: 'attached' });
  // (a) Before the first search: no query panel, no broken query image.
  let shown = await hiddenShown(page);
  if (shown.length) await fail(`hidden elements displayed on load: ${shown.join(', ')}`);
  if (await page.isVisible('#query')) await fail('the query panel shows before any search');
  if (await page.isVisible('#query-img')) await fail('a query image shows before any search');
  if (await page.isVisible('#error')) await fail('an error shows on load');
  // The collection's metric says which way scores go.
  const metric = await page.evaluate(async () => {
    const list = await (await fetch('/collections')).json();
    const name = document.querySelector('#collection').value;
    return list.collections.find((c) => c.name === name).metric;
  });
  const closer = { cosine: ['similarity', 'higher is closer'], l2: ['distance', 'lower is closer'] }[metric];
  if (!closer) await fail(`unknown metric ${metric}`);
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
  // The query image shows, loaded (not broken).
  if (!(await page.isVisible('#query-img'))) await fail('the query image does not show with its results');
  await page.waitForFunction(() => {
    const i = document.querySelector('#query-img');
    return i.complete && i.naturalWidth > 0;
  }, null, { timeout: 10000 }).catch(() => fail('the query image is broken'));
  // (c) Scores say what they are and which way is closer.
  const scoreLabels = await page.$$eval('#results .score', (ss) => ss.map((s) => s.textContent));
  if (!scoreLabels.length || !scoreLabels.every((t) => t.includes(closer[0]))) {
    await fail(`score labels for a ${metric} collection: ${scoreLabels.join(' | ')}`);
  }
  const note = await page.textContent('#score-note');
  if (!note.includes(closer[1])) await fail(`score note for a ${metric} collection: ${note}`);
  // Click the second result: a search by its id.
  const secondTitle = await cards[1].getAttribute('title');
  await cards[1].click();
  await page.waitForFunction(() => document.querySelector('#summary').textContent.startsWith('more like'));
  const after = await page.textContent('#summary');
  const secondName = secondTitle.split('/').pop();
  if (!after.includes(secondName)) await fail(`after the click: ${after}`);
  const ids = await page.$$eval('#results .card', (cs) => cs.map((c) => c.dataset.id));
  // (b) A failed search clears the old results. Wait for the thumbnails
  // first: clearing the grid must not cancel their requests.
  await page.waitForFunction(() => [...document.querySelectorAll('#results img, #query-img')].every((i) => i.complete));
  await page.setInputFiles('#file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('this is not an image') });
  await page.waitForSelector('#error', { state: 'visible' });
  const errorText = await page.textContent('#error');
  const left = await page.$$eval('#results .card', (cs) => cs.length);
  if (left !== 0) await fail(`after an error (${errorText}), ${left} old results still show`);
  if (await page.isVisible('#query')) await fail(`after an error (${errorText}), the old query and summary still show`);
  shown = await hiddenShown(page);
  if (shown.length) await fail(`hidden elements displayed after an error: ${shown.join(', ')}`);
  // Browse and stats views render.
  await page.click('button[data-view=browse]');
  await page.waitForSelector('#browse .card');
  await page.click('button[data-view=stats]');
  await page.waitForFunction(() => document.querySelector('#stats').rows.length > 3);
  if (errors.length) await fail(errors.join('; '));
  console.log(`OK: ${cards.length} results, first ${first}; clicked ${secondName}: ${ids.length} results; ` +
    `${metric} scores labelled "${closer[1]}"; a non-image cleared them with: ${errorText}`);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}
