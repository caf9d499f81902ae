// The topk dashboard: plain JavaScript over the JSON API, no build step.
//
// The view (granularity, period, K, ranking, range, selected product) lives in the URL,
// so a view can be shared and survives a reload. "Current" periods follow the clock:
// the current hour becomes the next one when the hour turns.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { groupRequests: 0, answer: null, selected: null, chart: null, requests: 0, moverRequests: 0, detailRequests: 0, following: null, failing: false, projection: null, trends: null };
const nf = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
const HOUR = 3600000;
const DAY = 24 * HOUR;
const GRANULARITIES = ["hour", "day", "week", "month", "year"];

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function getJson(url) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new Error("the topk server is not answering (retrying every 2 s)");
  }
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// --- Time, all UTC -------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

// The ISO week (year and number) of a UTC time: the week's Thursday decides the year,
// and week 1 is the one whose Thursday falls in January 1–7.
function isoWeek(ms) {
  const d = new Date(ms);
  const monday = (d.getUTCDay() + 6) % 7;
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - monday + 3);
  const year = new Date(thursday).getUTCFullYear();
  return { year, week: 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY)) };
}

// The start (ms) of the bucket of granularity g containing ms.
function bucketStart(g, ms) {
  const d = new Date(ms);
  const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
  switch (g) {
    case "hour": return Math.floor(ms / HOUR) * HOUR;
    case "day": return Date.UTC(y, m, day);
    case "week": return Date.UTC(y, m, day - ((d.getUTCDay() + 6) % 7));
    case "month": return Date.UTC(y, m, 1);
    default: return Date.UTC(y, 0, 1);
  }
}

// The start of the bucket n buckets after the one starting at start.
function bucketShift(g, start, n) {
  const d = new Date(start);
  const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
  switch (g) {
    case "hour": return start + n * HOUR;
    case "day": return Date.UTC(y, m, day + n);
    case "week": return Date.UTC(y, m, day + 7 * n);
    case "month": return Date.UTC(y, m + n, 1);
    default: return Date.UTC(y + n, 0, 1);
  }
}

// The API's label of a bucket (2026-12-01T05, 2026-12-01, 2026-W49, 2026-12, 2026).
function bucketLabel(g, start) {
  const iso = new Date(start).toISOString();
  switch (g) {
    case "hour": return iso.slice(0, 13);
    case "day": return iso.slice(0, 10);
    case "week": { const w = isoWeek(start); return `${w.year}-W${pad(w.week)}`; }
    case "month": return iso.slice(0, 7);
    default: return iso.slice(0, 4);
  }
}

// 24-hour UTC text for a time, as fine as the granularity needs.
function timeText(g, ms) {
  const iso = new Date(ms).toISOString();
  if (g === "hour") return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  if (g === "month") return iso.slice(0, 7);
  if (g === "year") return iso.slice(0, 4);
  return iso.slice(0, 10);
}

