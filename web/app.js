/*
 * clipdex web page: search, duplicates and status views over clipdexd's
 * JSON API (POST /api, docs/PROTOCOL.md).  No framework, no external
 * resources.  Everything shown is set with textContent (never as HTML).
 * The state of a view lives in the URL, so searches can be bookmarked.
 */
'use strict';

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('clipdex.token') || '';

/* ---- the query syntax of docs/CLI.md ---- */

/* Parses a query into [{kind, value, weight}], kind one of text, file
 * (an "@name"/"img:name" example image), path, id, learned (a classifier
 * made by learn).  The daemon parses it
 * (op "parse", the C parser of common/query.c): the syntax has one
 * definition.  Rejects with an Error whose message says what is wrong. */
async function parseQuery(query) {
  return (await api({ op: 'parse', query })).terms;
}

/* ---- talking to the daemon ---- */

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function api(req) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch('/api', { method: 'POST', headers, body: JSON.stringify(req) });
  } catch (e) {
    throw new ApiError('network', 'cannot reach clipdexd: ' + e.message);
  }
  let body;
  try { body = await res.json(); } catch (e) { body = null; }
  if (body && body.ok) return body;
  const err = body && body.error ? body.error : { code: 'http', message: `HTTP ${res.status}` };
  if (err.code === 'unauthorized') {
    await askToken();
    return api(req);
  }
  throw new ApiError(err.code, err.message);
}

/* One dialog at a time: calls that need the token meanwhile wait for it. */
let asking = null;
function askToken() {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const d = $('token-dialog');
    $('token').value = '';
    d.addEventListener('close', () => {
      token = $('token').value.trim();
      sessionStorage.setItem('clipdex.token', token);
      asking = null;
      resolve();
    }, { once: true });
    d.showModal();
  });
  return asking;
}

/* An <img> of a thumbnail or image.  With a token the bytes are fetched
 * with the Authorization header (an <img src> cannot send one). */
function setImage(img, url) {
  if (!token) { img.src = url; return; }
  fetch(url, { headers: { Authorization: 'Bearer ' + token } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.status))))
    .then((b) => { img.src = URL.createObjectURL(b); })
    .catch(() => img.classList.add('broken'));
}

