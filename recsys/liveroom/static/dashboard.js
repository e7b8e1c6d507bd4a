"use strict";
// One live room: numbers and charts follow the room's Server-Sent Events. Every number cell
// keeps the raw value from the server in data-value; an undefined value shows as a dash.
const room = document.body.dataset.room;
const WINDOWS = ["1", "5", "15"];
const ROWS = [
  ["online", "online viewers", 0],
  ["entries_per_min", "entries / min", 1],
  ["mean_dwell_s", "mean dwell (s)", 0],
  ["comments", "comments", 0],
  ["likes", "likes", 0],
  ["follows", "follows", 0],
  ["clicks", "product clicks", 0],
  ["ctr_on_show", "CTR of product on show", 3],
  ["carts", "carts", 0],
  ["coupon_claims", "coupon claims", 0],
  ["orders_per_min", "orders / min", 2],
  ["gmv_per_min", "GMV / min", 2],
];

function fmt(value, digits) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function buildTable() {
  const body = document.querySelector("#kpi-table tbody");
  for (const [key, label] of ROWS) {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${label}</td>` + WINDOWS.map((w) => `<td id="w${w}-${key}" data-value="">–</td>`).join("");
    body.appendChild(row);
  }
}

function chart(id, type, label, options = {}) {
  return new Chart(document.getElementById(id), {
    type,
    data: { labels: [], datasets: [{ label, data: [], backgroundColor: "#3b78e7", borderColor: "#3b78e7" }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } }, ...options },
  });
}

function minuteLabel(minute) {
  return new Date(minute * 60000).toISOString().slice(11, 16);
}

function setSeries(c, labels, values) {
  c.data.labels = labels;
  c.data.datasets[0].data = values.map((v) => (Number.isFinite(v) ? v : 0));
  c.update();
}

function renderNumbers(snap) {
  for (const w of WINDOWS) {
    for (const [key, , digits] of ROWS) {
      const cell = document.getElementById(`w${w}-${key}`);
      const value = snap.windows[w][key];
      cell.dataset.value = value === null || value === undefined ? "" : String(value);
      cell.textContent = fmt(value, digits);
    }
  }
  document.getElementById("on_show").textContent = snap.on_show >= 0 ? snap.on_show : "–";
  document.getElementById("clock").textContent = new Date(snap.watermark * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function renderLists(snap) {
  const questions = document.getElementById("question-list");
  questions.replaceChildren(...snap.questions.map((q) => {
    const item = document.createElement("li");
    item.textContent = `${q.question} — ${q.askers} viewers`;
    item.dataset.cluster = q.cluster;
    item.dataset.askers = q.askers;
    return item;
  }));
  const suggestions = document.getElementById("suggestion-list");
  suggestions.replaceChildren(...snap.suggestions.map((s) => {
    const item = document.createElement("li");
    item.dataset.kind = s.kind;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = `${minuteLabel(s.ts / 60)} ${s.kind}`;
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = s.reason;
    item.append(kind, document.createTextNode(s.action), reason);
    return item;
  }));
}

buildTable();
const charts = {
  online: chart("chart-online", "line", "online viewers"),
  gmv: chart("chart-gmv", "bar", "GMV per minute"),
  ctr: chart("chart-ctr", "bar", "CTR while on show"),
  questions: chart("chart-questions", "bar", "askers", { indexAxis: "y" }),
};

function render(snap) {
  renderNumbers(snap);
  renderLists(snap);
  const minutes = snap.series.minute.map(minuteLabel);
  setSeries(charts.online, minutes, snap.series.online);
  setSeries(charts.gmv, minutes, snap.series.gmv);
  const shown = snap.products.filter((p) => p.ctr_on_show !== null);
  setSeries(charts.ctr, shown.map((p) => String(p.product)), shown.map((p) => p.ctr_on_show));
  setSeries(charts.questions, snap.questions.map((q) => q.question), snap.questions.map((q) => q.askers));
  document.body.dataset.version = snap.version;
  const status = document.getElementById("status");
  status.textContent = "live";
  status.className = "status live";
}

const stream = new EventSource(`/live/rooms/${room}/stream`);
stream.onmessage = (event) => render(JSON.parse(event.data));
stream.addEventListener("ended", () => {
  stream.close();
  const status = document.getElementById("status");
  status.textContent = "ended";
  status.className = "status ended";
});
