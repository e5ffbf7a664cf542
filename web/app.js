// The imgsim search page: no framework, no network access beyond this server.
'use strict';
const $ = (id) => document.getElementById(id);
let collection = '';
let browseOffset = 0;
const PAGE = 24;
// Each collection's metric (from /collections): what its scores mean.
const metrics = {};
// Whether each collection can be searched by words (its embedder has a text tower).
const hasText = {};

function showError(msg) {
  const e = $('error');
  e.textContent = msg || '';
  e.hidden = !msg;
}

// The query image shown beside the results (object URLs are released).
function setQueryImage(src) {
  const img = $('query-img');
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  if (src) img.src = src; else img.removeAttribute('src');
  // A query by words has no picture.
  img.hidden = !src;
}

// Shows no answer: a failed search clears the previous one (its results
// and query), so that they are never taken for this query's.
function clearResults() {
  $('results').innerHTML = '';
  $('summary').textContent = '';
  delete $('summary').dataset.recall;
  $('score-note').textContent = '';
  setQueryImage(null);
  $('query').hidden = true;
}

function searchFailed(msg) {
  clearResults();
  showError(msg);
}

// What the scores of the current collection are, and which way is closer.
function scoreMeaning() {
  switch (metrics[collection]) {
    case 'cosine': return { label: 'similarity', note: 'Scores are cosine similarities: higher is closer.' };
    case 'l2': return { label: 'distance', note: 'Scores are L2 distances: lower is closer.' };
    default: return { label: 'score', note: '' };
  }
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  const ctype = r.headers.get('content-type') || '';
  const body = ctype.includes('json') ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
  return body;
}

const thumb = (id) => `/collections/${encodeURIComponent(collection)}/images/${id}/thumbnail`;

function card(item, extra, onClick) {
  const c = document.createElement('div');
  c.className = 'card';
  c.dataset.id = item.id;
  const img = document.createElement('img');
  img.loading = 'lazy';
  img.src = thumb(item.id);
  img.alt = item.path;
  const meta = document.createElement('div');
  meta.className = 'meta';
  if (extra) {
    const s = document.createElement('div');
    s.className = 'score';
    s.textContent = extra;
    meta.appendChild(s);
  }
  meta.appendChild(document.createTextNode(item.path.split('/').pop()));
  c.title = item.path;
  c.append(img, meta);
  c.addEventListener('click', onClick);
  return c;
}

function k() { return Math.max(1, Math.min(100, parseInt($('k').value, 10) || 12)); }

// The label the results must carry ('' for none).
function label() { return $('label').value; }

// The text box is shown only for collections that can be searched by words.
function showTextBox() {
  $('text-form').hidden = !hasText[collection];
}

// The label filter lists the collection's labels (from imgsim tag), if any.
async function loadLabels() {
  const sel = $('label');
  sel.length = 1;
  $('label-filter').hidden = true;
  try {
    const list = await api(`/collections/${encodeURIComponent(collection)}/labels`);
    for (const l of list.labels) {
      const o = document.createElement('option');
      o.value = l.label;
      o.textContent = `${l.label} (${l.count})`;
      sel.appendChild(o);
    }
    $('label-filter').hidden = list.labels.length === 0;
  } catch (e) { /* no labels: the filter stays hidden */ }
}

function render(answer, title, querySrc) {
  const exactIds = new Set((answer.exact || []).map((r) => r.id));
  const meaning = scoreMeaning();
  const t = answer.timings;
  const only = label() ? ` labelled ${label()}` : '';
  $('summary').textContent =
    `${title}: ${answer.results.length} results${only} in ${answer.took_ms.toFixed(1)} ms ` +
    `(decode ${t.decode_ms.toFixed(1)}, embed ${t.embed_ms.toFixed(1)}, search ${t.search_ms.toFixed(2)}, exact ${t.exact_ms.toFixed(2)} ms; ef ${answer.ef}) · ` +
    `recall@${answer.results.length} against exact search: ${answer.recall_at_k == null ? 'n/a' : answer.recall_at_k.toFixed(3)}`;
  $('summary').dataset.recall = answer.recall_at_k;
  $('score-note').textContent = meaning.note;
  setQueryImage(querySrc);
  $('query').hidden = false;
  const grid = $('results');
  grid.innerHTML = '';
  for (const r of answer.results) {
    const c = card(r, `#${r.rank} · ${meaning.label} ${r.score.toFixed(4)}`, () => searchById(r.id, r.path));
    if (answer.exact && !exactIds.has(r.id)) c.classList.add('miss');
    grid.appendChild(c);
  }
}

async function searchImage(file) {
  showError('');
  const form = new FormData();
  form.append('image', file);
  if (label()) form.append('label', label());
  try {
    const a = await api(`/collections/${encodeURIComponent(collection)}/search?k=${k()}&with_recall=true`, { method: 'POST', body: form });
    // The query image is shown with its results only: a file the server
    // refuses is never shown as a broken image.
    render(a, file.name, URL.createObjectURL(file));
  } catch (e) { searchFailed(e.message); }
}

async function searchById(id, path) {
  showError('');
  try {
    const a = await api(`/collections/${encodeURIComponent(collection)}/search`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id, k: k(), with_recall: true, label: label() || undefined }),
    });
    render(a, `more like ${path.split('/').pop()}`, thumb(id));
    show('search');
  } catch (e) {
    searchFailed(e.message);
    show('search');
  }
}