/* A frame's time in its clip: "1:42" or "1:02:05". */
function fmtClipTime(t) {
  const s = Math.floor(t), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/* Plays the clip of frame hit h from the frame's time (a media fragment,
 * #t=SECONDS; the daemon answers range requests, so the browser seeks). */
function openVideo(h) {
  const d = $('video-dialog'), v = $('player');
  const frag = `#t=${h.time.toFixed(3)}`;
  $('player-path').textContent = `${shortPath(h.path)} @ ${fmtClipTime(h.time)}`;
  $('player-path').title = h.path;
  $('player-original').href = `/video/${h.id}`;
  if (!token) {
    v.src = `/video/${h.id}${frag}`;
  } else {
    // <video src> cannot send the token: the clip as a blob
    fetch(`/video/${h.id}`, { headers: { Authorization: 'Bearer ' + token } })
      .then((r) => r.blob()).then((b) => { v.src = URL.createObjectURL(b) + frag; });
  }
  d.showModal();
  v.play().catch(() => {});
}

function openImage(id) {
  const url = `/image/${id}`;
  if (!token) { window.open(url, '_blank', 'noopener'); return; }
  fetch(url, { headers: { Authorization: 'Bearer ' + token } })
    .then((r) => r.blob()).then((b) => window.open(URL.createObjectURL(b), '_blank'));
}

/* ---- little helpers ---- */

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function dateToEpoch(d, endOfDay) {
  if (!d) return null;
  const t = Date.parse(d + 'T00:00:00Z') / 1000;
  return isNaN(t) ? null : (endOfDay ? t + 86399 : t);
}

function fmtDuration(s) {
  if (!isFinite(s) || s < 0) return '–';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(0)} KiB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MiB`;
  return `${(n / 1073741824).toFixed(2)} GiB`;
}

function fmtTime(t) {
  return t === null || t === undefined ? '' : new Date(t * 1000).toISOString().slice(0, 10);
}

/* "3.2 ms", "41 ms", "1.3 s" */
function fmtMs(ms) {
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/* Copies text to the clipboard; says so on the button. */
async function copyText(text, btn) {
  const label = btn.textContent;
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch (e) {
    const t = el('textarea');
    t.value = text;
    document.body.append(t);
    t.select();
    try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
    t.remove();
  }
  btn.textContent = ok ? 'copied' : 'cannot copy';
  setTimeout(() => { btn.textContent = label; }, 1500);
}

function shortPath(p) {
  const parts = p.split('/');
  return parts.length > 2 ? parts.slice(-2).join('/') : p;
}

/* ---- example images (search by example) ---- */

const examples = [];   /* {name, b64, weight, url} */

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result.slice(r.result.indexOf(',') + 1));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function addExamples(files) {
  for (const f of files) {
    // Every format the daemon reads (HEIC, RAW, ... often come without
    // a type): the daemon decides, and says so if it cannot.
    if (f.type && !f.type.startsWith('image/') && f.type !== 'application/octet-stream') {
      showMsg($('msg'), `${f.name}: not an image (${f.type})`, true);
      continue;
    }
    const b64 = await readAsBase64(f);
    const old = examples.findIndex((e) => e.name === f.name);
    if (old >= 0) examples.splice(old, 1);
    examples.push({ name: f.name, b64, weight: 1, url: URL.createObjectURL(f) });
  }
  renderExamples();
  search({ push: true });
}

function renderExamples() {
  const box = $('examples');
  box.replaceChildren();
  for (const ex of examples) {
    const chip = el('div', 'chip');
    const img = el('img');
    img.src = ex.url;
    img.alt = ex.name;
    const name = el('span', 'name', '@' + ex.name);
    name.title = 'Use @' + ex.name + ' in the query to place it; else it is added with this weight';
    const w = el('input');
    w.type = 'number';
    w.step = '0.1';
    w.value = String(ex.weight);
    w.title = 'weight (negative: less like this)';
    w.addEventListener('change', () => {
      const v = parseFloat(w.value);
      if (v) { ex.weight = v; search({ push: false }); }
    });
    const x = el('button', 'x', '×');
    x.type = 'button';
    x.title = 'remove';
    x.addEventListener('click', () => {
      examples.splice(examples.indexOf(ex), 1);
      URL.revokeObjectURL(ex.url);
      renderExamples();
      search({ push: false });
    });
    chip.append(img, name, w, x);
    box.append(chip);
  }
}

/* ---- the start page: example queries for the loaded model ---- */

/* The demo model (models/demo, docs/DEMO.md) knows only its rendered
 * shapes; other models get everyday photo queries. */
const DEMO_QUERIES = ['two red circles', 'a blue star in the top left',
  'a square on a striped background', 'yellow triangles - 0.5:checkered background'];
const PHOTO_QUERIES = ['a dog on the beach', 'sunset over the sea',
  'a birthday cake with candles', 'snow in the mountains', 'a city street at night'];

async function showSuggestions() {
  const box = $('suggest');
  if (box.dataset.model) return;
  let st;
  try { st = await api({ op: 'status' }); } catch (e) { return; }
  const name = String((st.model && st.model.id) || '').split('@')[0];
  box.dataset.model = name || '?';
  const qs = /^demo/i.test(name) ? DEMO_QUERIES : PHOTO_QUERIES;
  box.replaceChildren(el('span', 'muted',
    `${st.images.toLocaleString()} images, model ${name}. Try: `));
  for (const q of qs) {
    const b = el('button', 'suggestion', q);
    b.type = 'button';
    b.addEventListener('click', () => { $('q').value = q; search({ push: true }); });
    box.append(b);
  }
}

/* ---- the search view ---- */

let page = { req: null, offset: 0, seq: 0 };

function showMsg(p, text, isError) {
  p.textContent = text;
  p.classList.toggle('error', !!isError);
}

function readForm() {
  return {
    q: $('q').value.trim(), folder: $('folder').value.trim(), from: $('from').value,
    to: $('to').value, time: $('time').value, min: $('min').value.trim(), k: $('k').value,
    tags: $('tags').value.trim(), nottags: $('nottags').value.trim(),
  };
}

function writeForm(st) {
  $('q').value = st.q || '';
  $('folder').value = st.folder || '';
  $('from').value = st.from || '';
  $('to').value = st.to || '';
  $('time').value = st.time === 'mtime' ? 'mtime' : 'capture';
  $('min').value = st.min || '';
  $('k').value = ['24', '48', '96', '200'].includes(st.k) ? st.k : '48';
  $('tags').value = st.tags || '';
  $('nottags').value = st.nottags || '';
  if (st.folder || st.from || st.to || st.min || st.tags || st.nottags) $('filters').open = true;
}

function formToURL(st) {
  const u = new URLSearchParams();
  for (const key of ['q', 'folder', 'from', 'to', 'min', 'tags', 'nottags']) if (st[key]) u.set(key, st[key]);
  if ((st.from || st.to) && st.time === 'mtime') u.set('time', 'mtime');
  if (st.k && st.k !== '48') u.set('k', st.k);
  const s = u.toString();
  return s ? '/?' + s : '/';
}

/* The request for the form's state, or rejects with an Error. */
async function buildRequest(st) {
  const terms = [];
  const used = new Set();
  if (st.q) {
    for (const t of await parseQuery(st.q)) {
      if (t.kind === 'text') terms.push({ text: t.value, weight: t.weight });
      else if (t.kind === 'id') terms.push({ id: Number(t.value), weight: t.weight });
      else if (t.kind === 'path') terms.push({ path: t.value, weight: t.weight });
      else if (t.kind === 'learned') terms.push({ learned: t.value, weight: t.weight });
      else {
        const ex = examples.find((e) => e.name === t.value);
        if (!ex) throw new Error(`@${t.value}: add that image first (drop it on the page or use "Image…")`);
        used.add(ex);
        terms.push({ image: ex.b64, weight: t.weight });
      }
    }
  }
  for (const ex of examples) if (!used.has(ex)) terms.push({ image: ex.b64, weight: ex.weight });
  if (terms.length === 0) return null;
  if (terms.length > 16) throw new Error('at most 16 terms in one query');
  const req = { op: 'search', terms, k: parseInt(st.k, 10) || 48 };
  const filter = {};
  if (st.folder) filter.path_prefix = st.folder.endsWith('/') ? st.folder : st.folder + '/';
  const from = dateToEpoch(st.from, false), to = dateToEpoch(st.to, true);
  if (from !== null || to !== null) {
    filter.time = st.time === 'mtime' ? 'mtime' : 'capture';
    if (from !== null) filter.from = from;
    if (to !== null) filter.to = to;
  }
  if (Object.keys(filter).length) req.filter = filter;
  const tags = splitTags(st.tags), notTags = splitTags(st.nottags);
  if (tags.length) req.tags = tags;
  if (notTags.length) req.not_tags = notTags;
  if (st.min !== '' && st.min.endsWith('%')) {
    // a match probability: SigLIP models, text queries
    const p = parseFloat(st.min.slice(0, -1));
    if (!(p >= 0 && p <= 100)) throw new Error('the minimum probability is a percentage from 0% to 100%');
    req.min_prob = p / 100;
  } else if (st.min !== '') {
    const m = parseFloat(st.min);
    if (!(m >= -1 && m <= 1)) throw new Error('the minimum score is a number from -1 to 1, or a probability such as 50%');
    req.min_score = m;
  }
  return req;
}

async function search({ push }) {
  const st = readForm();
  const url = formToURL(st);
  if (push && location.pathname + location.search !== url) history.pushState(null, '', url);
  else if (!push) history.replaceState(null, '', url);
  document.title = st.q ? `${st.q} – clipdex` : 'clipdex';
  let req;
  try {
    req = await buildRequest(st);
  } catch (e) {
    showMsg($('msg'), e.message, true);
    return;
  }
  $('results').replaceChildren();
  $('more').hidden = true;
  $('date-hint').hidden = true;
  $('hint').hidden = req !== null;
  $('suggest').hidden = req !== null;
  renderQueryImages(req);
  if (req === null) { showMsg($('msg'), ''); showSuggestions(); return; }
  page = { req, offset: 0, seq: page.seq + 1 };
  await loadPage();
}

/* The indexed images the query names (id:N, "More like this"), above the
 * results, so the page shows what it is looking for. */
function renderQueryImages(req) {
  const box = $('query-images');
  box.replaceChildren();
  for (const t of req ? req.terms : []) {
    if (t.id === undefined) continue;
    const fig = el('figure', 'qimg');
    fig.dataset.id = String(t.id);
    const img = el('img');
    img.alt = 'id:' + t.id;
    img.width = 96;
    img.height = 96;
    setImage(img, `/thumb/${t.id}`);
    const a = el('a', 'thumb');
    a.href = `/image/${t.id}`;
    a.target = '_blank';
    a.rel = 'noopener';
    a.title = 'Open the full image';
    a.addEventListener('click', (ev) => { if (token) { ev.preventDefault(); openImage(t.id); } });
    a.append(img);
    fig.append(a, el('figcaption', '', (t.weight < 0 ? 'less like ' : 'more like ') + 'id:' + t.id));
    box.append(fig);
  }
  box.hidden = box.children.length === 0;
}

async function loadPage() {
  const mine = page.seq;
  const req = Object.assign({}, page.req, { offset: page.offset });
  showMsg($('msg'), 'Searching…');
  $('more').hidden = true;
  let r;
  const t0 = performance.now();
  try {
    r = await api(req);
  } catch (e) {
    if (mine === page.seq) showMsg($('msg'), e.message, true);
    return;
  }
  if (mine !== page.seq) return;   /* a newer search started */
  const ms = performance.now() - t0;
  const grid = $('results');
  for (const h of r.results) {
    grid.append(tile(h, page.offset + grid.children.length + 1));
    for (const q of document.querySelectorAll(`#query-images .qimg[data-id="${h.id}"]`))
      q.querySelector('img').title = h.path;
  }
  const n = grid.children.length;
  /* a short page is the end: then n is every match; else more may follow */
  const all = r.results.length < req.k;
  showMsg($('msg'), n === 0 ? `No results (${fmtMs(ms)}).` : all ?
    `${n} result${n === 1 ? '' : 's'} in ${fmtMs(ms)}` :
    `first ${n} results in ${fmtMs(ms)} (more below)`);
  dateHint(r.no_capture_time);
  page.offset += r.results.length;
  $('more').hidden = all || page.offset + req.k > 10000;
}

