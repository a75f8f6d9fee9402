// The service's HTML page in Debian's chromium (headless), driven by
// playwright-core over the DevTools protocol. Usage:
//   node check.mjs URL LONG_WORD_URL OUT_DIR
// URL serves the sample table; LONG_WORD_URL an instance whose WORD is 64
// characters long (no results, the heading must wrap). Writes
// OUT_DIR/{desktop,phone}.png and exits 1 if any check fails.
import { chromium } from 'playwright-core';

const [url, longWordUrl, outDir] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// Flags that run as root on a machine without a GPU, session bus or
// internet; playwright adds --headless, --no-sandbox and a fresh profile.
const args = ['--no-proxy-server', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const viewports = {
  desktop: { viewport: { width: 1280, height: 800 } },
  // The narrowest common phone; isMobile makes chromium honour <meta viewport>.
  phone: { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};

let failed = 0;
const check = (ok, what, detail = '') => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} - ${what}${ok || !detail ? '' : `\n       ${detail}`}`);
  if (!ok) failed++;
};

// Opens target in a fresh context; returns the page and every console
// message and page error it produced (a CSP violation is a console error).
async function open(browser, options, target, route) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const messages = [];
  page.on('console', (m) => messages.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => messages.push(`pageerror: ${e.message}`));
  if (route) await page.route(target, route);
  const response = await page.goto(target, { waitUntil: 'load' });
  return { context, page, response, messages };
}

// The rows as the browser lays them out: name, count, rendered bar width,
// and the style checks that fail when the <style> block is not applied.
const layout = (page) => page.evaluate(() => ({
  rows: [...document.querySelectorAll('tbody tr')].map((tr) => ({
    corpus: tr.querySelector('th')?.textContent,
    count: Number(tr.querySelector('td.n')?.textContent),
    bar: tr.querySelector('svg rect')?.getBoundingClientRect().width ?? -1,
    svgHeight: tr.querySelector('svg')?.getBoundingClientRect().height ?? -1,
    svgWidth: tr.querySelector('svg')?.getBoundingClientRect().width ?? -1,
  })),
  total: Number(document.querySelector('tfoot td.n')?.textContent),
  h1: document.querySelector('h1')?.textContent,
  fetched: document.querySelector('time')?.getAttribute('datetime'),
  innerWidth: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
  styleAttributes: document.querySelectorAll('[style]').length,
  scripts: document.scripts.length,
}));

// The <style> block applied (the CSP let it through): unstyled, an SVG with
// this viewBox is a hairline, not a 0.9rem bar.
const styled = (rows) => rows.every((r) => r.svgHeight > 8 && r.svgHeight < 24);

// Chromium's own accessibility tree (not playwright's model of it).
async function axRoles(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  const byRole = {};
  for (const n of nodes) {
    if (n.ignored) continue;
    (byRole[n.role?.value] ??= []).push(n.name?.value ?? '');
  }
  return byRole;
}

const browser = await chromium.launch({ executablePath, args });
console.log(`chromium ${browser.version()} (${executablePath})`);
try {
  for (const [name, options] of Object.entries(viewports)) {
    console.log(`\n--- ${name} ${options.viewport.width}x${options.viewport.height}`);
    const { context, page, response, messages } = await open(browser, options, url);
    const csp = response.headers()['content-security-policy'] ?? '';
    check(/style-src 'sha256-[A-Za-z0-9+/]+=*'/.test(csp) && !/unsafe|script-src/.test(csp) &&
      csp.includes("default-src 'none'"), 'CSP: default-src none, style by hash, nothing unsafe', csp);
    check(messages.length === 0, 'no console message (no CSP violation, no error)', messages.join('\n       '));
    const l = await layout(page);
    const max = Math.max(...l.rows.map((r) => r.count));
    check(l.rows.length > 10, `${l.rows.length} corpora in the table`);
    check(l.total === l.rows.reduce((s, r) => s + r.count, 0), `total ${l.total} is the sum of the rows`);
    check(/'the'/.test(l.h1 ?? '') && !Number.isNaN(Date.parse(l.fetched)), `word and data age shown (${l.fetched})`);
    check(styled(l.rows), 'bars styled (svg height ~0.9rem)',
      `heights ${[...new Set(l.rows.map((r) => r.svgHeight))].join(',')}`);
    const top = l.rows[0];
    const bad = l.rows.filter((r) => r.bar <= 0 || Math.abs(r.bar - (r.count / max) * top.bar) > 1);
    check(top.count === max && top.bar > 0 && Math.abs(top.bar - top.svgWidth) <= 1 && bad.length === 0,
      `every bar proportional to its count (largest ${max} = ${top.bar.toFixed(1)} px, within 1 px)`,
      JSON.stringify(bad.slice(0, 3)));
    check(l.styleAttributes === 0 && l.scripts === 0, 'no style attributes, no scripts');
    check(l.scrollWidth <= l.innerWidth && l.innerWidth === options.viewport.width,
      `no horizontal overflow (document ${l.scrollWidth} px, viewport ${l.innerWidth} px)`);

    const ax = await axRoles(page);
    const count = (role) => (ax[role] ?? []).length;
    check(count('table') === 1 && /relative to the largest/.test(ax.table[0]),
      `accessibility tree: one table, named by its caption ("${ax.table?.[0]}")`);
    // <wbr> (the header may break on a phone) puts a space in the name.
    check(JSON.stringify(ax.columnheader?.map((n) => n.replace(/\s/g, ''))) === '["corpus","total_words"]',
      `column headers ${JSON.stringify(ax.columnheader)}`);
    check(count('rowheader') === l.rows.length + 1 && ax.rowheader[0] === top.corpus &&
      ax.rowheader.at(-1) === 'Total', `row headers: ${count('rowheader')} (each corpus, then Total)`);
    check(count('row') === l.rows.length + 2, `rows: ${count('row')} (header, corpora, total)`);
    check(count('cell') === l.rows.length + 1, `data cells: ${count('cell')} (the counts; bars hidden from the tree)`);

    const shot = `${outDir}/${name}.png`;
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    await context.close();
  }

  console.log('\n--- phone, WORD of 64 characters');
  {
    const { context, page, messages } = await open(browser, viewports.phone, longWordUrl);
    const l = await layout(page);
    check(messages.length === 0, 'no console message', messages.join('\n       '));
    check(l.scrollWidth <= l.innerWidth, `the heading wraps: no horizontal overflow (${l.scrollWidth} px)`);
    const shot = `${outDir}/phone-long-word.png`;
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    await context.close();
  }

  // The checks above must be able to fail: the same page with the hash in
  // its CSP changed must produce a CSP violation and unstyled bars.
  console.log('\n--- self-test: a CSP with another hash');
  {
    const tamper = async (route) => {
      const original = await route.fetch();
      const headers = original.headers();
      headers['content-security-policy'] = headers['content-security-policy'].replace(/sha256-[^']+/, 'sha256-AAAA');
      await route.fulfill({ response: original, headers });
    };
    const { context, page, messages } = await open(browser, viewports.desktop, url, tamper);
    const l = await layout(page);
    check(messages.some((m) => /Content Security Policy/i.test(m)), 'chromium reports the CSP violation',
      messages.join('\n       '));
    check(!styled(l.rows), 'and the bars are unstyled');
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(`\n${failed === 0 ? 'all browser checks passed' : `${failed} browser check(s) failed`}`);
process.exit(failed === 0 ? 0 : 1);
