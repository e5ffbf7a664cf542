// Takes the README's picture of the search page (docs/img/page.png): opens a
// running `imgsim serve` in headless Chromium, searches with an image through
// the page's file input, waits for every thumbnail, and saves the viewport.
//
//   node tools/docs/screenshot.mjs BASE_URL IMAGE OUT.png [K]
//
// Uses the playwright-core that `bash tools/ci/install-deps.sh` installs into
// tests/browser/ (CHROMIUM=PATH for another browser than /usr/bin/chromium).
// How docs/img/page.png was made, from the repository root (Debian's
// gnome-backgrounds and mate-backgrounds; pngquant to keep the file small):
//
//   export IMGSIM_DATA_DIR=$(mktemp -d)
//   target/debug/imgsim index /usr/share/backgrounds --train-autoencoder
//   target/debug/imgsim serve --bind 127.0.0.1:8765 &
//   node tools/docs/screenshot.mjs http://127.0.0.1:8765/ \
//       /usr/share/backgrounds/mate/abstract/Elephants.jpg /tmp/page.png 8
//   kill -INT %1
//   pngquant --quality 60-85 --speed 1 --output docs/img/page.png /tmp/page.png
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, image, out, kArg] = process.argv.slice(2);
if (!base || !image || !out) {
  console.error('usage: node tools/docs/screenshot.mjs BASE_URL IMAGE OUT.png [K]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
  ],
});
let status = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 }, deviceScaleFactor: 1 });
  await page.goto(base, { waitUntil: 'networkidle' });
  await page.waitForSelector('#collection option', { state: 'attached' });
  if (kArg) await page.fill('#k', kArg);
  await page.setInputFiles('#file', image);
  await page.waitForSelector('#results .card', { timeout: 60000 });
  await page.waitForFunction(
    // Thumbnails load lazily: only those in the viewport must have arrived.
    () => [...document.querySelectorAll('#results img, #query-img')]
      .filter((i) => i.getBoundingClientRect().top < window.innerHeight)
      .every((i) => i.complete && i.naturalWidth > 0),
    null, { timeout: 60000 },
  );
  await page.screenshot({ path: out });
  console.log(`${out}: ${(await page.textContent('#summary')).trim()}`);
} catch (e) {
  console.error(e.stack || String(e));
  status = 1;
}
await browser.close();
process.exit(status);