/* A date filter on the capture time skips images without one (no EXIF
 * date): say how many, and offer the files' dates instead. */
function dateHint(n) {
  const p = $('date-hint');
  p.hidden = !(n > 0) || $('time').value !== 'capture';
  if (p.hidden) return;
  const b = el('button', '', 'Use file dates');
  b.type = 'button';
  b.addEventListener('click', () => { $('time').value = 'mtime'; search({ push: true }); });
  p.replaceChildren(el('span', '', `${n.toLocaleString()} image${n === 1 ? ' has' : 's have'} ` +
    'no capture date (EXIF) and cannot match the dates. '), b);
}

function tile(h, rank) {
  const fig = el('figure', 'tile');
  fig.dataset.id = String(h.id);
  const a = el('a', 'thumb');
  a.href = '/?q=' + encodeURIComponent('id:' + h.id);
  a.title = 'More like this';
  const img = el('img');
  img.loading = 'lazy';
  img.decoding = 'async';
  img.alt = shortPath(h.path);
  img.width = 200;
  img.height = 200;
  setImage(img, `/thumb/${h.id}?v=${h.mtime}`);
  a.append(img);
  const frame = h.kind === 'frame';
  if (frame) {
    // a frame of a video clip: its time on the thumbnail
    const t = el('span', 'clip-time', `▶ ${fmtClipTime(h.time)}`);
    t.title = `A frame of a video clip, at ${fmtClipTime(h.time)}`;
    a.append(t);
  }
  a.addEventListener('click', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    moreLikeThis(h.id);
  });
  const cap = el('figcaption');
  const line = el('div', 'line');
  const score = el('span', 'score', h.score.toFixed(3));
  score.title = `rank ${rank}, cosine similarity`;
  if (typeof h.prob === 'number') {
    // SigLIP: a calibrated probability that the photo matches the text
    score.textContent = `${(100 * h.prob).toFixed(h.prob < 0.1 ? 1 : 0)}%`;
    score.title = `rank ${rank}, match probability ${(100 * h.prob).toFixed(2)}% (cosine ${h.score.toFixed(3)})`;
  }
  const open = el('a', 'open', frame ? 'play' : 'open');
  open.href = frame ? `/video/${h.id}#t=${h.time.toFixed(3)}` : `/image/${h.id}`;
  open.target = '_blank';
  open.rel = 'noopener';
  open.title = frame ? `Play the clip from ${fmtClipTime(h.time)} (${fmtBytes(h.size)})` :
    `Open the full image (${h.width}×${h.height}, ${fmtBytes(h.size)})`;
  open.addEventListener('click', (ev) => {
    if (frame) { ev.preventDefault(); openVideo(h); return; }
    if (token) { ev.preventDefault(); openImage(h.id); }
  });
  // the file itself, whatever its format (/image serves a JPEG
  // rendition of HEIC, TIFF and RAW; a frame's original is its clip)
  const orig = el('a', 'open', '⤓');
  orig.href = frame ? `/video/${h.id}` : `/image/${h.id}?original=1`;
  orig.download = h.path.slice(h.path.lastIndexOf('/') + 1);
  orig.title = `Download the original (${fmtBytes(h.size)})`;
  line.append(score, markButtons(h.id), classifyButton(h), open, orig);
  const path = el('div', 'path', shortPath(h.path) + (frame ? `@${fmtClipTime(h.time)}` : ''));
  path.title = h.path + (h.capture_time ? `\ntaken ${fmtTime(h.capture_time)}` : '') +
    `\nmodified ${fmtTime(h.mtime)}`;
  cap.append(line, path, tagChips(h));
  fig.append(a, cap);
  paintTile(fig);
  return fig;
}