function ago(ms) {
  if (ms < 1500) return "just now";
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)} min ago`;
}

// --- The view, and the URL ------------------------------------------------------------

// The custom range's ends: a date and an hour (24 h, UTC) each.
function rangeEnd(which) {
  const date = $(`${which}-date`).value;
  return date ? `${date}T${$(`${which}-hour`).value}` : "";
}

function setRangeEnd(which, ms) {
  const iso = new Date(ms).toISOString();
  $(`${which}-date`).value = iso.slice(0, 10);
  $(`${which}-hour`).value = iso.slice(11, 13);
}

function view() {
  return {
    g: $("granularity").value,
    period: $("period").value,
    k: $("k").value,
    by: $("by").value,
    order: $("order").value,
    filters: filterValues(),
    groupBy: $("group-by").value,
    from: rangeEnd("from"),
    to: rangeEnd("to"),
    product: state.selected,
  };
}

// The period a "current" view follows, by the clock.
function currentLabel(g) {
  return bucketLabel(g, bucketStart(g, Date.now()));
}

function topQuery() {
  const v = view();
  const p = new URLSearchParams();
  if (v.g === "custom") {
    p.set("from", v.from);
    p.set("to", v.to);
  } else {
    p.set("granularity", v.g);
    p.set("start", v.period === "current" ? currentLabel(v.g) : v.period);
  }
  p.set("k", v.k);
  p.set("by", v.by);
  if (v.order === "asc") p.set("order", "asc");
  for (const [d, value] of Object.entries(v.filters)) p.set(d, value);
  return p.toString();
}

function saveView() {
  const v = view();
  const p = new URLSearchParams();
  p.set("g", v.g);
  if (v.g === "custom") {
    p.set("from", v.from);
    p.set("to", v.to);
  } else if (v.period && v.period !== "current") {
    p.set("period", v.period);
  }
  if (v.k !== "10") p.set("k", v.k);
  if (v.by !== "quantity") p.set("by", v.by);
  if (v.order !== "desc") p.set("order", v.order);
  for (const [d, value] of Object.entries(v.filters)) p.set(d, value);
  if (v.groupBy) p.set("group_by", v.groupBy);
  if (v.product) p.set("product", v.product);
  history.replaceState(null, "", `${location.pathname}?${p}`);
}

function restoreView() {
  const p = new URLSearchParams(location.search);
  const pick = (id, value) => {
    if (value != null && [...$(id).options].some((o) => o.value === value)) $(id).value = value;
  };
  pick("granularity", p.get("g"));
  pick("k", p.get("k"));
  pick("by", p.get("by"));
  pick("order", p.get("order"));
  for (const which of ["from", "to"]) {
    const v = p.get(which);
    if (v && /^\d{4}-\d{2}-\d{2}T\d{2}$/.test(v)) {
      $(`${which}-date`).value = v.slice(0, 10);
      $(`${which}-hour`).value = v.slice(11, 13);
    }
  }
  state.wantedPeriod = p.get("period");
  state.selected = p.get("product");
  state.wantedFilters = Object.fromEntries(DIMENSIONS.filter((d) => p.get(d)).map((d) => [d, p.get(d)]));
  state.wantedGroupBy = p.get("group_by");
}

// --- Breakdowns: filter pickers (type-ahead on the dimension's values) ----------------

const DIMENSIONS = ["country", "city", "category"];

// The filters set in the pickers: { country: "DE", … }.
function filterValues() {
  const out = {};
  for (const d of DIMENSIONS) {
    const input = $(`filter-${d}`);
    if (input && input.value.trim()) out[d] = input.value.trim();
  }
  return out;
}

// The query string of the filters alone ("" without any), to add to other requests.
function filterQuery() {
  const p = new URLSearchParams(filterValues());
  return p.toString() ? `&${p}` : "";
}

// One picker per dimension that some configured set uses; "Break down by" offers the
// dimensions configured alone.
async function loadBreakdowns() {
  let configured = { sets: [] };
  try {
    configured = await getJson("/api/v1/breakdowns");
  } catch (e) {
    showError(e);
  }
  const used = DIMENSIONS.filter((d) => configured.sets.some((s) => s.split(",").includes(d)));
  $("filters").innerHTML = used
    .map((d) => `<label>${d[0].toUpperCase() + d.slice(1)}
      <input id="filter-${d}" type="search" list="values-${d}" placeholder="all" autocomplete="off"
        title="Only sales with this ${d} (a configured breakdown)"><datalist id="values-${d}"></datalist></label>`)
    .join("");
  for (const d of used) {
    const input = $(`filter-${d}`);
    input.value = (state.wantedFilters || {})[d] || "";
    let timer;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => suggest(d, input.value.trim()), 150);
    });
    input.addEventListener("change", () => loadTop().then(loadDetail));
    suggest(d, "");
  }
  const alone = DIMENSIONS.filter((d) => configured.sets.includes(d));
  $("group-label").hidden = alone.length === 0;
  for (const d of alone) $("group-by").add(new Option(d, d));
  if (alone.includes(state.wantedGroupBy)) $("group-by").value = state.wantedGroupBy;
}

// The values of a dimension starting with `q`, biggest first, as the picker's suggestions.
async function suggest(d, q) {
  const found = await getJson(`/api/v1/dimensions/${d}?limit=50&q=${encodeURIComponent(q)}`).catch(() => ({ values: [] }));
  $(`values-${d}`).innerHTML = found.values
    .map((v) => `<option value="${escapeHtml(v.value)}">${nf.format(v.count)} units</option>`)
    .join("");
}

// The breakdown view: the top 5 of each of the period's 12 biggest values, side by side.
async function loadGroups(query) {
  const d = $("group-by").value;
  $("breakdown").hidden = !d;
  if (!d) return;
  const mine = ++state.groupRequests;
  const p = new URLSearchParams(query);
  p.delete("order");
  p.delete(d);
  p.set("k", "5");
  p.set("group_by", d);
  p.set("groups", "12");
  $("breakdown-title").textContent = `By ${d}`;
  try {
    const a = await getJson(`/api/v1/top?${p}`);
    if (mine !== state.groupRequests) return;
    const revenue = p.get("by") === "revenue";
    const fmt = (v) => (revenue ? money.format(v / 100) : nf.format(v));
    $("breakdown-sub").textContent = `the top 5 of the ${a.groups.length} biggest values`;
    $("breakdown-grid").innerHTML = a.groups
      .map((g) => {
        const badge = g.top.exact ? '<span class="badge exact">exact</span>' : '<span class="badge approx">approx</span>';
        const rows = g.top.rows
          .map((r) => `<li data-product="${escapeHtml(r.product_id)}"><span>${escapeHtml(r.name || r.product_id)}</span>` +
            `<span class="num">${fmt(revenue ? r.revenue_cents : r.count)}${r.error_bound ? ` ±${fmt(r.error_bound)}` : ""}</span></li>`)
          .join("");
        return `<div class="multiple" data-value="${escapeHtml(g.value)}"><h3><span>${escapeHtml(g.value)}</span>${badge}</h3>` +
          `<ol>${rows || '<li class="muted">no sales</li>'}</ol></div>`;
      })
      .join("");
    document.body.dataset.groups = p.toString();
  } catch (e) {
    if (mine !== state.groupRequests) return;
    $("breakdown-grid").innerHTML = "";
    $("breakdown-sub").textContent = e.message;
  }
}

// --- Periods --------------------------------------------------------------------------

async function loadPeriods() {
  const g = $("granularity").value;
  $("controls").classList.toggle("custom", g === "custom");
  if (g === "custom") {
    if (!$("from-date").value) {
      const end = Math.ceil(Date.now() / HOUR) * HOUR;
      setRangeEnd("to", end);
      setRangeEnd("from", end - 7 * DAY);
    }
    state.following = null;
    return;
  }
  const sel = $("period");
  const previous = state.wantedPeriod || sel.value || "current";
  state.wantedPeriod = null;
  let buckets = [];
  try {
    buckets = (await getJson(`/api/v1/buckets?granularity=${g}`)).buckets;
  } catch (e) {
    showError(e);
  }
  const current = currentLabel(g);
  sel.innerHTML = "";
  sel.add(new Option(`Current ${g} · ${current}`, "current"));
  for (const b of buckets.reverse()) {
    if (b.label === current) continue;
    const mark = { batch: "exact", speed: "approx", pending: "re-rolling" }[b.source] || "no data";
    sel.add(new Option(`${b.label} · ${mark}`, b.label));
  }
  if (![...sel.options].some((o) => o.value === previous)) sel.add(new Option(previous, previous));
  sel.value = previous;
  state.following = sel.value === "current" ? current : null;
}

// --- The table ------------------------------------------------------------------------

function showError(e) {
  state.failing = true;
  $("status").className = "status error";
  $("status").textContent = "error";
  $("error").textContent = e.message;
  $("error").hidden = false;
}

function clearError() {
  state.failing = false;
  $("error").hidden = true;
}

// An answer that failed: nothing of an older one is left to mislead.
function clearAnswer() {
  state.answer = null;
  $("title").textContent = "Top products";
  $("summary").textContent = "";
  $("notes").textContent = "";
  $("top-table").tBodies[0].innerHTML = "";
}

// Only the latest request's answer is shown: a period changed while an older request
// was in flight must not be overwritten by it.
async function loadTop() {
  const mine = ++state.requests;
  const query = topQuery();
  saveView();
  let extras;
  try {
    const a = await getJson(`/api/v1/top?${query}`);
    if (mine !== state.requests) return;
    clearError();
    if (!state.answer || state.answer.from !== a.from || state.answer.k !== a.k || state.answer.by !== a.by) {
      state.projection = null;
      state.trends = null;
    }
    state.answer = a;
    renderTop(a);
    extras = Promise.all([loadProjection(a, mine), loadTrends(a, mine)]);
  } catch (e) {
    if (mine !== state.requests) return;
    clearAnswer();
    showError(e);
  }
  document.body.dataset.query = query;
  $("csv").href = `/api/v1/top?${query}&format=csv`;
  loadMovers(query);
  loadGroups(query);
  // The product chart (drawn after this) reads the projection.
  await extras;
}

// The period's biggest gains and drops against the previous period (top 5 each).
async function loadMovers(topQueryString) {
  const mine = ++state.moverRequests;
  const p = new URLSearchParams(topQueryString);
  p.delete("order");
  const download = new URLSearchParams(p);
  download.set("k", "100");
  for (const d of ["up", "down"]) $(`movers-${d}-csv`).href = `/api/v1/movers?${download}&direction=${d}&format=csv`;
  p.set("k", "5");
  const render = (id, a) => {
    const revenue = a.by === "revenue";
    const fmt = (v) => (revenue ? money.format(v / 100) : nf.format(v));
    $(id).innerHTML = a.rows.length
      ? a.rows
          .map((r) => {
            const sign = r.change > 0 ? "+" : "−";
            const bound = r.change_error ? ` ± ${fmt(r.change_error)}` : "";
            return `<li data-product="${escapeHtml(r.product_id)}" title="${fmt(r.then)} → ${fmt(r.now)}">` +
              `${escapeHtml(r.name || r.product_id)}<span class="change">${sign}${fmt(Math.abs(r.change))}${bound}</span></li>`;
          })
          .join("")
      : '<li class="muted">none</li>';
  };
  try {
    const [up, down] = await Promise.all(
      ["up", "down"].map((d) => getJson(`/api/v1/movers?${p}&direction=${d}`)),
    );
    if (mine !== state.moverRequests) return;
    render("movers-up", up);
    render("movers-down", down);
    $("movers-sub").textContent = `vs ${timeText("hour", Date.parse(up.baseline_from))} – ${timeText("hour", Date.parse(up.baseline_to))} UTC` +
      (up.exact ? " · exact" : up.open ? " · so far, approximate" : " · approximate");
    $("movers-sub").title = (up.notes || []).join(" · ");
    document.body.dataset.movers = p.toString();
  } catch (e) {
    if (mine !== state.moverRequests) return;
    $("movers-up").innerHTML = "";
    $("movers-down").innerHTML = "";
    $("movers-sub").textContent = e.message;
  }
}

// An open period's projected end (one bucket, best sellers): a column of its own,
// labelled projected, and the projected total beside the counted one.
async function loadProjection(a, mine) {
  const g = $("granularity").value;
  const projectable = g !== "custom" && a.open && a.order === "desc" && a.buckets.length === 1;
  $("projected-head").hidden = !projectable;
  $("projection-csv").hidden = !projectable;
  if (!projectable) {
    state.projection = null;
    return decorate();
  }
  const q = new URLSearchParams({ granularity: g, start: a.buckets[0].label, k: a.k, by: a.by, ...filterValues() });
  $("projection-csv").href = `/api/v1/projection?${q}&format=csv`;
  try {
    const p = await getJson(`/api/v1/projection?${q}`);
    if (mine !== state.requests) return;
    state.projection = p;
  } catch (e) {
    state.projection = { error: e.message, rows: [] };
  }
  decorate();
}

// The last 12 buckets of each row's product, up to the period's: a sparkline per row.
async function loadTrends(a, mine) {
  const g = $("granularity").value;
  if (!a.rows.length) return;
  const q = new URLSearchParams({
    ids: a.rows.slice(0, 100).map((r) => r.product_id).join(","),
    granularity: g === "custom" ? "day" : g,
    to: a.to,
    ...filterValues(),
  });
  try {
    const t = await getJson(`/api/v1/trends?${q}`);
    if (mine !== state.requests) return;
    state.trends = t;
  } catch (e) {
    state.trends = null;
  }
  decorate();
}

function sparkline(t, trend) {
  const w = 80, h = 18;
  const values = trend.counts;
  const max = Math.max(1, ...values.filter((v) => v != null));
  const x = (i) => ((i * w) / Math.max(1, values.length - 1)).toFixed(1);
  const y = (v) => (h - (h * Math.max(0, v)) / max).toFixed(1);
  // Exact stretches solid, approximate ones dashed; an unknown value breaks the line.
  let lines = "", points = [], approx = null;
  const flush = () => {
    if (points.length > 1) lines += `<polyline class="${approx ? "approx" : ""}" points="${points.join(" ")}"/>`;
    points = [];
  };
  values.forEach((v, i) => {
    const isApprox = t.buckets[i].source === "speed";
    if (v == null) return flush();
    if (approx !== null && isApprox !== approx) {
      const last = points[points.length - 1];
      flush();
      if (last) points.push(last);
    }
    approx = isApprox;
    points.push(`${x(i)},${y(v)}`);
  });
  flush();
  const lastIndex = values.length - 1;
  const dot = values[lastIndex] != null ? `<circle cx="${x(lastIndex)}" cy="${y(values[lastIndex])}" r="1.8"/>` : "";
  const title = t.buckets.map((b, i) => `${b.label}: ${values[i] == null ? "?" : nf.format(values[i])}`).join("\n");
  return `<svg width="${w}" height="${h}" role="img" aria-label="trend"><title>${escapeHtml(title)}</title>${lines}${dot}</svg>`;
}

// Fills the projection and trend cells of the rows shown, from the latest answers.
function decorate() {
  const p = state.projection;
  const projected = new Map((p && p.rows ? p.rows : []).map((r) => [r.product_id, r]));
  const trends = new Map((state.trends ? state.trends.products : []).map((t) => [t.product_id, t]));
  for (const tr of $("top-table").tBodies[0].rows) {
    const id = tr.dataset.product;
    if (!id) continue;
    const cell = tr.querySelector("td.projected");
    if (cell) {
      cell.hidden = $("projected-head").hidden;
      const r = projected.get(id);
      cell.innerHTML = r
        ? `≈ ${nf.format(r.projected)}<span class="range"> (${nf.format(r.projected_low)}–${nf.format(r.projected_high)})</span>`
        : "–";
      cell.title = r ? `projected, not counted: ${Math.round(p.interval * 100)} % interval ${nf.format(r.projected_low)}–${nf.format(r.projected_high)}` : "";
    }
    const spark = tr.querySelector("td.spark");
    const t = trends.get(id);
    if (spark) spark.innerHTML = t ? sparkline(state.trends, t) : "";
  }
  const sub = $("projection-sub");
  if (p && p.projected_total != null) {
    sub.hidden = false;
    sub.textContent = `projected end: ≈ ${nf.format(p.projected_total)} units (${nf.format(p.projected_total_low)}–${nf.format(p.projected_total_high)}, ${Math.round(p.interval * 100)} %)`;
    sub.title = p.notes.join(" · ");
  } else {
    sub.hidden = true;
    sub.textContent = p && p.error ? p.error : "";
  }
}

function boundText(r, revenue, exact) {
  if (exact) return "";
  if (revenue) return '<span title="at least: the speed layer counts a product\'s revenue only from when it became one of its candidates">≥</span>';
  return `± ${nf.format(r.error_bound)}`;
}

// ▲3 / ▼2 / new / = beside a rank: its change against the previous period's ranking.
function rankChange(r, a) {
  if (r.previous_rank === undefined) return "";
  if (r.previous_rank === null) {
    return `<span class="delta new" title="not in the previous period's top ${a.baseline_depth}">new</span>`;
  }
  const was = `title="rank ${r.previous_rank} in the previous period"`;
  if (r.rank_change > 0) return `<span class="delta up" ${was}>▲${r.rank_change}</span>`;
  if (r.rank_change < 0) return `<span class="delta down" ${was}>▼${-r.rank_change}</span>`;
  return `<span class="delta same" ${was}>=</span>`;
}

function renderTop(a) {
  const revenue = a.by === "revenue";
  $("value-head").textContent = revenue ? "Revenue" : "Units";
  const g = $("granularity").value;
  const period = g === "custom" ? `${timeText("hour", Date.parse(a.from))} – ${timeText("hour", Date.parse(a.to))} UTC` : (a.buckets[0] && a.buckets[0].label);
  const within = a.breakdown ? ` · ${a.breakdown.replace("=", " ")}` : "";
  $("title").textContent = `${a.order === "asc" ? "Worst" : "Top"} ${a.k} by ${a.by} · ${period || ""}${within}`;
  $("title").dataset.period = period || "";
  const exactBuckets = a.buckets.filter((b) => b.source === "batch").length;
  $("summary").textContent =
    `${a.total != null ? (revenue ? money.format(a.total / 100) : nf.format(a.total) + " units") + " in total · " : ""}` +
    `${exactBuckets}/${a.buckets.length} buckets exact`;
  const status = $("status");
  if (a.exact) {
    status.className = "status exact";
    status.textContent = a.open ? "exact so far · stream" : "exact · batch layer";
  } else {
    status.className = "status approx";
    const age = a.freshness.age_ms != null ? ` · updated ${ago(a.freshness.age_ms)}` : "";
    status.textContent = `approximate${age}`;
  }
  const notes = [...(a.notes || [])];
  if (a.unlisted_bound != null && !a.exact) {
    const most = revenue ? money.format(a.unlisted_bound / 100) : `${nf.format(a.unlisted_bound)} units`;
    notes.unshift(`A product not listed has at most ${most}: a row whose count minus its bound is below that could still be overtaken.`);
  }
  $("notes").textContent = notes.join(" · ");
  const max = Math.max(1, ...a.rows.map((r) => (revenue ? r.revenue_cents : r.count)));
  const body = a.rows
    .map((r) => {
      const v = revenue ? r.revenue_cents : r.count;
      const exact = r.source === "batch";
      const shown = revenue ? money.format(v / 100) : nf.format(v);
      const share = r.share != null ? (r.share * 100).toFixed(2) + "%" : "–";
      const badge = {
        batch: '<span class="badge exact">exact</span>',
        pending: '<span class="badge pending" title="late events or refunds are being rolled in">re-rolling</span>',
      }[r.source] || '<span class="badge approx">approx</span>';
      const uncertain = r.rank > a.certain_rows ? ' class="uncertain" title="this rank is not certain: see the note above the table"' : "";
      const width = Math.max(0.5, (100 * Math.max(0, v)) / max).toFixed(1);
      const sel = r.product_id === state.selected ? ' class="selected"' : "";
      return `<tr data-product="${escapeHtml(r.product_id)}"${sel}><td class="num"><span${uncertain}>${r.rank}</span>${rankChange(r, a)}</td>` +
        `<td class="product">${escapeHtml(r.name || r.product_id)}<span class="id">${r.name ? escapeHtml(r.product_id) : ""}</span></td>` +
        `<td class="num">${shown}</td><td class="num muted">${boundText(r, revenue, exact)}</td>` +
        `<td class="num projected"${$("projected-head").hidden ? " hidden" : ""}></td><td class="num">${share}</td><td class="spark"></td><td>${badge}</td>` +
        `<td class="bar-cell"><div class="bar${exact ? "" : " approx"}" style="width:${width}%"></div></td></tr>`;
    })
    .join("");
  const empty = a.order === "asc" ? "No products in the catalog yet." : "No sales in this period yet.";
  $("top-table").tBodies[0].innerHTML = body || `<tr><td colspan="9" class="muted">${empty}</td></tr>`;
  decorate();
}

// --- The product's history ------------------------------------------------------------

// The history's granularity and window: centred on the selected period (or ending with
// the current one), as many buckets as make a readable chart.
function historyWindow() {
  const v = view();
  if (v.g === "custom") {
    const from = Date.parse(`${v.from}:00:00Z`);
    const to = Date.parse(`${v.to}:00:00Z`);
    const g = to - from <= 3 * DAY ? "hour" : "day";
    return { g, from: bucketStart(g, from), to: bucketShift(g, bucketStart(g, to - 1), 1), focus: null };
  }
  const g = v.g === "year" ? "month" : v.g;
  const span = { hour: 48, day: 30, week: 26, month: 24 }[g];
  const answer = state.answer && state.answer.buckets[0];
  const focusStart = answer ? Date.parse(answer.start) : bucketStart(v.g, Date.now());
  const focusEnd = answer ? Date.parse(answer.end) : bucketShift(v.g, focusStart, 1);
  const nowNext = bucketShift(g, bucketStart(g, Date.now()), 1);
  // The selected period in the middle, never past the current bucket.
  const mid = bucketStart(g, focusStart + (focusEnd - focusStart) / 2);
  let to = Math.min(bucketShift(g, mid, Math.floor(span / 2)), nowNext);
  to = Math.max(to, bucketShift(g, bucketStart(g, focusEnd - 1), 1));
  const from = bucketShift(g, to, -span);
  return { g, from, to, focus: [focusStart, focusEnd] };
}

// Short tick labels (24 h, UTC): hours as HH:00 with the date at midnight, days and
// weeks as MM-DD, months as YYYY-MM, years as YYYY.
function axisValues(g) {
  return (u, splits) => splits.map((s) => {
    const iso = new Date(s * 1000).toISOString();
    if (g === "hour") return iso.slice(11, 13) === "00" ? iso.slice(5, 10) : `${iso.slice(11, 13)}:00`;
    if (g === "day" || g === "week") return iso.slice(5, 10);
    return g === "month" ? iso.slice(0, 7) : iso.slice(0, 4);
  });
}

// Only the latest request's chart is drawn: a slower, older one must not replace it.
async function loadDetail() {
  const id = state.selected;
  if (!id) return;
  const mine = ++state.detailRequests;
  const w = historyWindow();
  const q = new URLSearchParams({
    granularity: w.g,
    from: new Date(w.from).toISOString(),
    to: new Date(w.to).toISOString(),
    ...filterValues(),
  });
  let h;
  try {
    h = await getJson(`/api/v1/products/${encodeURIComponent(id)}?${q}`);
    if (mine !== state.detailRequests) return;
  } catch (e) {
    if (mine !== state.detailRequests) return;
    $("detail-title").textContent = id;
    $("detail-sub").textContent = e.message;
    if (state.chart) state.chart.destroy();
    state.chart = null;
    return;
  }
  $("detail-title").textContent = h.name ? `${h.name} (${h.product_id})` : h.product_id;
  const now = Date.now();
  const open = (p) => Date.parse(p.start) <= now && now < bucketShift(w.g, Date.parse(p.start), 1);
  const count = (source) => h.points.filter((p) => p.source === source).length;
  const every = { hour: "Hourly", day: "Daily", week: "Weekly", month: "Monthly" }[w.g];
  const last = h.points.find(open);
  const unlisted = last && last.source === "speed" && last.rank == null && last.error_bound > 0
    ? ` · this ${w.g} so far: not among the speed layer's candidates, at most ${nf.format(last.error_bound)} units`
    : "";
  $("detail-sub").textContent =
    `${every} units and rank, UTC · ${count("batch")} exact, ${count("speed")} approximate, ${count("pending")} re-rolling` + unlisted;
  const xs = h.points.map((p) => Date.parse(p.start) / 1000);
  // A bucket with no data that has ended sold nothing: zero. The open bucket is drawn
  // apart, dashed, as what it is: partial.
  const value = (p) => (p.source === "speed" && p.rank == null ? null : p.count);
  const closed = h.points.map((p) => (open(p) || Date.parse(p.start) > now ? null : value(p)));
  const partial = h.points.map((p, i) => {
    if (open(p)) return value(p) ?? 0;
    const next = h.points[i + 1];
    return next && open(next) ? closed[i] : null;
  });
  const ranks = h.points.map((p) => (p.rank == null ? null : p.rank));
  // The open bucket's projected end, dotted from the last count to it: what the
  // product's count so far comes to if it keeps the shop's usual shape (projected, not
  // counted; the projection endpoint's share of the period's volume expected by now).
  const openIndex = h.points.findIndex(open);
  let projectedEnd = null;
  if (openIndex >= 0 && value(h.points[openIndex]) != null) {
    // The table's projection when it is of the same bucket, else the chart's own.
    const shown = state.projection;
    const same = shown && shown.granularity === w.g && Date.parse(shown.from) === Date.parse(h.points[openIndex].start);
    const p = same ? shown : await getJson(`/api/v1/projection?granularity=${w.g}&k=1`).catch(() => null);
    if (mine !== state.detailRequests) return;
    if (p && p.expected_share > 0) projectedEnd = Math.round(h.points[openIndex].count / p.expected_share);
  }
  const projected = h.points.map((p, i) => (i === openIndex ? projectedEnd : null));
  if (projectedEnd != null && openIndex > 0) projected[openIndex - 1] = closed[openIndex - 1];
  const el = $("chart");
  const width = Math.max(300, el.clientWidth);
  if (state.chart) state.chart.destroy();
  const focus = w.focus;
  // Axis colours follow the page's (light or dark) palette.
  const ink = getComputedStyle(document.documentElement).getPropertyValue("--ink").trim() || "#1d2330";
  const grid = { stroke: "rgba(128,128,128,0.18)", width: 1 };
  state.chart = new uPlot(
    {
      width,
      height: 320,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: {
        x: { time: true },
        rank: { dir: -1, range: (u, lo, hi) => [0.5, Math.max(10, hi || 10) + 0.5] },
      },
      series: [
        { value: (u, v) => (v == null ? "" : timeText(w.g, v * 1000)) },
        { label: "Units", stroke: "#2f6fed", width: 2, fill: "rgba(47,111,237,0.08)", points: { show: true } },
        { label: "So far (open)", stroke: "#2f6fed", width: 2, dash: [4, 4], points: { show: true, fill: "#fff" } },
        { label: "Projected end", stroke: "#7b3fb8", width: 2, dash: [2, 3], points: { show: true, fill: "#7b3fb8" }, spanGaps: false },
        { label: "Rank", stroke: "#c27803", width: 1.5, dash: [6, 4], scale: "rank", points: { show: true } },
      ],
      axes: [
        { values: axisValues(w.g), space: 56, stroke: ink, grid },
        { label: "units", size: 64, values: (u, vals) => vals.map((v) => compact.format(v)), stroke: ink, grid },
        { side: 1, scale: "rank", label: "rank", grid: { show: false }, size: 48, stroke: ink },
      ],
      hooks: {
        // The selected period, shaded.
        drawClear: [(u) => {
          if (!focus) return;
          const x0 = u.valToPos(focus[0] / 1000, "x", true);
          const x1 = u.valToPos(focus[1] / 1000, "x", true);
          u.ctx.save();
          u.ctx.fillStyle = "rgba(194,120,3,0.10)";
          u.ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
          u.ctx.restore();
        }],
      },
    },
    [xs, closed, partial, projected, ranks],
    el,
  );
  el.dataset.projected = projectedEnd == null ? "" : String(projectedEnd);
  el.dataset.from = new Date(w.from).toISOString();
  el.dataset.to = new Date(w.to).toISOString();
}

