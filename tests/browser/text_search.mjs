// Drives the search page's words search in headless Chromium: the text box
// shows for a CLIP collection and not for the other; typing words gives
// results with recall; the label filter lists the collection's labels and
// keeps only images carrying the chosen one.
//   node text_search.mjs BASE_URL CLIP_COLLECTION OTHER_COLLECTION
import { chromium } from 'playwright-core';

const [base, clipName, otherName] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const fail = async (msg) => {
  console.error(`FAIL: ${msg}`);
  await browser.close();
  process.exit(1);
};
const hiddenShown = (page) => page.$$eval('[hidden]', (els) =>
  els.filter((e) => getComputedStyle(e).display !== 'none').map((e) => e.id || e.tagName));
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base, { waitUntil: 'networkidle' });
  await page.waitForSelector('#collection option', { state: 'attached' });
  // The other collection has no text tower: no text box.
  await page.selectOption('#collection', otherName);
  if (await page.isVisible('#text-form')) await fail(`the text box shows for ${otherName}`);
  let shown = await hiddenShown(page);
  if (shown.length) await fail(`hidden elements displayed: ${shown.join(', ')}`);
  // The CLIP collection: text box and label filter.
  await page.selectOption('#collection', clipName);
  await page.waitForSelector('#text-form', { state: 'visible' });
  await page.waitForSelector('#label-filter', { state: 'visible' });
  const options = await page.$$eval('#label option', (os) => os.map((o) => o.value).filter((v) => v));
  if (options.length < 2) await fail(`label options: ${options}`);
  // Words alone.
  await page.fill('#text', 'a red square');
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.querySelector('#summary').textContent.startsWith('“a red square”'));
  const summary = await page.textContent('#summary');
  if (!/recall@\d+ against exact search: \d\.\d{3}/.test(summary)) await fail(`summary: ${summary}`);
  const all = await page.$$eval('#results .card', (cs) => cs.map((c) => Number(c.dataset.id)));
  if (all.length < 2) await fail(`expected results for words, got ${all.length}`);
  if (await page.isVisible('#query-img')) await fail('a query by words shows a query image');
  // With a label: only images carrying it (checked against the API).
  const chosen = options[0];
  await page.selectOption('#label', chosen);
  await page.click('#text-form button');
  await page.waitForFunction((l) => document.querySelector('#summary').textContent.includes(`labelled ${l}`), chosen);
  const filtered = await page.$$eval('#results .card', (cs) => cs.map((c) => Number(c.dataset.id)));
  const carrying = await page.evaluate(async ([c, l]) => {
    const p = await (await fetch(`/collections/${c}/images?limit=500`)).json();
    return p.images.filter((i) => (i.attrs.labels || []).some((x) => x.label === l)).map((i) => i.id);
  }, [clipName, chosen]);
  if (!filtered.length) await fail(`no results with label ${chosen}`);
  const stray = filtered.filter((id) => !carrying.includes(id));
  if (stray.length) await fail(`results without label ${chosen}: ${stray}`);
  // Empty words are refused on the page, without a request.
  await page.fill('#text', '   ');
  await page.press('#text', 'Enter');
  await page.waitForSelector('#error', { state: 'visible' });
  shown = await hiddenShown(page);
  if (shown.length) await fail(`hidden elements displayed: ${shown.join(', ')}`);
  if (errors.length) await fail(errors.join('; '));
  console.log(`OK: words gave ${all.length} results (${summary}); label ${chosen}: ${filtered.length} results, all carrying it`);
  await browser.close();
} catch (e) {
  await fail(e.stack || String(e));
}