function moreLikeThis(id) {
  $('q').value = 'id:' + id;
  window.scrollTo(0, 0);
  search({ push: true });
}

/* ---- relevance feedback: mark results right or wrong, re-rank by a
 * probe fitted on the marks (op rerank, nothing stored), or keep it as a
 * classifier (op learn) that tags the collection and is the query term
 * learned:NAME.  Marks outlive searches until cleared. ---- */

const marks = new Map();   /* id -> 1 (right) or 0 (wrong) */

function markedIds(v) {
  return [...marks].filter(([, m]) => m === v).map(([id]) => id);
}

function markButtons(id) {
  const box = el('span', 'marks');
  for (const [v, text, title] of [[1, '\u2713', 'Right: more like this'],
    [0, '\u2717', 'Wrong: not this']]) {
    const b = el('button', 'mark', text);
    b.type = 'button';
    b.title = title;
    b.dataset.mark = v ? 'right' : 'wrong';
    b.addEventListener('click', () => {
      if (marks.get(id) === v) marks.delete(id); else marks.set(id, v);
      paintMarks();
    });
    box.append(b);
  }
  return box;
}

function paintTile(fig) {
  const m = marks.get(Number(fig.dataset.id));
  fig.classList.toggle('right', m === 1);
  fig.classList.toggle('wrong', m === 0);
  for (const b of fig.querySelectorAll('button.mark'))
    b.setAttribute('aria-pressed', String(m === (b.dataset.mark === 'right' ? 1 : 0)));
}