function select(id) {
  state.selected = id;
  saveView();
  for (const tr of $("top-table").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.product === id);
  loadDetail();
}

async function refreshAll() {
  await loadPeriods();
  await loadTop();
  if (!state.selected && state.answer && state.answer.rows.length) select(state.answer.rows[0].product_id);
  else loadDetail();
}

// --- Events ---------------------------------------------------------------------------

// Product search: suggestions as you type; picking one shows its history.
let searchTimer;
$("search").addEventListener("input", (e) => {
  const q = e.target.value.trim();
  const hit = [...$("search-results").options].find((o) => o.value === q);
  if (hit) return select(q);
  clearTimeout(searchTimer);
  if (!q) return;
  searchTimer = setTimeout(async () => {
    const found = await getJson(`/api/v1/products?q=${encodeURIComponent(q)}&limit=10`).catch(() => ({ products: [] }));
    $("search-results").innerHTML = found.products
      .map((p) => `<option value="${escapeHtml(p.product_id)}">${escapeHtml(p.name || "")}</option>`)
      .join("");
    if (found.products.some((p) => p.product_id === q)) select(q);
  }, 200);
});

$("granularity").addEventListener("change", () => {
  $("period").value = "current";
  refreshAll();
});
$("period").addEventListener("change", () => {
  state.following = $("period").value === "current" ? currentLabel($("granularity").value) : null;
  loadTop().then(loadDetail);
});
for (const id of ["k", "by", "order", "group-by", "from-date", "from-hour", "to-date", "to-hour"]) {
  $(id).addEventListener("change", () => loadTop().then(loadDetail));
}
for (const id of ["movers-up", "movers-down"]) {
  $(id).addEventListener("click", (e) => {
    const li = e.target.closest("li[data-product]");
    if (li) select(li.dataset.product);
  });
}
$("top-table").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-product]");
  if (tr) select(tr.dataset.product);
});

// Every 2 s: roll a "current" view over when its period ends; refresh what can still
// change (an open period, an approximate answer) and retry after an error.
setInterval(() => {
  if (document.hidden) return;
  const g = $("granularity").value;
  if (state.following && g !== "custom" && currentLabel(g) !== state.following) {
    refreshAll();
    return;
  }
  const live = state.answer && (state.answer.open || !state.answer.exact);
  if ($("auto").checked && (live || state.failing)) {
    loadTop().then(loadDetail);
  }
}, 2000);
window.addEventListener("resize", () => state.chart && state.chart.setSize({ width: Math.max(300, $("chart").clientWidth), height: 320 }));

for (let h = 0; h < 24; h++) {
  for (const which of ["from", "to"]) $(`${which}-hour`).add(new Option(`${pad(h)}:00`, pad(h)));
}
restoreView();
loadBreakdowns().then(refreshAll);
