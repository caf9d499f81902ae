// The topk dashboard: plain JavaScript over the JSON API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { answer: null, selected: null, chart: null, requests: 0 };
const nf = new Intl.NumberFormat("en-US");
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function getJson(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

// datetime-local values are shown and read as UTC.
function toUtcParam(v) { return v ? v.slice(0, 13) + ":00:00Z" : ""; }
function toInputValue(ms) { return new Date(ms).toISOString().slice(0, 16); }

function ago(ms) {
  if (ms < 1500) return "just now";
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)} min ago`;
}

function topQuery() {
  const g = $("granularity").value;
  const p = new URLSearchParams();
  if (g === "custom") {
    p.set("from", toUtcParam($("from").value));
    p.set("to", toUtcParam($("to").value));
  } else {
    p.set("granularity", g);
    if ($("period").value) p.set("start", $("period").value);
  }
  p.set("k", $("k").value);
  p.set("by", $("by").value);
  return p.toString();
}

async function loadPeriods() {
  const g = $("granularity").value;
  $("controls").classList.toggle("custom", g === "custom");
  if (g === "custom") {
    if (!$("from").value) {
      const end = Math.ceil(Date.now() / 3600000) * 3600000;
      $("to").value = toInputValue(end);
      $("from").value = toInputValue(end - 7 * 86400000);
    }
    return;
  }
  const sel = $("period");
  const previous = sel.value;
  let buckets = [];
  try {
    buckets = (await getJson(`/api/v1/buckets?granularity=${g}`)).buckets;
  } catch (e) {
    showError(e);
  }
  buckets.reverse();
  sel.innerHTML = "";
  if (buckets.length === 0) sel.add(new Option(`current ${g}`, ""));
  for (const b of buckets) {
    const mark = b.source === "batch" ? "exact" : "open";
    sel.add(new Option(`${b.label} · ${mark}`, b.label));
  }
  if ([...sel.options].some((o) => o.value === previous)) sel.value = previous;
}

function showError(e) {
  $("status").className = "status error";
  $("status").textContent = e.message;
}

// Only the latest request's answer is shown: a period changed while an older request
// was in flight must not be overwritten by it.
async function loadTop() {
  const mine = ++state.requests;
  const query = topQuery();
  try {
    const a = await getJson(`/api/v1/top?${query}`);
    if (mine !== state.requests) return;
    state.answer = a;
    renderTop(a);
  } catch (e) {
    if (mine !== state.requests) return;
    showError(e);
    $("top-table").tBodies[0].innerHTML = "";
  }
  document.body.dataset.query = query;
}

function renderTop(a) {
  const revenue = a.by === "revenue";
  $("value-head").textContent = revenue ? "Revenue" : "Units";
  const g = $("granularity").value;
  const period = g === "custom" ? `${a.from.slice(0, 13)}h – ${a.to.slice(0, 13)}h UTC` : (a.buckets[0] && a.buckets[0].label);
  $("title").textContent = `Top ${a.k} by ${a.by} · ${period || ""}`;
  const exactBuckets = a.buckets.filter((b) => b.source === "batch").length;
  $("summary").textContent =
    `${a.total != null ? (revenue ? money.format(a.total / 100) : nf.format(a.total) + " units") + " in total · " : ""}` +
    `${exactBuckets}/${a.buckets.length} buckets exact`;
  const status = $("status");
  if (a.exact) {
    status.className = "status exact";
    status.textContent = "exact · batch layer";
  } else {
    status.className = "status approx";
    const age = a.freshness.age_ms != null ? ` · updated ${ago(a.freshness.age_ms)}` : "";
    status.textContent = `approximate${age}`;
  }
  $("notes").textContent = (a.notes || []).join(" · ");
  const max = Math.max(1, ...a.rows.map((r) => (revenue ? r.revenue_cents : r.count)));
  const body = a.rows
    .map((r) => {
      const v = revenue ? r.revenue_cents : r.count;
      const exact = r.source === "batch";
      const shown = revenue ? money.format(v / 100) : nf.format(v);
      const bound = exact ? "" : revenue ? "≥" : `± ${nf.format(r.error_bound)}`;
      const share = r.share != null ? (r.share * 100).toFixed(2) + "%" : "–";
      const badge = exact ? '<span class="badge exact">exact</span>' : '<span class="badge approx">approx</span>';
      const width = Math.max(0.5, (100 * v) / max).toFixed(1);
      const sel = r.product_id === state.selected ? ' class="selected"' : "";
      return `<tr data-product="${escapeHtml(r.product_id)}"${sel}><td class="num">${r.rank}</td>` +
        `<td class="product">${escapeHtml(r.name || r.product_id)}<span class="id">${r.name ? escapeHtml(r.product_id) : ""}</span></td>` +
        `<td class="num">${shown}</td><td class="num muted">${bound}</td><td class="num">${share}</td><td>${badge}</td>` +
        `<td><div class="bar${exact ? "" : " approx"}" style="width:${width}%"></div></td></tr>`;
    })
    .join("");
  $("top-table").tBodies[0].innerHTML = body || '<tr><td colspan="7" class="muted">No sales in this period yet.</td></tr>';
}

async function loadDetail() {
  const id = state.selected;
  if (!id) return;
  let g = $("granularity").value;
  if (g === "custom") g = "day";
  if (g === "year") g = "month";
  const h = await getJson(`/api/v1/products/${encodeURIComponent(id)}?granularity=${g}`);
  $("detail-title").textContent = h.name ? `${h.name} (${h.product_id})` : h.product_id;
  const count = (source) => h.points.filter((p) => p.source === source).length;
  const every = { hour: "Hourly", day: "Daily", week: "Weekly", month: "Monthly" }[g];
  $("detail-sub").textContent =
    `${every} units and rank · ${count("batch")} exact, ${count("speed")} approximate, ${count("none")} without data`;
  const xs = h.points.map((p) => Date.parse(p.start) / 1000);
  const counts = h.points.map((p) => (p.source === "none" ? null : p.count));
  const ranks = h.points.map((p) => (p.rank == null ? null : p.rank));
  const el = $("chart");
  const width = Math.max(320, el.clientWidth);
  if (state.chart) state.chart.destroy();
  state.chart = new uPlot(
    {
      width,
      height: 320,
      scales: { x: { time: true }, rank: { dir: -1, range: (u, lo, hi) => [1, Math.max(10, hi || 10)] } },
      series: [
        {},
        { label: "Units", stroke: "#2f6fed", width: 2, fill: "rgba(47,111,237,0.08)", points: { show: true } },
        { label: "Rank", stroke: "#c27803", width: 1.5, dash: [6, 4], scale: "rank", points: { show: true } },
      ],
      axes: [{}, { label: "units" }, { side: 1, scale: "rank", label: "rank", grid: { show: false } }],
    },
    [xs, counts, ranks],
    el,
  );
}

function select(id) {
  state.selected = id;
  for (const tr of $("top-table").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.product === id);
  loadDetail().catch(showError);
}

async function refreshAll() {
  await loadPeriods();
  await loadTop();
  if (!state.selected && state.answer && state.answer.rows.length) select(state.answer.rows[0].product_id);
  else loadDetail().catch(showError);
}

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

$("granularity").addEventListener("change", refreshAll);
for (const id of ["period", "k", "by", "from", "to"]) $(id).addEventListener("change", () => loadTop());
$("top-table").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-product]");
  if (tr) select(tr.dataset.product);
});
setInterval(() => {
  if ($("auto").checked && state.answer && (state.answer.open || !state.answer.exact) && !document.hidden) {
    loadTop();
    loadDetail().catch(() => {});
  }
}, 2000);
window.addEventListener("resize", () => state.chart && state.chart.setSize({ width: Math.max(320, $("chart").clientWidth), height: 320 }));
refreshAll();