function paintMarks() {
  for (const fig of document.querySelectorAll('#results .tile')) paintTile(fig);
  const pos = markedIds(1).length, neg = markedIds(0).length;
  $('feedback').hidden = marks.size === 0;
  $('fb-count').textContent = `${pos} right, ${neg} wrong`;
  /* the daemon's rules (docs/PROTOCOL.md): rerank needs one of each (one
   * right is paired with the query), learn two right */
  $('fb-rerank').disabled = !(pos >= 1 && neg >= 1);
  $('fb-save').disabled = pos < 2;
}

async function rerank() {
  const req = Object.assign({}, page.req || {}, { op: 'rerank',
    positive: markedIds(1), negative: markedIds(0) });
  if (!req.k) req.k = parseInt($('k').value, 10) || 48;
  delete req.min_score;   /* a cosine bound: not the probe's scale */
  delete req.min_prob;
  showMsg($('fb-msg'), '');
  $('results').replaceChildren();
  page = { req, offset: 0, seq: page.seq + 1 };
  await loadPage();
}

async function saveClassifier() {
  const name = $('fb-name').value.trim();
  if (!name) { showMsg($('fb-msg'), 'Name the classifier first.', true); return; }
  const req = { op: 'learn', name, positive: markedIds(1).map((id) => ({ id })) };
  const neg = markedIds(0);
  if (neg.length) req.negative = neg.map((id) => ({ id }));
  showMsg($('fb-msg'), 'Learning…');
  let r;
  try { r = await api(req); } catch (e) { showMsg($('fb-msg'), e.message, true); return; }
  const b = el('button', '', `Search learned:${name}`);
  b.type = 'button';
  b.addEventListener('click', () => { $('q').value = 'learned:' + name; search({ push: true }); });
  $('fb-msg').classList.remove('error');
  $('fb-msg').replaceChildren(el('span', '', `Saved "${name}" from ${r.n_pos} right and ` +
    `${r.n_neg} wrong images${r.unlabeled_negatives ? ' (random images of the collection as wrong ones)' : ''}: ` +
    `cross-validated accuracy ${(100 * r.cv_accuracy).toFixed(0)}% (${r.folds} folds); it tags ` +
    `${r.tagged} images. Export them with clipdex retrieve (a prompt line learned:${name}) ` +
    '--copy-to DIR. '), b);
}

/* ---- tags and the classify panel ---- */

/* "food, beach" -> ['food', 'beach'] */
function splitTags(text) {
  return (text || '').split(',').map((t) => t.trim()).filter((t) => t);
}

/* The image's tags (search results carry them): one small button each,
 * which adds the tag to the filter. */
function tagChips(h) {
  const box = el('div', 'tags');
  for (const t of h.tags || []) {
    const b = el('button', 'tag', t.label);
    b.type = 'button';
    b.title = `${t.set}/${t.label}: ${(100 * t.prob).toFixed(1)}% (only images with this tag)`;
    b.addEventListener('click', () => {
      const have = splitTags($('tags').value);
      if (!have.includes(t.label)) $('tags').value = have.concat([t.label]).join(', ');
      search({ push: true });
    });
    box.append(b);
  }
  return box;
}

/* The labels of the daemon's tag sets, offered in the tag filters. */
let tagListLoaded = false;
async function loadTagList() {
  if (tagListLoaded) return;
  tagListLoaded = true;
  let r;
  try { r = await api({ op: 'tags_list' }); } catch (e) { tagListLoaded = false; return; }
  const seen = new Set();
  const list = $('tag-list');
  list.replaceChildren();
  for (const s of r.sets || []) {
    for (const l of s.labels || []) {
      for (const v of [l, `${s.name}/${l}`]) {
        if (seen.has(v)) continue;
        seen.add(v);
        const o = el('option');
        o.value = v;
        list.append(o);
      }
    }
  }
}

function classifyButton(h) {
  const b = el('button', 'act-classify', 'classify');
  b.type = 'button';
  b.title = 'Classify this image by labels you type';
  b.addEventListener('click', () => openClassify(h));
  return b;
}

let classifying = null;   /* the image in the panel */

function openClassify(h) {
  classifying = h;
  $('cls-img').alt = shortPath(h.path);
  setImage($('cls-img'), `/thumb/${h.id}?v=${h.mtime}`);
  $('cls-path').textContent = h.path;
  $('cls-path').title = h.path;
  $('cls-labels').value = sessionStorage.getItem('clipdex.labels') || '';
  $('cls-bars').replaceChildren();
  showMsg($('cls-msg'), 'Type labels separated by commas.');
  $('classify-dialog').showModal();
  $('cls-labels').focus();
  if ($('cls-labels').value) runClassify();
}

