// Drives the dashboard of a running `topk serve --demo` in headless Chromium: changes the
// period and checks each time that the table shows the API's top 10; finds a product
// with the search box; reloads a shared URL; checks the product chart's window, the
// error states, the hour rollover (with a controlled clock), a narrow screen and the
// dark palette; saves screenshots. Usage: node dashboard.mjs BASE_URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [base, shot] = process.argv.slice(2);
if (!base || !shot) {
  console.error("usage: node dashboard.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const page = await context.newPage();
const errors = [];
const missing = [];
const watch = (p) => {
  p.on("pageerror", (e) => errors.push(e.message));
  p.on("response", (r) => r.status() === 404 && missing.push(r.url()));
};
watch(page);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// The table's rows, and the query the page last loaded.
async function table(p = page) {
  return p.evaluate(() => ({
    query: document.body.dataset.query,
    rows: [...document.querySelectorAll("#top-table tbody tr[data-product]")].map((tr) => ({
      product_id: tr.dataset.product,
      count: Number(tr.cells[2].textContent.replace(/[^0-9-]/g, "")),
    })),
  }));
}

// The demo keeps selling, so the table and a later API call can see different moments:
// compare until they agree (the API caches open answers for a second), or give up.
async function sameAsApi(label, wantQuery, p = page) {
  await p.waitForFunction((w) => (document.body.dataset.query || "").includes(w), wantQuery, { timeout: 15000 });
  let last;
  for (let attempt = 0; attempt < 10; attempt++) {
    const t = await table(p);
    const api = await (await fetch(`${base}/api/v1/top?${t.query}`)).json();
    // The table shows units, or revenue in whole dollars when ranking by revenue.
    const shown = (r) => (api.by === "revenue" ? Math.round(r.revenue_cents / 100) : r.count);
    const want = api.rows.slice(0, 10).map((r) => ({ product_id: r.product_id, count: shown(r) }));
    last = { label, query: t.query, table: t.rows.slice(0, 10), api: want };
    if (want.length > 0 && JSON.stringify(want) === JSON.stringify(t.rows.slice(0, 10))) {
      console.log(`${label}: table matches the API's top ${want.length} (${t.query})`);
      return;
    }
    await p.waitForTimeout(700);
  }
  throw new Error(`${label}: the table never matched the API: ${JSON.stringify(last)}`);
}

const text = (sel, p = page) => p.locator(sel).innerText();
const pad = (n) => String(n).padStart(2, "0");
const hourLabel = (ms) => new Date(ms).toISOString().slice(0, 13);

try {
  await page.goto(base);
  await page.waitForSelector("#top-table tbody tr[data-product]", { timeout: 20000 });
  await sameAsApi("day (default)", "granularity=day");
  // The open day's projection: a column of its own (labelled projected), equal to the
  // API's; a sparkline per row; the product chart's dotted projected end.
  await page.waitForFunction(() => {
    const head = document.getElementById("projected-head");
    return !head.hidden && [...document.querySelectorAll("#top-table td.projected")].some((td) => td.textContent.startsWith("≈"));
  }, null, { timeout: 30000 });
  // Against the page's own projection answers (the demo's traffic moves a fresh one):
  // the column shows what the API answered it, once that answer is drawn.
  let projectedSeen = null;
  for (let attempt = 0; attempt < 5 && !projectedSeen; attempt++) {
    const reply = await page.waitForResponse((r) => r.url().includes("/api/v1/projection?") && r.status() === 200, { timeout: 30000 });
    const api = await reply.json();
    const want = api.rows.map((r) => [r.product_id, new Intl.NumberFormat("en-US").format(r.projected)]);
    projectedSeen = await page.waitForFunction((want) => {
      const wanted = new Map(want);
      const shown = [...document.querySelectorAll("#top-table tbody tr[data-product]")]
        .map((tr) => [tr.dataset.product, tr.querySelector("td.projected").textContent.split(/[^0-9,]/).filter(Boolean)[0]]);
      const both = shown.filter(([id]) => wanted.has(id));
      return both.length >= 5 && both.every(([id, v]) => wanted.get(id) === v) ? { shown, api: want } : null;
    }, want, { timeout: 3000 }).then((h) => h.jsonValue()).catch(() => null);
  }
  check(projectedSeen, "the projected column never matched the API's projection");
  // The sparklines come with the trends, a request of their own: give it time on a busy machine.
  await page.waitForFunction(() => document.querySelectorAll("#top-table td.spark svg polyline").length >= 5, null, { timeout: 15000 }).catch(() => {});
  const sparks = await page.locator("#top-table td.spark svg polyline").count();
  check(sparks >= 5, `only ${sparks} sparklines`);
  const projectionCsv = await (await fetch(new URL(await page.getAttribute("#projection-csv", "href"), base))).text();
  check(projectionCsv.startsWith("rank,product_id,name,counted,") && projectionCsv.includes(",projected,"), `projection CSV ${projectionCsv.slice(0, 200)}`);
  const top1 = await page.locator("#top-table tbody tr[data-product]").first();
  await top1.click();
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.projected) > 0, null, { timeout: 15000 });
  const projectedEnd = await page.evaluate(() => Number(document.getElementById("chart").dataset.projected));
  console.log(`projection: the table's projected column matches the API (${projectedSeen.shown[0].join(" ≈ ")}), ${sparks} sparklines, the chart's projected end ${projectedEnd}`);
  await page.selectOption("#granularity", "hour");
  await sameAsApi("hour", "granularity=hour");
  await page.selectOption("#granularity", "custom");
  await sameAsApi("custom range", "from=");
  // A product's history, for the screenshot.
  const second = await page.locator("#top-table tbody tr[data-product]").nth(1);
  const id = await second.getAttribute("data-product");
  await second.click();
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), id);
  await page.waitForSelector("#chart .uplot");
  // Search finds a product by its id and shows its history.
  const third = await page.locator("#top-table tbody tr[data-product]").nth(2).getAttribute("data-product");
  await page.fill("#search", third);
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), third);
  console.log(`search: ${third} found`);
  await page.fill("#search", "");
  await second.click();
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), id);

  // Breakdowns: a country and a category picked (type-ahead offers the values) make the
  // table that combination's list; grouping by country shows small multiples.
  await page.selectOption("#granularity", "day");
  await page.waitForFunction(() => document.querySelectorAll("#values-country option").length >= 5, null, { timeout: 15000 });
  const offered = await page.evaluate(() => [...document.querySelectorAll("#values-country option")].map((o) => o.value));
  check(offered.includes("DE"), `the country picker offers ${offered}`);
  for (const [d, v] of [["country", "DE"], ["category", "toys"]]) {
    await page.fill(`#filter-${d}`, v);
    await page.dispatchEvent(`#filter-${d}`, "change");
  }
  await sameAsApi("country DE, category toys", "country=DE&category=toys");
  check((await text("#title")).includes("country,category DE|toys"), `title ${await text("#title")}`);
  check(new URL(page.url()).searchParams.get("country") === "DE", `the filters are in the URL: ${page.url()}`);
  for (const d of ["country", "category"]) {
    await page.fill(`#filter-${d}`, "");
    await page.dispatchEvent(`#filter-${d}`, "change");
  }
  await page.selectOption("#group-by", "country");
  await page.waitForFunction(() => document.querySelectorAll("#breakdown-grid .multiple li[data-product]").length >= 15, null, { timeout: 15000 });
  let groupsSeen;
  for (let attempt = 0; attempt < 10 && !groupsSeen; attempt++) {
    const shown = await page.evaluate(() => [...document.querySelectorAll("#breakdown-grid .multiple")].map((m) => ({
      value: m.dataset.value,
      products: [...m.querySelectorAll("li[data-product]")].map((li) => li.dataset.product),
    })));
    const q = await page.evaluate(() => document.body.dataset.groups);
    const api = await (await fetch(`${base}/api/v1/top?${q}`)).json();
    const want = api.groups.map((g) => ({ value: g.value, products: g.top.rows.map((r) => r.product_id) }));
    if (JSON.stringify(shown) === JSON.stringify(want)) groupsSeen = shown;
    else await page.waitForTimeout(700);
  }
  check(groupsSeen, "the small multiples never matched the API's group_by answer");
  await page.locator("#breakdown").screenshot({ path: shot.replace(/\.png$/, "-breakdown.png") });
  console.log(`breakdown view: ${groupsSeen.length} countries (${groupsSeen.map((g) => g.value).join(", ")}), each its top 5 as the API gives them`);
  await page.selectOption("#group-by", "");
  // That reloads the table and the product chart: let it land before the next step's.
  await page.waitForFunction(() => document.getElementById("breakdown").hidden && !(document.body.dataset.query || "").includes("country="));
  await page.waitForTimeout(1500);

  // A past day of the demo's history: exact, and the product chart is centred on it (a
  // chart ending today shows it where it fits; the future holds nothing to draw).
  await page.selectOption("#granularity", "day");
  await page.waitForFunction(() => document.querySelectorAll("#period option").length > 5, null, { timeout: 15000 });
  const day = new Date(Date.now() - 16 * 86400000).toISOString().slice(0, 10);
  await page.selectOption("#period", day);
  await sameAsApi(`past day ${day}`, `start=${day}`);
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("exact"), null, { timeout: 60000 });
  // Wait for the chart of this period: the one before it (today's window) also spans the
  // day, so a wait for any window around it can end on the old chart.
  await page.waitForFunction((day) => {
    const c = document.getElementById("chart");
    const mid = (Date.parse(c.dataset.from) + Date.parse(c.dataset.to)) / 2;
    return c.dataset.from && Math.abs(mid - Date.parse(`${day}:00:00Z`)) <= 86400000;
  }, `${day}T12`, { timeout: 15000 }).catch(() => {});
  const window = await page.evaluate(() => ({ ...document.getElementById("chart").dataset }));
  const mid = (Date.parse(window.from) + Date.parse(window.to)) / 2;
  const centred = Math.abs(mid - Date.parse(`${day}T12:00:00Z`)) <= 86400000;
  check(centred, `chart window ${JSON.stringify(window)} is not centred on ${day}`);
  check((await text("#detail-sub")).includes("exact"), "the history counts its exact days");
  console.log(`chart: ${window.from} .. ${window.to} around ${day}`);

  // The view is in the URL: a reload (or a shared link) shows the same thing.
  await page.selectOption("#k", "25");
  await page.selectOption("#by", "revenue");
  await page.waitForFunction(() => (document.body.dataset.query || "").includes("by=revenue"));
  const url = page.url();
  check(url.includes(`period=${day}`) && url.includes("k=25") && url.includes("by=revenue") && url.includes("product="), `URL ${url}`);
  const reloaded = await context.newPage();
  watch(reloaded);
  await reloaded.goto(url);
  await sameAsApi("reloaded from the URL", `start=${day}&k=25&by=revenue`, reloaded);
  await reloaded.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), id);
  console.log(`reload: ${url} restores the view`);
  await reloaded.close();

  // Rank changes and the movers panel on the past day (by revenue): each row's arrow is
  // the API's rank change, and the panel lists the API's biggest gains and drops.
  await page.waitForFunction(() => (document.body.dataset.movers || "").includes("by=revenue"), null, { timeout: 15000 });
  const ranked = await (await fetch(`${base}/api/v1/top?${(await table()).query}`)).json();
  const arrows = await page.evaluate(() =>
    [...document.querySelectorAll("#top-table tbody tr[data-product]")].map((tr) => (tr.querySelector(".delta") || {}).textContent || ""));
  const wantArrows = ranked.rows.map((r) =>
    r.previous_rank === null ? "new" : r.rank_change > 0 ? `▲${r.rank_change}` : r.rank_change < 0 ? `▼${-r.rank_change}` : "=");
  check(JSON.stringify(arrows) === JSON.stringify(wantArrows), `rank changes ${arrows} vs API ${wantArrows}`);
  check(arrows.some((x) => x !== "new"), "the previous day is known");
  const moversQuery = await page.evaluate(() => document.body.dataset.movers);
  for (const d of ["up", "down"]) {
    const m = await (await fetch(`${base}/api/v1/movers?${moversQuery}&direction=${d}`)).json();
    const shown = await page.evaluate((d) => [...document.querySelectorAll(`#movers-${d} li[data-product]`)].map((li) => li.dataset.product), d);
    check(shown.length > 0 && JSON.stringify(shown) === JSON.stringify(m.rows.map((r) => r.product_id)), `movers ${d}: ${shown} vs API ${JSON.stringify(m.rows)}`);
  }
  // The CSV downloads: the table's list and the movers', as the API gives them.
  const csvRows = async (href) => (await (await fetch(new URL(href, base))).text()).trim().split("\n").slice(1).map((l) => l.split(",")[1]);
  const tableCsv = await csvRows(await page.getAttribute("#csv", "href"));
  check(JSON.stringify(tableCsv) === JSON.stringify(ranked.rows.map((r) => r.product_id)), `table CSV ${tableCsv}`);
  const downCsv = await csvRows(await page.getAttribute("#movers-down-csv", "href"));
  const downApi = await (await fetch(`${base}/api/v1/movers?${moversQuery}&direction=down`)).json();
  check(JSON.stringify(downCsv.slice(0, 5)) === JSON.stringify(downApi.rows.map((r) => r.product_id)), `movers CSV ${downCsv}`);
  console.log(`rank changes and movers: as the API says (${arrows.slice(0, 5).join(" ")} …)`);

  // Worst sellers of the past day: the table is the API's bottom list (least first), the
  // choice is in the URL; the current day cannot answer it and says why in place.
  await page.selectOption("#by", "quantity");
  await page.selectOption("#order", "asc");
  await sameAsApi(`worst sellers of ${day}`, `start=${day}&k=25&by=quantity&order=asc`);
  check((await text("#title")).startsWith("Worst 25"), `title: ${await text("#title")}`);
  check(page.url().includes("order=asc"), `URL ${page.url()}`);
  const worst = (await table()).rows.map((r) => r.count);
  check(worst.every((c, i) => i === 0 || worst[i - 1] <= c), `not least first: ${worst}`);
  await page.selectOption("#period", "current");
  await page.waitForSelector("#error:not([hidden])");
  check((await text("#error")).includes("order=asc needs every bucket"), `error: ${await text("#error")}`);
  console.log("worst sellers: a past day's bottom list, the current day refused in place");
  await page.selectOption("#order", "desc");
  await page.waitForSelector("#error", { state: "hidden", timeout: 15000 });

  // Error states: a custom range backwards, and the server not answering. The error is
  // said where the table was, and nothing of the last answer is left standing.
  await page.selectOption("#granularity", "custom");
  await page.waitForFunction(() => (document.body.dataset.query || "").includes("from="));
  await page.fill("#from-date", "2026-11-10");
  await page.dispatchEvent("#from-date", "change");
  await page.fill("#to-date", "2026-11-01");
  await page.dispatchEvent("#to-date", "change");
  await page.waitForSelector("#error:not([hidden])");
  check((await text("#error")).includes("from must be before to"), `error: ${await text("#error")}`);
  check((await table()).rows.length === 0 && (await text("#title")) === "Top products" && (await text("#summary")) === "",
    "a failed answer leaves no stale table, title or total");
  await page.selectOption("#granularity", "hour");
  await sameAsApi("hour again", "granularity=hour");
  await page.route("**/api/v1/top**", (route) => route.abort());
  await page.selectOption("#k", "10");
  await page.waitForSelector("#error:not([hidden])");
  check((await text("#error")).includes("not answering"), `error: ${await text("#error")}`);
  check((await table()).rows.length === 0 && (await text("#summary")) === "", "no stale table or total when the server is down");
  await page.unroute("**/api/v1/top**");
  await page.waitForSelector("#error", { state: "hidden", timeout: 15000 });
  await page.waitForSelector("#top-table tbody tr[data-product]");
  console.log("errors: shown in place, and cleared once the server answers");

  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  check(missing.length === 0, `404s: ${missing.join(", ")}`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // The hour rollover: the page's clock 5 s before the hour turns; the "current hour"
  // view moves on to the next hour by itself.
  const clocked = await context.newPage();
  watch(clocked);
  const thisHour = Math.floor(Date.now() / 3600000) * 3600000;
  await clocked.clock.install({ time: thisHour - 5000 });
  await clocked.goto(`${base}/?g=hour`);
  await clocked.waitForFunction((l) => document.getElementById("title").dataset.period === l, hourLabel(thisHour - 3600000), { timeout: 15000 });
  await clocked.clock.fastForward(10000);
  await clocked.waitForFunction((l) => document.getElementById("title").dataset.period === l, hourLabel(thisHour), { timeout: 15000 });
  check((await clocked.locator("#period").inputValue()) === "current", "still following the current hour");
  console.log(`rollover: ${hourLabel(thisHour - 3600000)} -> ${hourLabel(thisHour)}`);
  await clocked.close();

  // A narrow screen: nothing sticks out sideways; the dark palette.
  const narrow = await browser.newContext({ viewport: { width: 420, height: 900 }, colorScheme: "dark" });
  const small = await narrow.newPage();
  watch(small);
  await small.goto(base);
  await small.waitForSelector("#top-table tbody tr[data-product]");
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow} px wider than a 420 px screen`);
  const dark = await small.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(dark !== "rgb(245, 246, 248)", `the dark preference is ignored (${dark})`);
  await small.screenshot({ path: shot.replace(/\.png$/, "-narrow-dark.png"), fullPage: true });
  console.log(`narrow and dark: fits 420 px, background ${dark}`);
  await narrow.close();
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
} catch (e) {
  await page.screenshot({ path: shot.replace(/\.png$/, "-failed.png"), fullPage: true }).catch(() => {});
  console.error(String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