async function searchText(words) {
  showError('');
  try {
    const a = await api(`/collections/${encodeURIComponent(collection)}/search`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: words, k: k(), with_recall: true, label: label() || undefined }),
    });
    render(a, `“${words}”`, null);
  } catch (e) { searchFailed(e.message); }
}

async function browse() {
  try {
    const page = await api(`/collections/${encodeURIComponent(collection)}/images?offset=${browseOffset}&limit=${PAGE}`);
    $('browse-info').textContent = `${page.total} images; ${browseOffset + 1}–${Math.min(browseOffset + PAGE, page.total)} shown. Click one to search by it.`;
    const grid = $('browse');
    grid.innerHTML = '';
    for (const im of page.images) grid.appendChild(card(im, `id ${im.id}`, () => searchById(im.id, im.path)));
    $('prev').disabled = browseOffset === 0;
    $('next').disabled = browseOffset + PAGE >= page.total;
  } catch (e) { $('browse-info').textContent = e.message; }
}

function row(table, k, v) {
  const tr = table.insertRow();
  tr.insertCell().textContent = k;
  tr.insertCell().textContent = v;
}

async function stats() {
  const s = await api(`/collections/${encodeURIComponent(collection)}/stats`);
  const t = $('stats');
  t.innerHTML = '';
  row(t, 'images', s.count);
  metrics[s.name] = s.metric;
  row(t, 'vectors', `${s.dim}-d, ${s.metric}`);
  row(t, 'scores', scoreMeaning().note || 'n/a');
  row(t, 'embedder', s.embedder ? `${s.embedder.identity.architecture} (${s.embedder.identity.weights_origin})` : 'none');
  row(t, 'HNSW', `m ${s.index.m}, ef_construction ${s.index.ef_construction}`);
  row(t, 'ef in use', s.ef + (s.target_recall ? ` (holding recall ≥ ${s.target_recall})` : ''));
  row(t, 'live recall estimate', s.recall.recall_at_k == null ? `no sample yet (${(s.recall.sample_rate * 100).toFixed(0)}% of searches are re-run exactly)` : `${s.recall.recall_at_k.toFixed(4)} over the last ${Math.min(s.recall.samples, s.recall.window)} sampled queries (${s.recall.samples} in all)`);
  row(t, 'searches served', s.searches);
  row(t, 'segments / tombstones', `${s.segments} / ${s.tombstones}`);
  row(t, 'disk', `${(s.disk_bytes / 1048576).toFixed(1)} MiB`);
  try {
    drawCurve(await api('/benchmark'));
  } catch (e) { /* no report: the placeholder text stays */ }
}

function drawCurve(rep) {
  const pts = rep.runs.map((r) => [r.recall_at_10, r.qps_single_thread]).sort((a, b) => a[0] - b[0]);
  const W = 560, H = 300, L = 60, B = 40;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => Math.log10(p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => L + (x - x0) / ((x1 - x0) || 1) * (W - L - 20);
  const Y = (y) => H - B - (y - y0) / ((y1 - y0) || 1) * (H - B - 20);
  let s = `<svg width="${W}" height="${H}" role="img" aria-label="recall versus QPS"><rect width="${W}" height="${H}" fill="#fff"/>`;
  s += `<polyline fill="none" stroke="#2a6ef0" stroke-width="2" points="${pts.map((p) => `${X(p[0])},${Y(Math.log10(p[1]))}`).join(' ')}"/>`;
  for (const p of pts) s += `<circle cx="${X(p[0])}" cy="${Y(Math.log10(p[1]))}" r="3" fill="#2a6ef0"><title>recall ${p[0].toFixed(4)}, ${p[1].toFixed(0)} QPS</title></circle>`;
  s += `<text x="${W / 2}" y="${H - 8}" text-anchor="middle">recall@10 (${x0.toFixed(3)} – ${x1.toFixed(3)})</text>`;
  s += `<text x="12" y="${H / 2}" transform="rotate(-90 12 ${H / 2})" text-anchor="middle">QPS, 1 thread (log)</text>`;
  s += `<text x="${L}" y="14">${rep.dataset}: ${Math.round(10 ** y1)} QPS at the top, ${Math.round(10 ** y0)} at the bottom</text></svg>`;
  $('curve').innerHTML = s;
}

function show(view) {
  for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === view);
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${view}`;
  if (view === 'browse') browse();
  if (view === 'stats') stats().catch((e) => showError(e.message));
}

async function init() {
  const list = await api('/collections');
  const sel = $('collection');
  for (const c of list.collections) {
    metrics[c.name] = c.metric;
    hasText[c.name] = c.text;
    const o = document.createElement('option');
    o.value = c.name;
    o.textContent = `${c.name} (${c.count})`;
    sel.appendChild(o);
  }
  collection = sel.value;
  showTextBox();
  loadLabels();
  sel.addEventListener('change', () => {
    collection = sel.value;
    browseOffset = 0;
    showTextBox();
    loadLabels();
    // Results of another collection would be mislabelled (thumbnails, scores).
    clearResults();
    showError('');
    show('search');
  });
  for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => show(b.dataset.view));
  $('file').addEventListener('change', (e) => { if (e.target.files[0]) searchImage(e.target.files[0]); });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) searchImage(e.dataTransfer.files[0]);
  });
  $('text-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const words = $('text').value.trim();
    if (words) searchText(words); else showError('type some words to search for');
  });
  $('prev').addEventListener('click', () => { browseOffset = Math.max(0, browseOffset - PAGE); browse(); });
  $('next').addEventListener('click', () => { browseOffset += PAGE; browse(); });
}

init().catch((e) => showError(`cannot list collections: ${e.message}`));