/* Classifies the image in the panel; the daemon parses the labels (the
 * rules of docs/CLASSIFY.md) and answers with every label's probability,
 * highest first. */
async function classifyImage(id, labels, templateSet) {
  const req = { op: 'classify', items: [{ id: Number(id) }], labels };
  if (templateSet) req.template_set = templateSet;
  return api(req);
}

async function runClassify() {
  const h = classifying;
  const labels = $('cls-labels').value.trim();
  if (!h) return;
  if (!labels) { showMsg($('cls-msg'), 'Type labels separated by commas.', true); return; }
  sessionStorage.setItem('clipdex.labels', labels);
  showMsg($('cls-msg'), 'Classifying…');
  let r;
  try {
    r = await classifyImage(h.id, labels, $('cls-templates').value);
  } catch (e) {
    showMsg($('cls-msg'), e.message, true);
    return;
  }
  if (classifying !== h) return;
  const bars = $('cls-bars');
  bars.replaceChildren();
  for (const l of r.results[0].labels) {
    const li = el('li');
    li.dataset.label = l.label;
    const name = el('span', 'name', l.label);
    name.title = l.label;
    const track = el('span', 'track');
    const fill = el('span', 'fill');
    fill.style.display = 'block';
    fill.style.width = `${(100 * l.prob).toFixed(1)}%`;
    track.append(fill);
    li.append(name, track, el('span', 'pct', `${(100 * l.prob).toFixed(1)}%`));
    bars.append(li);
  }
  showMsg($('cls-msg'), r.mode === 'sigmoid' ?
    'Each label\'s own probability (SigLIP: they need not sum to 100%).' :
    'Probabilities over these labels (they sum to 100%).');
}

/* ---- the duplicates view ---- */

let dpage = { req: null, offset: 0, seq: 0 };

function dupesFromURL(u) {
  $('dkind').value = ['exact', 'near', 'similar', 'clips'].includes(u.get('kind')) ? u.get('kind') : 'near';
  $('dthr').value = u.get('threshold') || '';
  $('dfolder').value = u.get('folder') || '';
}

function dupesURL() {
  const u = new URLSearchParams({ view: 'dupes', kind: $('dkind').value });
  if ($('dthr').value) u.set('threshold', $('dthr').value);
  if ($('dfolder').value.trim()) u.set('folder', $('dfolder').value.trim());
  return '/?' + u.toString();
}

async function findDupes(push) {
  const url = dupesURL();
  if (push && location.pathname + location.search !== url) history.pushState(null, '', url);
  const req = { op: 'dupes', kind: $('dkind').value, limit: 50 };
  const thr = parseFloat($('dthr').value);
  if (thr) req.threshold = thr;
  const folder = $('dfolder').value.trim();
  if (folder) req.path_prefix = folder.endsWith('/') ? folder : folder + '/';
  $('groups').replaceChildren();
  dpage = { req, offset: 0, seq: dpage.seq + 1 };
  await loadDupes();
}

async function loadDupes() {
  const mine = dpage.seq;
  showMsg($('dmsg'), 'Looking for duplicates…');
  $('dmore').hidden = true;
  let r;
  try {
    r = await api(Object.assign({}, dpage.req, { offset: dpage.offset }));
  } catch (e) {
    if (mine === dpage.seq) showMsg($('dmsg'), e.message, true);
    return;
  }
  if (mine !== dpage.seq) return;
  if (r.kind === 'clips') {
    // video clips compared by their frames: one pair a row
    for (const p of r.pairs) $('groups').append(clipPair(p));
    showMsg($('dmsg'), r.total_pairs === 0 ? 'No clips share a frame.' :
      `${r.total_pairs} pair${r.total_pairs === 1 ? '' : 's'} among ${r.total_clips} clips ` +
      `(${r.took_ms.toFixed(0)} ms)`);
    if (r.next_offset !== null && r.next_offset !== undefined) {
      dpage.offset = r.next_offset;
      $('dmore').hidden = false;
    }
    return;
  }
  for (const g of r.groups) $('groups').append(group(g));
  showMsg($('dmsg'), r.total_groups === 0 ? 'No duplicates found.' :
    `${r.total_groups} group${r.total_groups === 1 ? '' : 's'}, ` +
    `${r.total_images} images (${r.took_ms.toFixed(0)} ms)`);
  if (r.next_offset !== null && r.next_offset !== undefined) {
    dpage.offset = r.next_offset;
    $('dmore').hidden = false;
  }
}

/* Two clips with a frame in common: the matching frame of each; "play"
 * opens the clip there. */
