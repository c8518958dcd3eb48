/*
 * Drives headless Chromium (Debian's /usr/bin/chromium) through clipdexd's
 * web page.  Run by tests/web_browser.sh, which starts the daemon on the
 * fixtures of tests/daemon_web.c --fixture:
 *
 *   WEB_TOKEN_URL=URL2 WEB_TOKEN=T node browser.js URL PHOTOS [SCREENSHOT.png]
 *
 * URL2 is a second daemon on a non-loopback address with token T.
 *
 * The photos (see make_fixtures in tests/daemon_web.c): beach/ holds
 * "photo 00.jpg", "photo 02.jpg" ... "photo 10.jpg" (6, mtime in 2001) and
 * broken.jpg (not an image); city/ holds "photo 01.jpg" ... "photo 11.jpg"
 * (6, mtime in 2011) and "copy of photo 00.jpg" (a byte copy).  So 13
 * images are indexed, 1 fails, and there is one group of identical files.
 *
 * Prints one cmocka-style line per check and the summary lines that
 * tests/run.sh counts.
 */
'use strict';
const { chromium } = require('playwright-core');

const [url, photos, shot] = process.argv.slice(2);
const N_IMAGES = 13;
let passed = 0;
const failed = [];

async function check(name, fn) {
  const t0 = Date.now();
  console.log(`[ RUN      ] ${name}`);
  try {
    await fn();
    passed++;
    console.log(`[       OK ] ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed.push(name);
    console.log(`[  ERROR   ] ${e && e.stack ? e.stack : e}`);
    console.log(`[  FAILED  ] ${name}`);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

/* Waits for the search to settle and returns the tiles' ids, scores and
 * whether every thumbnail decoded. */
async function results(page, n) {
  await page.waitForFunction((want) => {
    const m = document.getElementById('msg').textContent;
    const tiles = document.querySelectorAll('#results .tile');
    return !m.startsWith('Searching') && (want === undefined || tiles.length === want);
  }, n, { timeout: 10000 }).catch(() => {});
  /* (with a token, src is set once the bytes are fetched: an <img> without
   * src counts as complete) */
  await page.waitForFunction(() => [...document.querySelectorAll('#results img')]
    .every((i) => i.src && i.complete), null, { timeout: 10000 });
  return page.$$eval('#results .tile', (ts) => ts.map((t) => ({
    id: t.dataset.id,
    score: parseFloat(t.querySelector('.score').textContent),
    path: t.querySelector('.path').title.split('\n')[0],
    loaded: t.querySelector('img').naturalWidth > 0,
  })));
}

async function search(page, q) {
  await page.fill('#q', q);
  await page.press('#q', 'Enter');
}

(async () => {
  const userDir = require('fs').mkdtempSync(require('os').tmpdir() + '/cdx-chromium-');
  /* a fresh --user-data-dir (playwright passes it from userDir) */
  const browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  });
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('request', (r) => {
    if (!r.url().startsWith(url) && !r.url().startsWith('blob:') && !r.url().startsWith('data:'))
      problems.push('external request: ' + r.url());
  });

  let all = [];
  await check('page_loads', async () => {
    const res = await page.goto(url + '/');
    expect(res.status() === 200, `status ${res.status()}`);
    const csp = res.headers()['content-security-policy'] || '';
    expect(csp.includes("default-src 'self'"), 'no CSP: ' + csp);
    expect(await page.isVisible('#q'), 'no search box');
  });

  await check('query_syntax', async () => {
    /* the examples of docs/CLI.md */
    const got = await page.evaluate(() => Promise.all([
      'a dog on the beach', 'beach - people', 'beach - 0.7:people + 0.5:@example.jpg',
      '2:id:42 - snow', 'spider-man', '- 2:cat', '1:10:30 meeting',
    ].map((q) => window.clipdex.parseQuery(q))));
    const want = [
      [{ kind: 'text', value: 'a dog on the beach', weight: 1 }],
      [{ kind: 'text', value: 'beach', weight: 1 }, { kind: 'text', value: 'people', weight: -1 }],
      [{ kind: 'text', value: 'beach', weight: 1 }, { kind: 'text', value: 'people', weight: -0.7 },
        { kind: 'file', value: 'example.jpg', weight: 0.5 }],
      [{ kind: 'id', value: '42', weight: 2 }, { kind: 'text', value: 'snow', weight: -1 }],
      [{ kind: 'text', value: 'spider-man', weight: 1 }],
      [{ kind: 'text', value: 'cat', weight: -2 }],
      [{ kind: 'text', value: '10:30 meeting', weight: 1 }],
    ];
    expect(JSON.stringify(got) === JSON.stringify(want), 'parsed ' + JSON.stringify(got));
    const bad = ['a - - b', 'a +  + b', '0:cat', '', 'id:x', '@'];
    const before = problems.length;
    const errs = await page.evaluate((qs) => Promise.all(qs
      .map((q) => window.clipdex.parseQuery(q).then(() => null, (e) => e.message))), bad);
    expect(errs.every((e) => e), 'accepted a bad query: ' + JSON.stringify(errs));
    /* each refusal is a 400 from /api, which the browser logs: expected here */
    const logged = problems.splice(before);
    expect(logged.length === bad.length && logged.every((p) => p.includes('400')),
      'unexpected: ' + logged.join('\n'));
  });

  await check('start_page_example_queries', async () => {
    await page.goto(url + '/');
    const ph = await page.getAttribute('#q', 'placeholder');
    expect(!/beach/i.test(ph), 'placeholder ' + ph);
    await page.waitForSelector('#suggest .suggestion');
    const qs = await page.$$eval('#suggest .suggestion', (bs) => bs.map((b) => b.textContent));
    /* the fixture model is not the demo: everyday photo queries */
    expect(qs.length >= 3 && qs[0] === 'a dog on the beach', 'examples: ' + qs);
    expect((await page.textContent('#suggest')).includes(`${N_IMAGES} images`), 'no image count');
    await page.click('#suggest .suggestion');
    const r = await results(page, N_IMAGES);
    expect(r.length === N_IMAGES, `${r.length} tiles`);
    expect(new URL(page.url()).searchParams.get('q') === qs[0], 'the URL: ' + page.url());
    expect(await page.isHidden('#suggest'), 'the examples stay over the results');
  });

  await check('search_shows_thumbnails', async () => {
    await search(page, 'a photo');
    all = await results(page, N_IMAGES);
    expect(all.length === N_IMAGES, `${all.length} tiles, want ${N_IMAGES}`);
    expect(all.every((r) => r.loaded), 'a thumbnail did not load');
    for (let i = 1; i < all.length; i++) expect(all[i - 1].score >= all[i].score, 'not ranked');
    const u = new URL(page.url());
    expect(u.searchParams.get('q') === 'a photo', 'the URL has no query: ' + page.url());
    /* the number of matches (a short page: all of them) and a real time */
    const msg = await page.textContent('#msg');
    expect(/^13 results in (\d+\.\d ms|\d+ ms|\d+\.\d s)$/.test(msg) && !/ 0 ms/.test(msg),
      'message: ' + msg);
    if (shot && !process.env.WEB_DEMO_URL) await page.screenshot({ path: shot });
  });

  await check('bookmark_reopens_search', async () => {
    await page.goto(url + '/?q=' + encodeURIComponent('a photo') + '&k=24');
    const r = await results(page, N_IMAGES);
    expect(JSON.stringify(r.map((x) => x.id)) === JSON.stringify(all.map((x) => x.id)),
      'different results from the bookmark');
    expect(await page.inputValue('#q') === 'a photo', 'the box does not show the query');
  });

  await check('filters', async () => {
    await page.goto(url + '/?q=a+photo&folder=' + encodeURIComponent(photos + '/beach'));
    let r = await results(page, 6);
    expect(r.length === 6 && r.every((x) => x.path.startsWith(photos + '/beach/')),
      `folder: ${r.length} tiles`);
    await page.goto(url + '/?q=a+photo&from=2011-01-01&to=2011-12-31&time=mtime');
    r = await results(page, 6);
    expect(r.length === 6 && r.every((x) => x.path.includes('/city/photo ')),
      `dates: ${r.map((x) => x.path)}`);
    /* a minimum score between the 5th and 6th best keeps exactly 5 */
    const min = ((all[4].score + all[5].score) / 2).toFixed(4);
    expect(all[4].score > min && all[5].score < min, 'scores too close for the test');
    await page.goto(url + '/?q=a+photo&min=' + min);
    r = await results(page, 5);
    expect(r.length === 5, `min score ${min}: ${r.length} tiles`);
    expect(await page.inputValue('#min') === min, 'the filter is not shown');
    /* capture dates: the photos have none, so nothing matches; the page
     * says why and offers the files' dates */
    await page.goto(url + '/?q=a+photo&from=2011-01-01&to=2011-12-31');
    r = await results(page, 0);
    expect(r.length === 0, `capture dates: ${r.length} tiles`);
    await page.waitForSelector('#date-hint:not([hidden])');
    const hint = await page.textContent('#date-hint');
    expect(hint.includes(`${N_IMAGES} images have no capture date`), 'hint: ' + hint);
    await page.click('#date-hint button');
    r = await results(page, 6);
    expect(r.length === 6, `file dates: ${r.length} tiles`);
    expect(new URL(page.url()).searchParams.get('time') === 'mtime', 'URL ' + page.url());
    expect(await page.isHidden('#date-hint'), 'the hint stays');
  });

  await check('more_like_this', async () => {
    await page.goto(url + '/?q=a+photo');
    await results(page, N_IMAGES);
    const id = await page.$eval('#results .tile:nth-child(3)', (t) => t.dataset.id);
    await page.click('#results .tile:nth-child(3) a.thumb');
    await page.waitForFunction((want) => new URL(location.href).searchParams.get('q') === 'id:' + want, id);
    const r = await results(page, N_IMAGES);
    expect(r[0].id === id && r[0].score > 0.999, `first is ${r[0].id} (${r[0].score}), want ${id}`);
    expect(r.every((x) => x.loaded), 'a thumbnail did not load');
    /* the picture it is like, above the results */
    await page.waitForFunction((want) => {
      const i = document.querySelector(`#query-images .qimg[data-id="${want}"] img`);
      return i && i.complete && i.naturalWidth > 0;
    }, id, { timeout: 5000 });
    expect(await page.isVisible('#query-images'), 'no query image');
    await page.goBack();
    await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'a photo');
  });

  await check('relevance_feedback', async () => {
    /* mark two right and two wrong, re-rank (rerank: a probe on the
     * marks), save as a classifier (learn), search learned:NAME */
    await page.goto(url + '/?q=a+photo');
    const r = await results(page, N_IMAGES);
    expect(await page.isHidden('#feedback'), 'the marks bar shows without marks');
    const right = [r[1].id, r[4].id], wrong = [r[0].id, r[2].id];
    for (const id of right) await page.click(`#results .tile[data-id="${id}"] button[data-mark="right"]`);
    for (const id of wrong) await page.click(`#results .tile[data-id="${id}"] button[data-mark="wrong"]`);
    expect(await page.textContent('#fb-count') === '2 right, 2 wrong', 'count: ' + await page.textContent('#fb-count'));
    expect(await page.$eval(`#results .tile[data-id="${right[0]}"]`, (t) => t.classList.contains('right')),
      'a right tile is not marked');
    await page.click('#fb-rerank');
    const rr = await results(page, N_IMAGES);
    const at = (id) => rr.findIndex((x) => x.id === id);
    expect(right.every((p) => wrong.every((n) => at(p) < at(n))),
      'the right images do not rank above the wrong ones: ' + rr.map((x) => x.id));
    /* the probe's probability is shown, and the marks survive the re-rank */
    expect((await page.textContent('#results .tile .score')).endsWith('%'), 'no probability');
    expect(await page.$eval(`#results .tile[data-id="${wrong[0]}"]`, (t) => t.classList.contains('wrong')),
      'the marks are lost');
    await page.fill('#fb-name', 'my_pick');
    await page.click('#fb-save');
    await page.waitForFunction(() => document.getElementById('fb-msg').textContent.startsWith('Saved'),
      null, { timeout: 10000 });
    const msg = await page.textContent('#fb-msg');
    expect(msg.includes('2 right and 2 wrong') && msg.includes('learned:my_pick'), 'message: ' + msg);
    await page.click('#fb-msg button');
    await page.waitForFunction(() => new URL(location.href).searchParams.get('q') === 'learned:my_pick');
    const rl = await results(page, N_IMAGES);
    expect(rl.length === N_IMAGES, `learned:my_pick: ${rl.length} tiles`);
    await page.click('#fb-clear');
    expect(await page.isHidden('#feedback'), 'the marks bar stays after clearing');
    /* the saved classifier tags every image: later checks must not see it */
    const del = await page.evaluate(() => fetch('/api', { method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ op: 'tags_delete', name: 'my_pick' }) }).then((x) => x.json()));
    expect(del.ok, 'tags_delete my_pick: ' + JSON.stringify(del));
  });

  await check('open_full_image', async () => {
    await page.goto(url + '/?q=a+photo');
    await results(page, N_IMAGES);
    const href = await page.$eval('#results .tile a.open', (a) => a.href);
    const res = await page.request.get(href);
    expect(res.status() === 200 && res.headers()['content-type'] === 'image/jpeg',
      `GET ${href}: ${res.status()}`);
  });

  await check('search_by_example_upload', async () => {
    await page.goto(url + '/');
    const file = photos + '/city/photo 05.jpg';
    await page.setInputFiles('#file', file);
    await page.waitForSelector('#examples .chip');
    const r = await results(page, N_IMAGES);
    expect(r.length === N_IMAGES, `${r.length} tiles`);
    expect(r[0].path === file && r[0].score > 0.99, `first is ${r[0].path} (${r[0].score})`);
    /* with a text, referring to the example by name */
    await search(page, 'a photo + 2:@photo 05.jpg');
    const r2 = await results(page, N_IMAGES);
    expect(r2[0].path === file, `first is ${r2[0].path}`);
  });

  await check('duplicates_view', async () => {
    await page.goto(url + '/');
    await page.click('#nav-dupes');
    await page.selectOption('#dkind', 'exact');
    await page.click('#dupes-form button[type=submit]');
    await page.waitForSelector('#groups .group');
    await page.waitForFunction(() => [...document.querySelectorAll('#groups img')].every((i) => i.complete));
    const g = await page.$$eval('#groups .group', (gs) => gs.map((g) => [...g.querySelectorAll('.tile')]
      .map((t) => ({ keep: t.classList.contains('keep'), path: t.querySelector('.path').title,
        loaded: t.querySelector('img').naturalWidth > 0 }))));
    expect(g.length === 1 && g[0].length === 2, 'groups: ' + JSON.stringify(g));
    expect(g[0][0].keep && !g[0][1].keep, 'the keeper is not marked first');
    expect(g[0][0].path === photos + '/beach/photo 00.jpg', 'keeper ' + g[0][0].path);
    expect(g[0].every((m) => m.loaded), 'a thumbnail did not load');
    expect(new URL(page.url()).searchParams.get('kind') === 'exact', 'the URL has no kind');
    /* groups share the width (a grid of groups, not one row each) */
    const [gw, all] = await page.evaluate(() => [
      document.querySelector('#groups .group').getBoundingClientRect().width,
      document.getElementById('groups').getBoundingClientRect().width]);
    expect(gw < all / 2, `a group takes ${gw} of ${all} px`);
    /* actions: open, copy path, similar */
    const acts = await page.$$eval('#groups .tile:nth-child(2) .actions > *', (as) => as.map((a) => a.textContent));
    expect(JSON.stringify(acts) === JSON.stringify(['open', 'copy path', 'similar']), 'actions ' + acts);
    const href = await page.$eval('#groups .tile:nth-child(2) .act-open', (a) => a.href);
    const res = await page.request.get(href);
    expect(res.status() === 200, `open: ${res.status()}`);
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
    await page.click('#groups .tile:nth-child(2) .act-copy');
    await page.waitForFunction(() => document.querySelector('#groups .tile:nth-child(2) .act-copy')
      .textContent === 'copied', null, { timeout: 5000 });
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expect(copied === g[0][1].path, `copied ${copied}`);
    const id = await page.$eval('#groups .tile:nth-child(2)', (t) => t.dataset.id);
    await page.click('#groups .tile:nth-child(2) .act-similar');
    await page.waitForFunction((want) => new URL(location.href).searchParams.get('q') === 'id:' + want, id);
    const r = await results(page, N_IMAGES);
    expect(r[0].id === id || r[0].score > 0.999, `similar: first is ${r[0].id}`);
  });

  await check('tags_and_classify_panel', async () => {
    /* a tag set (threshold 0: every image gets its most probable label) */
    await page.goto(url + '/');
    const call = (req) => page.evaluate((r) => fetch('/api', { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(r) })
      .then((x) => x.json()), req);
    const def = await call({ op: 'tags_define', name: 'look', labels: ['bright', 'dark'], threshold: 0 });
    expect(def.ok && def.tagged === N_IMAGES, 'tags_define: ' + JSON.stringify(def));
    const counts = (await call({ op: 'tags_counts', name: 'look' })).counts;
    const bright = counts.find((c) => c.label === 'bright').images;
    /* results show their tags */
    await page.goto(url + '/?q=a+photo');
    await results(page, N_IMAGES);
    const tags = await page.$$eval('#results .tile', (ts) => ts.map((t) =>
      [...t.querySelectorAll('.tags .tag')].map((b) => b.textContent)));
    expect(tags.every((t) => t.length === 1 && ['bright', 'dark'].includes(t[0])), 'tags ' + JSON.stringify(tags));
    expect(tags.filter((t) => t[0] === 'bright').length === bright, 'tags disagree with the counts');
    /* the tag filters, from the URL and from a click on a tag */
    await page.goto(url + '/?q=a+photo&tags=look%2Fbright');
    let r = await results(page, bright);
    expect(r.length === bright, `tags=look/bright: ${r.length} tiles, want ${bright}`);
    expect(await page.inputValue('#tags') === 'look/bright', 'the filter is not shown');
    await page.goto(url + '/?q=a+photo&nottags=bright');
    r = await results(page, N_IMAGES - bright);
    expect(r.length === N_IMAGES - bright, `nottags=bright: ${r.length} tiles`);
    await page.goto(url + '/?q=a+photo');
    await results(page, N_IMAGES);
    const first = await page.$eval('#results .tile .tag', (b) => b.textContent);
    await page.click('#results .tile .tag');
    await page.waitForFunction((t) => new URL(location.href).searchParams.get('tags') === t, first);
    r = await results(page, first === 'bright' ? bright : N_IMAGES - bright);
    expect(r.length === (first === 'bright' ? bright : N_IMAGES - bright), `a click on ${first}: ${r.length} tiles`);
    /* the classify panel: bars highest first, summing to 100% (CLIP) */
    await page.goto(url + '/?q=a+photo');
    await results(page, N_IMAGES);
    await page.click('#results .tile:nth-child(2) .act-classify');
    await page.waitForSelector('#classify-dialog[open]');
    await page.fill('#cls-labels', 'a beach, a city, a cat');
    await page.click('#cls-go');
    await page.waitForFunction(() => document.querySelectorAll('#cls-bars li').length === 3);
    const bars = await page.$$eval('#cls-bars li', (ls) => ls.map((l) =>
      ({ label: l.dataset.label, pct: parseFloat(l.querySelector('.pct').textContent),
        w: l.querySelector('.fill').getBoundingClientRect().width })));
    const sum = bars.reduce((a, b) => a + b.pct, 0);
    expect(Math.abs(sum - 100) < 0.5, 'percentages sum to ' + sum);
    for (let i = 1; i < bars.length; i++) expect(bars[i - 1].pct >= bars[i].pct && bars[i - 1].w >= bars[i].w, 'not highest first');
    expect(bars.map((b) => b.label).sort().join() === 'a beach,a cat,a city', 'labels ' + JSON.stringify(bars));
    /* a bad label list: the daemon's reason */
    const before = problems.length;
    await page.fill('#cls-labels', 'cat, cat');
    await page.click('#cls-go');
    await page.waitForFunction(() => document.getElementById('cls-msg').classList.contains('error'));
    expect((await page.textContent('#cls-msg')).includes('cat'), 'message: ' + await page.textContent('#cls-msg'));
    problems.splice(before);   /* the 400 the browser logs */
    await page.click('#cls-close');
    expect(await page.isHidden('#classify-dialog'), 'the panel stays open');
    await call({ op: 'tags_delete', name: 'look' });
  });

  await check('status_view', async () => {
    await page.click('#nav-status');
    await page.waitForFunction((n) => document.getElementById('s-images').textContent === String(n),
      N_IMAGES, { timeout: 5000 });
    expect(await page.textContent('#s-failures') === '1', 'failures count');
    const rows = await page.$$eval('#failures tbody tr', (trs) => trs.map((tr) => tr.innerText));
    expect(rows.length === 1 && rows[0].includes('broken.jpg'), 'failures: ' + rows);
    expect(await page.textContent('#s-eta') === 'done', 'time left');
    expect(await page.textContent('#s-rate') === '–', 'a rate while idle');
    const details = await page.textContent('#s-details');
    expect(details.includes('Model'), 'no details');
    /* readable labels, not the protocol's keys */
    expect(!/Queue |\btrue\b|\bfalse\b|_/.test(details), 'raw labels: ' + details);
    expect(details.includes('Scanning folders') && details.includes('Folders watched'),
      'labels: ' + details);
    expect(details.includes(photos), 'folders: ' + details);
  });

  await check('phone_width_grid', async () => {
    const p3 = await browser.newPage();
    await p3.setViewportSize({ width: 390, height: 844 });
    await p3.goto(url + '/?q=a+photo');
    const r = await results(p3, N_IMAGES);
    expect(r.length === N_IMAGES, `${r.length} tiles`);
    const boxes = await p3.$$eval('#results .tile', (ts) => ts.map((t) => {
      const b = t.getBoundingClientRect();
      return { w: b.width, top: Math.round(b.top) };
    }));
    const perRow = boxes.filter((b) => b.top === boxes[0].top).length;
    expect(perRow >= 2 && perRow <= 4, `${perRow} thumbnails in the first row`);
    expect(boxes[0].w < 390 / 2, `a thumbnail is ${boxes[0].w} px wide`);
    const scroll = await p3.evaluate(() => document.documentElement.scrollWidth);
    expect(scroll <= 390, `the page scrolls sideways (${scroll} px)`);
    await p3.close();
  });

  await check('token_asked_and_sent', async () => {
    /* a daemon on a non-loopback address: images and API need the token */
    const base = process.env.WEB_TOKEN_URL;
    expect(base, 'WEB_TOKEN_URL is not set');
    const p2 = await browser.newPage();
    p2.on('pageerror', (e) => problems.push('page error: ' + e.message));
    const thumb = await p2.request.get(base + '/thumb/1');
    expect(thumb.status() === 401, `thumbnail without the token: ${thumb.status()}`);
    await p2.goto(base + '/?q=a+photo');
    await p2.waitForSelector('#token-dialog[open]');
    await p2.fill('#token', process.env.WEB_TOKEN);
    await p2.press('#token', 'Enter');
    const r = await results(p2, N_IMAGES);
    expect(r.length === N_IMAGES, `${r.length} tiles`);
    expect(r.every((x) => x.loaded), 'a thumbnail did not load');
    const srcs = await p2.$$eval('#results img', (is) => is.map((i) => i.src));
    expect(srcs.every((s) => s.startsWith('blob:')), 'thumbnails not fetched with the token');
    await p2.close();
  });

  if (shot && process.env.WEB_DEMO_URL) {
    await check('demo_screenshot', async () => {
      /* the README's picture: the demo model on its rendered photos */
      const p4 = await browser.newPage();
      await p4.setViewportSize({ width: 1280, height: 860 });
      await p4.goto(process.env.WEB_DEMO_URL + '/?q=' + encodeURIComponent('two red circles') + '&k=24');
      const r = await results(p4, 24);
      expect(r.length === 24, `${r.length} tiles`);
      expect(r.every((x) => x.loaded && x.score > 0), 'scores: ' + r.map((x) => x.score));
      await p4.screenshot({ path: shot });
      await p4.close();
    });
  }

  await check('no_errors_or_external_requests', async () => {
    expect(problems.length === 0, problems.join('\n'));
  });

  await browser.close();
  require('fs').rmSync(userDir, { recursive: true, force: true });
  console.log(`[==========] ${passed + failed.length} test(s) run.`);
  console.log(`[  PASSED  ] ${passed} test(s).`);
  if (failed.length) {
    console.log(`[  FAILED  ] ${failed.length} test(s), listed below:`);
    for (const f of failed) console.log(`[  FAILED  ] ${f}`);
  }
  process.exit(failed.length ? 1 : 0);
})().catch((e) => {
  console.log(`[  ERROR   ] ${e && e.stack ? e.stack : e}`);
  console.log('[  FAILED  ] 1 test(s)');
  process.exit(1);
});