function clipPair(p) {
  const box = el('section', 'group');
  const longer = Math.max(p.a.frames, p.b.frames);
  box.append(el('p', 'ghead', p.relation === 'exact' ? 'identical files' :
    p.relation === 'near' ? `near duplicates · ${p.matched} of ${longer} frames match in order` :
    `share ${p.matched === 1 ? 'a scene' : p.matched + ' scenes'}`));
  const row = el('div', 'members');
  for (const s of [p.a, p.b]) {
    const h = { id: s.id, path: s.path, time: s.time };
    const fig = el('figure', 'tile');
    fig.dataset.id = String(s.id);
    const a = el('a', 'thumb');
    a.href = `/video/${s.id}#t=${s.time.toFixed(3)}`;
    a.title = 'Play the clip from this frame';
    a.addEventListener('click', (ev) => { ev.preventDefault(); openVideo(h); });
    const img = el('img');
    img.loading = 'lazy';
    img.alt = shortPath(s.path);
    img.width = 200;
    img.height = 200;
    setImage(img, `/thumb/${s.id}`);
    a.append(img, el('span', 'clip-time', `▶ ${fmtClipTime(s.time)}`));
    const cap = el('figcaption');
    const path = el('div', 'path', `${shortPath(s.path)}@${fmtClipTime(s.time)}`);
    path.title = `${s.path}\n${s.frames} frame${s.frames === 1 ? '' : 's'} sampled`;
    cap.append(path);
    fig.append(a, cap);
    row.append(fig);
  }
  box.append(row);
  return box;
}

function group(g) {
  const box = el('section', 'group');
  const head = el('p', 'ghead', `${g.size} ${g.kind === 'exact' ? 'identical files' :
    g.kind === 'similar' ? 'similar shots' : 'near duplicates'} · keep: ${g.reason}`);
  const row = el('div', 'members');
  for (const m of g.members) {
    const fig = el('figure', 'tile' + (m.keep ? ' keep' : ''));
    fig.dataset.id = String(m.id);
    const a = el('a', 'thumb');
    a.href = `/image/${m.id}`;
    a.target = '_blank';
    a.rel = 'noopener';
    a.title = 'Open the full image';
    a.addEventListener('click', (ev) => { if (token) { ev.preventDefault(); openImage(m.id); } });
    const img = el('img');
    img.loading = 'lazy';
    img.alt = shortPath(m.path);
    img.width = 200;
    img.height = 200;
    setImage(img, `/thumb/${m.id}?v=${m.mtime}`);
    a.append(img);
    const cap = el('figcaption');
    const line = el('div', 'line');
    line.append(el('span', m.keep ? 'badge' : 'score', m.keep ? 'keep' : m.score.toFixed(3)),
      el('span', 'dim', `${m.width}×${m.height} · ${fmtBytes(m.size)}`));
    const path = el('div', 'path', shortPath(m.path));
    path.title = m.path;
    cap.append(line, path, memberActions(m));
    fig.append(a, cap);
    row.append(fig);
  }
  box.append(head, row);
  return box;
}

/* open, copy path, search similar: what the daemon offers (deleting is
 * the user's own, in the file manager). */
function memberActions(m) {
  const box = el('div', 'actions');
  const open = el('a', 'act-open', 'open');
  open.href = `/image/${m.id}`;
  open.target = '_blank';
  open.rel = 'noopener';
  open.addEventListener('click', (ev) => { if (token) { ev.preventDefault(); openImage(m.id); } });
  const copy = el('button', 'act-copy', 'copy path');
  copy.type = 'button';
  copy.title = m.path;
  copy.addEventListener('click', () => copyText(m.path, copy));
  const sim = el('a', 'act-similar', 'similar');
  sim.href = '/?q=' + encodeURIComponent('id:' + m.id);
  sim.title = 'Search for images like this one';
  sim.addEventListener('click', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    history.pushState(null, '', sim.getAttribute('href'));
    route();
  });
  box.append(open, copy, sim);
  return box;
}

/* ---- the status view ---- */

/* The queue fields the page shows, with their labels (docs/PROTOCOL.md);
 * the others are on the cards or internal. */
const QUEUE_LABELS = [
  ['scanning', 'Scanning folders'], ['done', 'Files done since start'],
  ['encoded', 'Images embedded'], ['reused', 'Embeddings reused (same bytes)'],
  ['skipped', 'Skipped (not images, too small, excluded)'], ['failed', 'Failed since start'],
  ['renamed', 'Moves followed'], ['deleted', 'Deletions followed'],
  ['overflows', 'Event overflows (rescans)'], ['watches', 'Folders watched'],
  ['warning', 'Warning'],
];

let statusTimer = null;

async function refreshStatus() {
  let st, fl;
  try {
    [st, fl] = await Promise.all([api({ op: 'status' }), api({ op: 'failures', limit: 200 })]);
  } catch (e) {
    $('s-details').replaceChildren(el('dd', 'error', e.message));
    return;
  }
  const q = st.queue || {};
  const pending = q.pending || 0, done = q.done || 0, rate = q.rate || 0;
  $('s-images').textContent = st.images.toLocaleString();
  $('s-pending').textContent = pending.toLocaleString();
  /* the daemon's rate over its last seconds (0: idle or nothing finished) */
  $('s-rate').textContent = rate ? rate.toFixed(1) : '–';
  $('s-eta').textContent = pending ? fmtDuration(q.eta_s) : q.scanning ? 'scanning…' : 'done';
  $('s-failures').textContent = st.failures.toLocaleString();
  const prog = $('s-progress');
  prog.max = Math.max(1, done + pending);
  prog.value = done;
  const dl = $('s-details');
  dl.replaceChildren();
  const row = (k, v) => dl.append(el('dt', '', k), el('dd', '', v));
  row('Model', `${st.model.id} (${st.model.dim}-d)`);
  row('Index', `${st.index.kind}, ${st.index.vectors.toLocaleString()} vectors`);
  row('Folders', (st.folders || st.roots || []).join('\n') || '–');
  for (const [k, label] of QUEUE_LABELS) {
    const v = q[k];
    if (v === undefined || v === '') continue;
    row(label, typeof v === 'boolean' ? (v ? 'yes' : 'no') :
      typeof v === 'number' ? v.toLocaleString() : String(v));
  }
  row('Memory', fmtBytes(st.rss_bytes || 0));
  row('Up', fmtDuration(st.uptime_s) + ` (version ${st.version})`);
  const tb = $('failures').tBodies[0];
  tb.replaceChildren();
  for (const f of fl.failures) {
    const tr = el('tr');
    const p = el('td', 'path', f.path);
    tr.append(p, el('td', '', f.reason), el('td', 'nowrap', fmtTime(f.when)));
    tb.append(tr);
  }
  $('failures').hidden = fl.failures.length === 0;
  $('f-none').hidden = fl.failures.length !== 0;
  $('f-none').textContent = 'None.';
  if (fl.total > fl.failures.length) {
    $('f-none').hidden = false;
    $('f-none').textContent = `Showing ${fl.failures.length} of ${fl.total}.`;
  }
}

/* ---- views and navigation ---- */

function show(view) {
  for (const v of ['search', 'dupes', 'status']) {
    $(v + '-view').hidden = v !== view;
    $('nav-' + v).classList.toggle('active', v === view);
  }
  clearInterval(statusTimer);
  statusTimer = null;
}

function route() {
  const u = new URLSearchParams(location.search);
  const view = u.get('view');
  if (view === 'dupes') {
    show('dupes');
    document.title = 'Duplicates – clipdex';
    dupesFromURL(u);
    findDupes(false);
  } else if (view === 'status') {
    show('status');
    document.title = 'Status – clipdex';
    refreshStatus();
    statusTimer = setInterval(refreshStatus, 2000);
  } else {
    show('search');
    writeForm(Object.fromEntries(u.entries()));
    search({ push: false });
    loadTagList();
  }
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-nav]');
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  history.pushState(null, '', a.getAttribute('href'));
  route();
});
window.addEventListener('popstate', route);

$('search-form').addEventListener('submit', (ev) => { ev.preventDefault(); search({ push: true }); });
for (const id of ['folder', 'from', 'to', 'time', 'min', 'k', 'tags', 'nottags'])
  $(id).addEventListener('change', () => search({ push: true }));
$('more').addEventListener('click', () => loadPage());
$('fb-rerank').addEventListener('click', () => rerank());
$('fb-save').addEventListener('click', () => saveClassifier());
$('fb-clear').addEventListener('click', () => { marks.clear(); showMsg($('fb-msg'), ''); paintMarks(); });
$('file').addEventListener('change', (ev) => { addExamples([...ev.target.files]); ev.target.value = ''; });
$('dupes-form').addEventListener('submit', (ev) => { ev.preventDefault(); findDupes(true); });
$('classify-form').addEventListener('submit', (ev) => { ev.preventDefault(); runClassify(); });
$('cls-close').addEventListener('click', () => { classifying = null; $('classify-dialog').close(); });
$('video-dialog').addEventListener('close', () => { const v = $('player'); v.pause(); v.removeAttribute('src'); v.load(); });
$('cls-templates').addEventListener('change', () => runClassify());
$('dmore').addEventListener('click', () => loadDupes());

/* drop an image anywhere */
let dragDepth = 0;
window.addEventListener('dragenter', (ev) => {
  if (![...ev.dataTransfer.types].includes('Files')) return;
  dragDepth++;
  $('drop').hidden = false;
});
window.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; $('drop').hidden = true; } });
window.addEventListener('dragover', (ev) => ev.preventDefault());
window.addEventListener('drop', (ev) => {
  ev.preventDefault();
  dragDepth = 0;
  $('drop').hidden = true;
  const files = [...ev.dataTransfer.files];
  if (files.length) {
    show('search');
    addExamples(files);
  }
});

/* for tests and the console */
window.clipdex = { parseQuery, buildRequest, classifyImage };

route();
